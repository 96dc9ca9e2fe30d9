/**
 * Join tokens, in the format of `docker swarm join-token`:
 *
 *     SWMTKN-1-<sha256 of the CA certificate, base 36, 50 chars>-<128-bit secret, base 36, 25 chars>
 *
 * The digest lets a joining node pin the CA it fetches from a manager before trusting it; the
 * secret proves the node was invited. Workers and managers have separate secrets; rotating one
 * (a new token) makes the old token useless, because managers only keep the current secrets.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { invalid } from '../../api/errors.js';
import { caCertDigest } from './ca.js';
import { type NodeRole, ROLES } from './types.js';

export const TOKEN_PREFIX = 'SWMTKN';
export const TOKEN_VERSION = '1';
const DIGEST_CHARS = 50; // 256 bits in base 36
const SECRET_CHARS = 25; // 128 bits in base 36
const SECRET_BYTES = 16;

export type Rng = (bytes: number) => Uint8Array;

function base36(bytes: Uint8Array, width: number): string {
  const n = BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
  return n.toString(36).padStart(width, '0');
}

/** The CA pin of a token: sha256(DER of the CA certificate) in base 36. */
export function caDigest(caCertPem: string): string {
  return base36(caCertDigest(caCertPem), DIGEST_CHARS);
}

export interface JoinToken {
  role: NodeRole;
  token: string;
  /** What managers store (in the cluster object) to verify the token later. */
  secret: string;
}

/** A fresh token (and so a fresh secret) for `role`; calling it again is rotation. */
export function newJoinToken(role: NodeRole, caCertPem: string, rng: Rng = randomBytes): JoinToken {
  if (!ROLES.includes(role))
    throw invalid(`role must be "manager" or "worker" (got ${JSON.stringify(role)})`);
  const bytes = rng(SECRET_BYTES);
  if (bytes.length !== SECRET_BYTES)
    throw invalid(`the random source returned ${bytes.length} bytes, not ${SECRET_BYTES}`);
  const secret = base36(bytes, SECRET_CHARS);
  return { role, secret, token: formatJoinToken(caDigest(caCertPem), secret) };
}

/** The token for an existing secret under a (possibly rotated) CA. */
export function formatJoinToken(digest: string, secret: string): string {
  return `${TOKEN_PREFIX}-${TOKEN_VERSION}-${digest}-${secret}`;
}

/**
 * Splits a token into its CA digest and secret, or explains what is wrong. Messages never repeat
 * the token, which is a credential and ends up in logs.
 */
export function parseJoinToken(token: string): { caDigest: string; secret: string } {
  if (typeof token !== 'string' || token.trim() === '') throw invalid('the join token is empty');
  const bad = (why: string) => invalid(`invalid join token: ${why}`);
  const parts = token.trim().split('-');
  if (parts[0] !== TOKEN_PREFIX) throw bad(`it must start with "${TOKEN_PREFIX}-"`);
  if (parts.length !== 4) {
    throw bad(
      `expected ${TOKEN_PREFIX}-${TOKEN_VERSION}-<ca digest>-<secret> (4 parts, got ${parts.length})`,
    );
  }
  const [, version, digest, secret] = parts as [string, string, string, string];
  if (version !== TOKEN_VERSION) {
    throw bad(`unsupported version "${version.slice(0, 8)}" (expected ${TOKEN_VERSION})`);
  }
  if (!/^[0-9a-z]+$/.test(digest) || digest.length !== DIGEST_CHARS) {
    throw bad(`the CA digest must be ${DIGEST_CHARS} characters of [0-9a-z] (got ${digest.length})`);
  }
  if (!/^[0-9a-z]+$/.test(secret) || secret.length !== SECRET_CHARS) {
    throw bad(`the secret must be ${SECRET_CHARS} characters of [0-9a-z] (got ${secret.length})`);
  }
  return { caDigest: digest, secret };
}

/** Equal-time comparison of strings of any length (hashing first makes the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/**
 * The role a token admits, or an error. `workerSecret`/`managerSecret` are the current secrets (a
 * whole token is accepted too and reduced to its secret). Both secrets are always compared.
 */
export function verifyJoinToken(
  token: string,
  opts: { caCertPem: string; workerSecret: string; managerSecret: string },
): NodeRole {
  const parsed = parseJoinToken(token);
  if (!sameSecret(parsed.caDigest, caDigest(opts.caCertPem))) {
    throw invalid('the join token was made for another cluster');
  }
  const stored = (s: string) => (s.startsWith(`${TOKEN_PREFIX}-`) ? parseJoinToken(s).secret : s);
  const worker = sameSecret(parsed.secret, stored(opts.workerSecret));
  const manager = sameSecret(parsed.secret, stored(opts.managerSecret));
  if (manager) return 'manager';
  if (worker) return 'worker';
  throw invalid('the join token is not valid for this cluster (it may have been rotated)');
}
