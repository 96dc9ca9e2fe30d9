import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { createClusterCA, issueNodeCertificate, newNodeKey } from './ca.js';
import { clientTlsOptions, type NodeCredentials, peerIdentity, serverTlsOptions } from './tls.js';
import type { ClusterCA, NodeIdentity, NodeRole } from './types.js';

async function credentials(ca: ClusterCA, nodeId: string, role: NodeRole): Promise<NodeCredentials> {
  const key = newNodeKey();
  const certPem = await issueNodeCertificate(ca, {
    nodeId,
    role,
    hostname: 'localhost',
    addresses: ['127.0.0.1'],
    publicKeyPem: key.publicKeyPem,
  });
  return { caCertPem: ca.certPem, certPem, keyPem: key.keyPem };
}

/**
 * Connects, reads the server's whole answer and resolves with it and the server's identity as the
 * client saw it; rejects with the handshake error, or if the server hung up without answering.
 * (With TLS 1.3 the client's handshake completes before the server has checked the client's
 * certificate, so a refused client learns it by an alert or an empty close, not at connect.)
 */
function connect(
  port: number,
  opts: tls.ConnectionOptions,
): Promise<{ answer: string; server: NodeIdentity }> {
  return new Promise((resolve, reject) => {
    let server: NodeIdentity | undefined;
    const sock = tls.connect({ host: '127.0.0.1', port, ...opts }, () => {
      try {
        server = peerIdentity(sock);
      } catch (err) {
        sock.destroy(err as Error);
      }
    });
    let answer = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      answer += d;
    });
    sock.on('close', () => {
      if (answer && server) resolve({ answer, server });
      else reject(new Error('the server closed the connection without answering'));
    });
    sock.on('error', reject);
  });
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

t.test('mutual TLS on loopback: the manager learns who the worker is', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1' });
  const manager = await credentials(ca, 'manager-1', 'manager');
  const worker = await credentials(ca, 'worker-7', 'worker');
  const otherCA = await createClusterCA({ clusterId: 'c1' });
  const impostor = await credentials(otherCA, 'worker-7', 'worker');

  const seen: NodeIdentity[] = [];
  const server = tls.createServer(serverTlsOptions(manager), (sock) => {
    const id = peerIdentity(sock);
    seen.push(id);
    sock.end(`hello ${id.role} ${id.nodeId}`);
  });
  const refused: string[] = [];
  server.on('tlsClientError', (err) => refused.push(err.message)); // expected below
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;

  // a worker of the cluster: both ends verify each other
  const ok = await connect(port, clientTlsOptions(worker));
  t.equal(ok.answer, 'hello worker worker-7');
  t.same(seen, [{ nodeId: 'worker-7', role: 'worker', clusterId: 'c1' }]);
  // the worker checks the manager too: its certificate names 127.0.0.1 and chains to the CA
  t.same(ok.server, { nodeId: 'manager-1', role: 'manager', clusterId: 'c1' });

  // a client with a certificate of another CA (same names) is refused in the handshake
  await t.rejects(
    connect(port, { ...clientTlsOptions(impostor), ca: [ca.certPem] }),
    /certificate|alert|without answering/,
  );
  // (Node's server drops such a client after the handshake without an alert: "socket hang up")
  await waitFor(() => refused.length === 1);
  t.equal(refused.length, 1, 'the server refused the foreign certificate');
  // a client without a certificate is refused
  await t.rejects(
    connect(port, { ca: [ca.certPem], rejectUnauthorized: true }),
    /certificate|alert|without answering/,
  );
  await waitFor(() => refused.length === 2);
  t.match(refused[1], /peer did not return a certificate|certificate required/i, 'the server asked for one');
  // a worker that trusts another cluster refuses this manager
  await t.rejects(connect(port, clientTlsOptions(impostor)), /self[- ]signed|unable to verify|certificate/i);
  t.equal(seen.length, 1, 'no refused client reached the handler');
});

t.test('peerIdentity refuses an unauthenticated peer even if the server lets it through', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1' });
  const manager = await credentials(ca, 'manager-1', 'manager');
  const impostor = await credentials(await createClusterCA({ clusterId: 'c1' }), 'worker-7', 'worker');
  const outcomes: string[] = [];
  const server = tls.createServer({ ...serverTlsOptions(manager), rejectUnauthorized: false }, (sock) => {
    try {
      const id = peerIdentity(sock);
      outcomes.push(`accepted ${id.nodeId}`);
    } catch (err) {
      outcomes.push((err as Error).message);
    }
    sock.end('bye');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  await connect(port, { ...clientTlsOptions(impostor), ca: [ca.certPem] });
  await connect(port, { ca: [ca.certPem] });
  t.match(outcomes, [/not authenticated: UNABLE_TO_VERIFY_LEAF_SIGNATURE/, /not authenticated/]);
});
