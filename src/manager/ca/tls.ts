/**
 * TLS options for the dispatcher (manager side) and agents (worker side): mutual TLS where each
 * end presents a node certificate and accepts only certificates of the cluster CA.
 */
import type { SecureContextOptions, TLSSocket, TlsOptions } from 'node:tls';
import { invalid } from '../../api/errors.js';
import { identityFromCertificate } from './ca.js';
import type { NodeIdentity } from './types.js';

export interface NodeCredentials {
  caCertPem: string;
  certPem: string;
  keyPem: string;
}

const base = (c: NodeCredentials): SecureContextOptions => ({
  ca: [c.caCertPem],
  cert: c.certPem,
  key: c.keyPem,
  minVersion: 'TLSv1.3',
});

/** For `tls.createServer`: clients without a certificate of the cluster CA are refused in the handshake. */
export function serverTlsOptions(c: NodeCredentials): TlsOptions {
  return { ...base(c), requestCert: true, rejectUnauthorized: true };
}

/**
 * For `tls.connect`: verifies the manager's certificate against the cluster CA (and its IP/DNS
 * SANs against `host`), and presents this node's certificate.
 */
export function clientTlsOptions(c: NodeCredentials): SecureContextOptions & { rejectUnauthorized: true } {
  return { ...base(c), rejectUnauthorized: true };
}

/** Who is calling, on a socket of a server made with serverTlsOptions. */
export function peerIdentity(socket: TLSSocket): NodeIdentity {
  if (!socket.authorized) {
    throw invalid(`the peer is not authenticated: ${String(socket.authorizationError ?? 'no certificate')}`);
  }
  return identityFromCertificate(socket.getPeerCertificate());
}
