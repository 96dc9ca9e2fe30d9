/**
 * Certificates of the cluster PKI: the self-signed cluster root, node keys (made on the node, so
 * the private key never leaves it), certificate requests, node certificates issued by a manager,
 * and the checks that turn a presented certificate into a node identity.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { isIP } from 'node:net';
import { invalid } from '../../api/errors.js';
import { type ClusterCA, clusterCN, type NodeIdentity, type NodeRole, ROLES, roleOU } from './types.js';
import { EC_ALG, subtle, x509 } from './x509.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start slightly in the past so a node whose clock lags a little accepts them. */
const BACKDATE_MS = 5 * 60 * 1000;
export const CA_VALIDITY_DAYS = 3650;
export const DEFAULT_NODE_VALIDITY_DAYS = 90;

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function checkId(what: string, value: unknown): string {
  if (typeof value !== 'string' || !ID_RE.test(value)) {
    throw invalid(
      `${what} must be 1-128 characters of letters, digits, '_', '.', '-' (got ${JSON.stringify(value)})`,
    );
  }
  return value;
}

function checkRole(role: unknown): NodeRole {
  if (!ROLES.includes(role as NodeRole))
    throw invalid(`role must be "manager" or "worker" (got ${JSON.stringify(role)})`);
  return role as NodeRole;
}

/** A positive 128-bit serial number (RFC 5280 allows up to 20 octets; the top bit must be 0). */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function pemToDer(pem: string, label: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  if (!m) throw invalid(`expected a PEM ${label}`);
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

/** Imports a PEM private key (PKCS#8 or SEC1) as a WebCrypto ECDSA P-256 signing key. */
async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw invalid('the private key is not a valid PEM key', err);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw invalid('the private key must be ECDSA P-256');
  }
  const der = key.export({ format: 'der', type: 'pkcs8' });
  return subtle.importKey('pkcs8', der, EC_ALG, false, ['sign']);
}

async function importPublicKey(publicKeyPem: string): Promise<CryptoKey> {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey(publicKeyPem);
  } catch (err) {
    throw invalid('the public key is not a valid PEM key', err);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw invalid('the node key must be ECDSA P-256');
  }
  const der = key.export({ format: 'der', type: 'spki' });
  return subtle.importKey('spki', der, EC_ALG, true, ['verify']);
}

function parseCert(pem: string | Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw invalid(`${what} is not a valid PEM certificate`, err);
  }
}

/** Creates the cluster's self-signed root: CN "tsswarm-cluster-<clusterId>", ~10 years, CA only. */
export async function createClusterCA(opts: { clusterId: string; now?: Date }): Promise<ClusterCA> {
  const clusterId = checkId('clusterId', opts.clusterId);
  const now = opts.now ?? new Date();
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const keys = {
    privateKey: await importPrivateKey(keyPem),
    publicKey: await importPublicKey(publicKey.export({ format: 'pem', type: 'spki' }).toString()),
  };
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [clusterCN(clusterId)] }],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    keys,
    signingAlgorithm: EC_ALG,
    extensions: [
      // pathLen 0: the root signs node certificates directly, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem };
}

/** Made on the node: a fresh ECDSA P-256 key pair. Only `publicKeyPem` (or a CSR) is sent to a manager. */
export function newNodeKey(): { keyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/**
 * A PKCS#10 request signed with the node's key, proving possession of it. The subject is only a
 * hint: the issuing manager decides the node id and role (as swarmkit does).
 */
export async function createCertificateRequest(key: {
  keyPem: string;
  publicKeyPem: string;
}): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: ['tsswarm-node'] }],
    keys: {
      privateKey: await importPrivateKey(key.keyPem),
      publicKey: await importPublicKey(key.publicKeyPem),
    },
    signingAlgorithm: EC_ALG,
  });
  return csr.toString('pem');
}

/** The public key of a CSR, after checking its signature (proof of possession). */
async function publicKeyOfCsr(csrPem: string): Promise<string> {
  let csr: InstanceType<typeof x509.Pkcs10CertificateRequest>;
  try {
    csr = new x509.Pkcs10CertificateRequest(new Uint8Array(pemToDer(csrPem, 'CERTIFICATE REQUEST')));
  } catch (err) {
    throw invalid('the certificate request is not a valid PEM PKCS#10 request', err);
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  if (!ok) throw invalid('the certificate request is not signed by its own key');
  return csr.publicKey.toString('pem');
}

export interface IssueOptions {
  nodeId: string;
  role: NodeRole;
  /** DNS name written as a SAN next to the node id. */
  hostname?: string;
  /** IP SANs: the addresses the node is reached at (managers) or connects from. */
  addresses?: readonly string[];
  /** Exactly one of publicKeyPem (SPKI) and csrPem. */
  publicKeyPem?: string;
  csrPem?: string;
  now?: Date;
  validityDays?: number;
}

/**
 * Signs a node certificate: CN = nodeId, OU = tsswarm-<role>, O = the cluster's CN, SANs
 * (IPs, hostname, nodeId), usable for both TLS server and client authentication. Never outlives
 * the CA.
 */
export async function issueNodeCertificate(ca: ClusterCA, opts: IssueOptions): Promise<string> {
  const nodeId = checkId('nodeId', opts.nodeId);
  const role = checkRole(opts.role);
  const validityDays = opts.validityDays ?? DEFAULT_NODE_VALIDITY_DAYS;
  if (!Number.isFinite(validityDays) || validityDays <= 0)
    throw invalid('validityDays must be a positive number');
  if (opts.hostname !== undefined && !HOSTNAME_RE.test(opts.hostname)) {
    throw invalid(`hostname ${JSON.stringify(opts.hostname)} is not a valid DNS name`);
  }
  for (const a of opts.addresses ?? []) {
    if (isIP(a) === 0) throw invalid(`address ${JSON.stringify(a)} is not an IP address`);
  }
  if ((opts.publicKeyPem === undefined) === (opts.csrPem === undefined)) {
    throw invalid('give exactly one of publicKeyPem and csrPem');
  }
  const publicKeyPem = opts.csrPem !== undefined ? await publicKeyOfCsr(opts.csrPem) : opts.publicKeyPem!;
  const publicKey = await importPublicKey(publicKeyPem);

  const caCert = parseCert(ca.certPem, 'the CA certificate');
  if (!caCert.ca) throw invalid('the CA certificate is not a CA');
  const caX = new x509.X509Certificate(new Uint8Array(caCert.raw));
  const signingKey = await importPrivateKey(ca.keyPem);
  if (!createPublicKey(ca.keyPem).equals(caCert.publicKey))
    throw invalid('the CA key does not match the CA certificate');

  const now = opts.now ?? new Date();
  const caNotAfter = new Date(caCert.validTo);
  const wanted = new Date(now.getTime() + validityDays * DAY_MS);
  const notAfter = wanted < caNotAfter ? wanted : caNotAfter;
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  if (notAfter <= now) throw invalid('the CA certificate has expired');

  const san: { type: 'dns' | 'ip'; value: string }[] = [];
  for (const a of opts.addresses ?? []) san.push({ type: 'ip', value: a });
  if (opts.hostname !== undefined && opts.hostname !== nodeId)
    san.push({ type: 'dns', value: opts.hostname });
  san.push({ type: 'dns', value: nodeId });

  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [
      { O: [caX.subjectName.getField('CN')[0] ?? 'tsswarm-cluster'] },
      { OU: [roleOU(role)] },
      { CN: [nodeId] },
    ],
    issuer: caX.subject,
    notBefore,
    notAfter,
    publicKey,
    signingKey,
    signingAlgorithm: EC_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(san),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caX),
    ],
  });
  return cert.toString('pem');
}

/** sha256 of the CA certificate's DER encoding (what join tokens pin). */
export function caCertDigest(caCertPem: string): Buffer {
  return createHash('sha256').update(parseCert(caCertPem, 'the CA certificate').raw).digest();
}

/**
 * Throws unless `certPem` was signed by the CA and both are valid at `now`. A certificate of
 * another cluster (even with the same names) fails the signature check.
 */
export function verifyChain(certPem: string | Buffer, caCertPem: string, now: Date = new Date()): void {
  const cert = parseCert(certPem, 'the node certificate');
  const ca = parseCert(caCertPem, 'the CA certificate');
  if (!ca.ca) throw invalid('the CA certificate is not a CA');
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw invalid("the certificate was not issued by this cluster's CA");
  }
  for (const [c, what] of [
    [ca, 'the CA certificate'],
    [cert, 'the node certificate'],
  ] as const) {
    if (now < new Date(c.validFrom)) throw invalid(`${what} is not valid yet (from ${c.validFrom})`);
    if (now > new Date(c.validTo)) throw invalid(`${what} has expired (${c.validTo})`);
  }
}

/** What `tls.TLSSocket.getPeerCertificate()` returns; only `raw` is read. */
export interface PeerCertificateLike {
  raw?: Buffer;
}

/**
 * The node identity a certificate carries (CN = node id, OU = tsswarm-<role>). Does NOT check the
 * chain: call it on a certificate that TLS (rejectUnauthorized + ca) or verifyChain accepted.
 */
export function identityFromCertificate(
  cert: string | Buffer | X509Certificate | PeerCertificateLike,
): NodeIdentity {
  let x: X509Certificate;
  if (cert instanceof X509Certificate) x = cert;
  else if (typeof cert === 'string' || Buffer.isBuffer(cert)) x = parseCert(cert, 'the node certificate');
  else if (cert && Buffer.isBuffer(cert.raw) && cert.raw.length > 0)
    x = parseCert(cert.raw, 'the peer certificate');
  else throw invalid('the peer presented no certificate');

  const fields = new Map<string, string[]>();
  // Node prints the subject one RDN per line, "KEY=value"; our values never contain newlines.
  for (const line of x.subject.split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    const k = line.slice(0, i);
    fields.set(k, [...(fields.get(k) ?? []), line.slice(i + 1)]);
  }
  const cn = fields.get('CN') ?? [];
  const ou = fields.get('OU') ?? [];
  const o = fields.get('O') ?? [];
  if (cn.length !== 1 || !ID_RE.test(cn[0]!)) throw invalid('the certificate does not name a node (CN)');
  const roles = ROLES.filter((r) => ou.includes(roleOU(r)));
  if (roles.length !== 1) throw invalid('the certificate does not carry exactly one node role (OU)');
  const id: NodeIdentity = { nodeId: cn[0]!, role: roles[0]! };
  const prefix = clusterCN('');
  if (o.length === 1 && o[0]!.startsWith(prefix)) id.clusterId = o[0]!.slice(prefix.length);
  return id;
}
