/**
 * Registry authentication, as the distribution spec and Docker do it: a `401` names its scheme
 * in `WWW-Authenticate`; Basic sends the user's credentials with every request, Bearer trades
 * them (or nothing, for anonymous pulls) for a token at the challenge's realm, for one scope.
 */
import { invalid } from '../../api/errors.js';

/** What `tsswarm login` stores for a registry, and what travels with a pull, push or deploy. */
export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (`identitytoken` in Docker's config); used instead of the password. */
  identityToken?: string;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` value into its challenges (`Bearer realm="…",service="…"`,
 * `Basic realm="…"`). Quoted values may hold commas and escaped quotes.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipSpace = () => {
    while (i < s.length && /[\s,]/.test(s[i]!)) i++;
  };
  while (i < s.length) {
    skipSpace();
    const m = /^[A-Za-z][A-Za-z0-9._-]*/.exec(s.slice(i));
    if (!m) break;
    const scheme = m[0];
    i += scheme.length;
    const params: Record<string, string> = {};
    for (;;) {
      const save = i;
      while (i < s.length && s[i] === ' ') i++;
      if (s[i] === ',') i++;
      while (i < s.length && s[i] === ' ') i++;
      const km = /^([A-Za-z][A-Za-z0-9._-]*)\s*=\s*/.exec(s.slice(i));
      if (!km) {
        i = save;
        break;
      }
      i += km[0].length;
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++;
      } else {
        const vm = /^[^,\s]*/.exec(s.slice(i))!;
        value = vm[0];
        i += value.length;
      }
      params[km[1]!.toLowerCase()] = value;
    }
    out.push({ scheme: scheme.toLowerCase(), params });
  }
  return out;
}

/** `Basic base64(user:password)`, or undefined without a username. */
export function basicHeader(c: RegistryCredentials | undefined): string | undefined {
  if (!c?.username) return undefined;
  return `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
}

/** The token scope for a repository and actions: `repository:a/b:pull,push`. */
export function repositoryScope(repo: string, actions: string[]): string {
  return `repository:${repo}:${actions.join(',')}`;
}

/**
 * Decodes the `X-Registry-Auth` header a client sends with pull, push and deploy: base64url of
 * `{"username","password","identitytoken"}` (Docker's AuthConfig names).
 */
export function decodeAuthHeader(value: string | undefined): RegistryCredentials | undefined {
  if (!value) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    throw invalid('the X-Registry-Auth header is not base64 JSON');
  }
  if (typeof v !== 'object' || v === null) throw invalid('the X-Registry-Auth header is not a JSON object');
  const o = v as Record<string, unknown>;
  const str = (k: string) => (typeof o[k] === 'string' && o[k] !== '' ? (o[k] as string) : undefined);
  const c: RegistryCredentials = {};
  const username = str('username');
  const password = str('password');
  const identityToken = str('identitytoken');
  if (username) c.username = username;
  if (password) c.password = password;
  if (identityToken) c.identityToken = identityToken;
  return c.username || c.identityToken ? c : undefined;
}

export function encodeAuthHeader(c: RegistryCredentials): string {
  return Buffer.from(
    JSON.stringify({
      username: c.username ?? '',
      password: c.password ?? '',
      ...(c.identityToken ? { identitytoken: c.identityToken } : {}),
    }),
  ).toString('base64url');
}

/** `X-Registry-Config`: base64url JSON of registry host → AuthConfig, for the FROM images of a build. */
export function decodeRegistryConfig(value: string | undefined): Record<string, RegistryCredentials> {
  if (!value) return {};
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    throw invalid('the X-Registry-Config header is not base64 JSON');
  }
  const out: Record<string, RegistryCredentials> = {};
  if (typeof v !== 'object' || v === null) return out;
  for (const [host, c] of Object.entries(v)) {
    const creds = decodeAuthHeader(Buffer.from(JSON.stringify(c)).toString('base64url'));
    if (creds) out[host] = creds;
  }
  return out;
}
