/**
 * HTTP to one registry: the scheme (HTTPS; plain HTTP only for loopback registries and ones
 * named insecure, as Docker allows), trust (the system's CAs plus `<certsDir>/<host>/*.crt`),
 * and authentication (a `401` is answered once, with Basic credentials or a Bearer token for
 * the request's scope). Error bodies of the distribution spec become typed errors.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher, request } from 'undici';
import { notFound, registryError, TsswarmError, unauthorized } from '../../api/errors.js';
import { basicHeader, type Challenge, parseChallenges, type RegistryCredentials } from './auth.js';

export interface RegistryOptions {
  /** Per-registry CA certificates: `<certsDir>/<host[:port]>/*.crt` (Docker's certs.d layout). */
  certsDir?: string;
  /** Registries (host[:port]) reached over plain HTTP when HTTPS fails; loopback ones always are. */
  insecure?: string[];
}

export interface RegistryResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

type Body = Buffer | string | Readable;

export interface SendOptions {
  headers?: Record<string, string>;
  /** A function, so the body can be sent again after an authentication round trip. */
  body?: () => Body;
  /** Token scopes this request needs (`repository:a/b:pull`). */
  scopes: string[];
  /** Statuses that are not errors; others throw. */
  ok: number[];
  /** Names the object in a 404 message. */
  what?: string;
  signal?: AbortSignal;
}

/** Where docker.io's API lives. */
const API_HOST: Record<string, string> = { 'docker.io': 'registry-1.docker.io' };
const TLS_FALLBACK = /EPROTO|ERR_SSL|WRONG_VERSION|ECONNRESET|UND_ERR_SOCKET|packet length too long/i;

function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return name === 'localhost' || name === '::1' || /^127\./.test(name);
}

function header(h: RegistryResponse['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

interface Token {
  value: string;
  expires: number;
}

/** One registry, one set of credentials. Reused across the requests of a pull or push. */
export class RegistrySession {
  readonly apiHost: string;
  private base?: string;
  private readonly dispatcher: Agent;
  private challenge?: Challenge;
  private readonly tokens = new Map<string, Token>();

  constructor(
    readonly host: string,
    private readonly creds: RegistryCredentials | undefined,
    private readonly opts: RegistryOptions = {},
  ) {
    this.apiHost = API_HOST[host] ?? host;
    this.dispatcher = new Agent({
      connect: { ca: this.trusted() },
      keepAliveTimeout: 10_000,
      connections: 16,
    });
  }

  /** An absolute URL for a Location the registry returned (often relative). */
  resolve(location: string): string {
    return new URL(location, this.base ?? `https://${this.apiHost}`).toString();
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }

  private trusted(): string[] {
    const dir = this.opts.certsDir ? join(this.opts.certsDir, this.host) : undefined;
    const extra: string[] = [];
    if (dir) {
      try {
        for (const f of readdirSync(dir))
          if (f.endsWith('.crt')) extra.push(readFileSync(join(dir, f), 'utf8'));
      } catch {}
    }
    return [...rootCertificates, ...extra];
  }

  private insecureAllowed(): boolean {
    return isLoopback(this.host) || (this.opts.insecure ?? []).includes(this.host);
  }

  /** `GET /v2/`: picks the scheme and learns how the registry wants to be authenticated. */
  private async ping(signal?: AbortSignal): Promise<string> {
    if (this.base) return this.base;
    const tryBase = async (base: string) => {
      const res = await request(`${base}/v2/`, { dispatcher: this.dispatcher, signal, method: 'GET' });
      await res.body.dump();
      if (res.statusCode === 401) {
        const chs = parseChallenges(header(res.headers, 'www-authenticate') ?? '');
        this.challenge = chs.find((c) => c.scheme === 'bearer') ?? chs.find((c) => c.scheme === 'basic');
      } else if (res.statusCode !== 200) {
        throw registryError(
          `registry ${this.host} answered HTTP ${res.statusCode} to GET /v2/: is it a registry?`,
        );
      }
      return base;
    };
    try {
      this.base = await tryBase(`https://${this.apiHost}`);
    } catch (err) {
      if (err instanceof TsswarmError) throw err;
      const msg = `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message} ${String((err as { cause?: Error }).cause?.message ?? '')}`;
      if (this.insecureAllowed() && TLS_FALLBACK.test(msg)) {
        try {
          this.base = await tryBase(`http://${this.apiHost}`);
        } catch (err2) {
          if (err2 instanceof TsswarmError) throw err2;
          throw this.unreachable(err2);
        }
      } else throw this.unreachable(err);
    }
    return this.base;
  }

  private unreachable(err: unknown): TsswarmError {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const why = e.cause?.code ?? e.code ?? e.cause?.message ?? e.message;
    const hint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/i.test(String(why))
      ? ` (put its CA certificate in ${this.opts.certsDir ?? '<certs dir>'}/${this.host}/ca.crt)`
      : '';
    return registryError(`cannot reach registry ${this.host}: ${why}${hint}`, err);
  }

  private async token(scopes: string[], signal?: AbortSignal): Promise<string> {
    const ch = this.challenge!;
    const key = scopes.join(' ');
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return cached.value;
    const realm = ch.params.realm;
    if (!realm) throw registryError(`registry ${this.host} asks for a bearer token but names no realm`);
    const url = new URL(realm);
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    let res: Dispatcher.ResponseData;
    try {
      if (this.creds?.identityToken) {
        const form = new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: this.creds.identityToken,
          client_id: 'tsswarm',
          service: ch.params.service ?? '',
          scope: scopes.join(' '),
        });
        res = await request(realm, {
          method: 'POST',
          dispatcher: this.dispatcher,
          signal,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: form.toString(),
        });
      } else {
        const auth = basicHeader(this.creds);
        res = await request(url, {
          method: 'GET',
          dispatcher: this.dispatcher,
          signal,
          headers: auth ? { authorization: auth } : {},
        });
      }
    } catch (err) {
      throw this.unreachable(err);
    }
    const text = await res.body.text();
    if (res.statusCode === 401 || res.statusCode === 403)
      throw unauthorized(`registry ${this.host}: the token service refused the credentials`);
    if (res.statusCode !== 200)
      throw registryError(`registry ${this.host}: token service answered HTTP ${res.statusCode}`);
    let v: { token?: string; access_token?: string; expires_in?: number };
    try {
      v = JSON.parse(text);
    } catch {
      throw registryError(`registry ${this.host}: the token service answered something other than JSON`);
    }
    const value = v.token ?? v.access_token;
    if (!value) throw registryError(`registry ${this.host}: the token service returned no token`);
    const ttl = Math.max(30, Number(v.expires_in) || 60);
    this.tokens.set(key, { value, expires: Date.now() + (ttl - 10) * 1000 });
    return value;
  }

  private async authorization(scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    if (!this.challenge) return undefined;
    if (this.challenge.scheme === 'basic') {
      const h = basicHeader(this.creds);
      if (!h)
        throw unauthorized(
          `registry ${this.host} requires authentication: run \`tsswarm login ${this.host}\``,
        );
      return h;
    }
    if (this.challenge.scheme === 'bearer') return `Bearer ${await this.token(scopes, signal)}`;
    throw registryError(
      `registry ${this.host} asks for unsupported authentication "${this.challenge.scheme}"`,
    );
  }

  /** Sends one request (path from /v2/… or an absolute upload URL) and checks its status. */
  async send(method: string, path: string, o: SendOptions): Promise<RegistryResponse> {
    const base = await this.ping(o.signal);
    const url = /^https?:\/\//.test(path) ? path : `${base}${path}`;
    for (let attempt = 0; ; attempt++) {
      const auth = await this.authorization(o.scopes, o.signal);
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method: method as Dispatcher.HttpMethod,
          dispatcher: this.dispatcher,
          signal: o.signal,
          headers: { ...(o.headers ?? {}), ...(auth ? { authorization: auth } : {}) },
          body: o.body?.(),
          maxRedirections: 0,
        });
      } catch (err) {
        if ((err as Error).name === 'AbortError') throw err;
        throw this.unreachable(err);
      }
      if (res.statusCode === 401 && attempt === 0) {
        const chs = parseChallenges(header(res.headers, 'www-authenticate') ?? '');
        const next = chs.find((c) => c.scheme === 'bearer') ?? chs.find((c) => c.scheme === 'basic');
        await res.body.dump();
        if (next) {
          this.challenge = next;
          this.tokens.clear();
          continue;
        }
      }
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && !o.ok.includes(res.statusCode)) {
        const loc = header(res.headers, 'location');
        await res.body.dump();
        if (!loc)
          throw registryError(`registry ${this.host} redirected ${method} ${path} without a location`);
        return this.follow(method, new URL(loc, url).toString(), o);
      }
      if (!o.ok.includes(res.statusCode)) throw await this.failure(res, method, path, o.what);
      return { status: res.statusCode, headers: res.headers, body: res.body };
    }
  }

  /** A redirect (blob storage elsewhere): no registry credentials go with it. */
  private async follow(method: string, url: string, o: SendOptions, hops = 0): Promise<RegistryResponse> {
    if (hops > 5) throw registryError(`registry ${this.host}: too many redirects for ${url}`);
    const res = await request(url, {
      method: method as Dispatcher.HttpMethod,
      dispatcher: this.dispatcher,
      signal: o.signal,
      headers: o.headers ?? {},
      maxRedirections: 0,
    }).catch((err: unknown) => {
      throw this.unreachable(err);
    });
    if ([301, 302, 303, 307, 308].includes(res.statusCode)) {
      const loc = header(res.headers, 'location');
      await res.body.dump();
      return this.follow(method, new URL(loc ?? '', url).toString(), o, hops + 1);
    }
    if (!o.ok.includes(res.statusCode)) throw await this.failure(res, method, url, o.what);
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  private async failure(
    res: Dispatcher.ResponseData,
    method: string,
    path: string,
    what: string | undefined,
  ): Promise<TsswarmError> {
    const text = method === 'HEAD' ? '' : await res.body.text().catch(() => '');
    if (method === 'HEAD') await res.body.dump().catch(() => undefined);
    let detail = '';
    try {
      const v = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
      detail = (v.errors ?? []).map((e) => `${e.code ?? 'ERROR'}: ${e.message ?? ''}`.trim()).join('; ');
    } catch {}
    if (res.statusCode === 404)
      return notFound(`${what ?? path} not found in registry ${this.host}${detail ? ` (${detail})` : ''}`);
    if (res.statusCode === 401 || res.statusCode === 403) {
      return unauthorized(
        this.creds
          ? `registry ${this.host} refused access to ${what ?? path}: ${detail || `HTTP ${res.statusCode}`}`
          : `registry ${this.host} requires authentication for ${what ?? path}: run \`tsswarm login ${this.host}\``,
      );
    }
    return registryError(
      `registry ${this.host}: ${method} ${what ?? path} failed with HTTP ${res.statusCode}${detail ? `: ${detail}` : ''}`,
    );
  }
}

export { header as responseHeader };

/** Checks credentials the way `docker login` does: a request to /v2/ that needs them. */
export async function checkLogin(
  host: string,
  creds: RegistryCredentials,
  opts: RegistryOptions,
): Promise<void> {
  const s = new RegistrySession(host, creds, opts);
  try {
    const res = await s.send('GET', '/v2/', { scopes: [], ok: [200], what: 'login' });
    await res.body.dump();
  } catch (err) {
    if (err instanceof TsswarmError && err.code === 'unauthorized')
      throw unauthorized(`login to ${host} failed: the registry refused the username or password`);
    throw err;
  } finally {
    await s.close().catch(() => undefined);
  }
}
