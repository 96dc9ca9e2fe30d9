import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import {
  createCertificateRequest,
  createClusterCA,
  identityFromCertificate,
  issueNodeCertificate,
  newNodeKey,
  verifyChain,
} from './ca.js';

const now = new Date('2030-01-01T00:00:00Z');
const DAY = 24 * 3600 * 1000;

t.test('the cluster CA is a self-signed ECDSA P-256 root valid ~10 years', async (t) => {
  const ca = await createClusterCA({ clusterId: 'abc123', now });
  const x = new X509Certificate(ca.certPem);
  t.equal(x.subject, 'CN=tsswarm-cluster-abc123');
  t.equal(x.issuer, x.subject);
  t.ok(x.ca);
  t.ok(x.verify(x.publicKey), 'self-signed');
  t.ok(x.checkIssued(x));
  t.equal(x.publicKey.asymmetricKeyType, 'ec');
  t.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const years = (new Date(x.validTo).getTime() - now.getTime()) / (365 * DAY);
  t.ok(years > 9.9 && years <= 10.01, `valid ${years} years`);
  t.ok(new Date(x.validFrom) <= now);
  t.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  await t.rejects(createClusterCA({ clusterId: 'bad id,CN=x' }), /clusterId must be/);
});

t.test('issue a node certificate from a public key; chain and identity', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const key = newNodeKey();
  t.match(key.keyPem, /BEGIN PRIVATE KEY/);
  t.match(key.publicKeyPem, /BEGIN PUBLIC KEY/);
  const pem = await issueNodeCertificate(ca, {
    nodeId: 'node-1',
    role: 'worker',
    hostname: 'host1.example',
    addresses: ['10.0.0.5', '::1'],
    publicKeyPem: key.publicKeyPem,
    now,
  });
  const x = new X509Certificate(pem);
  t.equal(x.subject, 'O=tsswarm-cluster-c1\nOU=tsswarm-worker\nCN=node-1');
  t.equal(x.issuer, 'CN=tsswarm-cluster-c1');
  t.notOk(x.ca);
  t.equal(x.subjectAltName, 'IP Address:10.0.0.5, IP Address:0:0:0:0:0:0:0:1, DNS:host1.example, DNS:node-1');
  t.same(
    x.keyUsage?.slice().sort(),
    ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'],
    'EKU serverAuth + clientAuth',
  );
  t.ok(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(key.keyPem)), 'for the node key');
  const days = (new Date(x.validTo).getTime() - now.getTime()) / DAY;
  t.equal(Math.round(days), 90);
  t.equal(x.checkIP('10.0.0.5'), '10.0.0.5');
  t.equal(x.checkHost('host1.example'), 'host1.example');

  t.doesNotThrow(() => verifyChain(pem, ca.certPem, now));
  t.same(identityFromCertificate(pem), { nodeId: 'node-1', role: 'worker', clusterId: 'c1' });
  t.same(identityFromCertificate(x), { nodeId: 'node-1', role: 'worker', clusterId: 'c1' });
  t.same(identityFromCertificate({ raw: x.raw }), { nodeId: 'node-1', role: 'worker', clusterId: 'c1' });

  // validity window
  t.throws(
    () => verifyChain(pem, ca.certPem, new Date(now.getTime() + 91 * DAY)),
    /node certificate has expired/,
  );
  t.throws(() => verifyChain(pem, ca.certPem, new Date(now.getTime() - DAY)), /not valid yet/);
});

t.test(
  'issue from a CSR (the key never leaves the node); role manager; validity is capped by the CA',
  async (t) => {
    const ca = await createClusterCA({ clusterId: 'c1', now });
    const key = newNodeKey();
    const csrPem = await createCertificateRequest(key);
    t.match(csrPem, /BEGIN CERTIFICATE REQUEST/);
    const pem = await issueNodeCertificate(ca, {
      nodeId: 'm1',
      role: 'manager',
      csrPem,
      now,
      validityDays: 100000,
    });
    const x = new X509Certificate(pem);
    t.equal(x.validTo, new X509Certificate(ca.certPem).validTo, 'never outlives the CA');
    t.equal(x.subjectAltName, 'DNS:m1');
    t.ok(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(key.keyPem)));
    t.same(identityFromCertificate(pem), { nodeId: 'm1', role: 'manager', clusterId: 'c1' });

    // a CSR whose signature does not match its key (tampered) is refused
    const other = newNodeKey();
    const forged = await createCertificateRequest({ keyPem: other.keyPem, publicKeyPem: key.publicKeyPem });
    await t.rejects(
      issueNodeCertificate(ca, { nodeId: 'm2', role: 'manager', csrPem: forged, now }),
      /not signed by its own key/,
    );
    await t.rejects(
      issueNodeCertificate(ca, { nodeId: 'm2', role: 'manager', csrPem: 'junk', now }),
      /not a valid PEM PKCS#10/,
    );
  },
);

t.test('bad issue options are refused with invalid_argument', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const { publicKeyPem } = newNodeKey();
  const base = { nodeId: 'n1', role: 'worker' as const, publicKeyPem, now };
  const cases: [object, RegExp][] = [
    [{ nodeId: 'a/b' }, /nodeId must be/],
    [{ role: 'admin' }, /role must be/],
    [{ addresses: ['10.0.0.300'] }, /not an IP address/],
    [{ hostname: 'bad host' }, /not a valid DNS name/],
    [{ validityDays: 0 }, /validityDays/],
    [{ publicKeyPem: undefined }, /exactly one of/],
    [{ csrPem: 'x' }, /exactly one of/],
    [{ publicKeyPem: 'nope' }, /not a valid PEM key/],
    [{ now: new Date('2045-01-01') }, /CA certificate has expired/],
  ];
  for (const [patch, re] of cases) {
    await t.rejects(issueNodeCertificate(ca, { ...base, ...patch }), re, JSON.stringify(patch));
  }
  const { generateKeyPairSync } = await import('node:crypto');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
    format: 'pem',
    type: 'spki',
  });
  await t.rejects(issueNodeCertificate(ca, { ...base, publicKeyPem: rsa.toString() }), /must be ECDSA P-256/);
  const other = await createClusterCA({ clusterId: 'c1', now });
  await t.rejects(
    issueNodeCertificate({ certPem: ca.certPem, keyPem: other.keyPem }, base),
    /does not match/,
  );
  try {
    await issueNodeCertificate(ca, { ...base, nodeId: '' });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof TsswarmError && err.code === 'invalid_argument');
  }
});

t.test('a certificate of another CA is refused, even with the same names', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  const impostor = await createClusterCA({ clusterId: 'c1', now });
  const { publicKeyPem } = newNodeKey();
  const foreign = await issueNodeCertificate(impostor, { nodeId: 'n1', role: 'manager', publicKeyPem, now });
  t.throws(() => verifyChain(foreign, ca.certPem, now), /not issued by this cluster's CA/);
  // a leaf is not a CA and cannot stand in for one
  const leaf = await issueNodeCertificate(ca, { nodeId: 'n2', role: 'worker', publicKeyPem, now });
  t.throws(() => verifyChain(leaf, leaf, now), /not a CA/);
  t.throws(() => verifyChain('garbage', ca.certPem, now), /not a valid PEM certificate/);
});

t.test('identityFromCertificate refuses certificates without a node identity', async (t) => {
  const ca = await createClusterCA({ clusterId: 'c1', now });
  t.throws(() => identityFromCertificate(ca.certPem), /exactly one node role/);
  t.throws(() => identityFromCertificate({}), /presented no certificate/);
  t.throws(() => identityFromCertificate({ raw: Buffer.alloc(0) }), /presented no certificate/);
});
