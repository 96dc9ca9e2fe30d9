import { availableParallelism, hostname, totalmem } from 'node:os';
import { invalid } from '../api/errors.js';
import { createCertificateRequest, newNodeKey } from '../manager/ca/ca.js';
import type { NodeCredentials } from '../manager/ca/tls.js';
import { caDigest, parseJoinToken } from '../manager/ca/token.js';
import type { JoinAnswer, JoinRequest } from '../manager/dispatcher.js';
import { callJson, callManager, readBody } from './remoteLink.js';

export interface JoinOptions {
  token: string;
  /** A manager's dispatcher address, HOST:PORT. */
  manager: string;
  advertiseAddr?: string;
  /** A joining manager's own dispatcher port. */
  dispatcherPort?: number;
}

/**
 * The first contact with a swarm: the manager's CA is fetched unverified and checked against
 * the digest the join token carries, then the token and a certificate request buy this node
 * its id, role and certificate.
 */
export async function requestJoin(
  opts: JoinOptions,
): Promise<{ answer: JoinAnswer; creds: NodeCredentials }> {
  const parsed = parseJoinToken(opts.token);
  const caRes = await callManager(opts.manager, { insecure: true }, 'GET', '/ca');
  const caCertPem = await readBody(caRes);
  if (caDigest(caCertPem) !== parsed.caDigest) {
    throw invalid(`the manager at ${opts.manager} is not of the cluster this join token was made for`);
  }
  const key = newNodeKey();
  const req: JoinRequest = {
    token: opts.token,
    csrPem: await createCertificateRequest(key),
    hostname: hostname(),
    address: opts.advertiseAddr ?? '',
    platform: { os: 'linux', arch: process.arch === 'x64' ? 'x86_64' : process.arch },
    resources: { nanoCpus: availableParallelism() * 1e9, memoryBytes: totalmem() },
    ...(opts.dispatcherPort ? { dispatcherPort: opts.dispatcherPort } : {}),
  };
  const answer = await callJson<JoinAnswer>(opts.manager, { caCertPem }, 'POST', '/join', req);
  return { answer, creds: { caCertPem, certPem: answer.certPem, keyPem: key.keyPem } };
}

/** A promoted worker asks for its manager certificate and its place in etcd. */
export async function requestPromotion(
  manager: string,
  creds: NodeCredentials,
): Promise<{ answer: JoinAnswer; creds: NodeCredentials }> {
  const key = newNodeKey();
  const answer = await callJson<JoinAnswer>(manager, creds, 'POST', '/promote', {
    csrPem: await createCertificateRequest(key),
  });
  return { answer, creds: { caCertPem: creds.caCertPem, certPem: answer.certPem, keyPem: key.keyPem } };
}
