import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type RequestOptions } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fromWire, invalid, TsswarmError } from './errors.js';

export const DEFAULT_SOCKET = '/run/tsswarm/tsswarm.sock';

export interface Target {
  url: string;
  socketPath?: string;
  host?: string;
  port?: number;
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/** Parses -H/TSSWARM_HOST: unix:///path or tcp://host:port (TLS material from certDir when given). */
export function parseTarget(hostFlag: string | undefined, certDir?: string): Target {
  const h = hostFlag || process.env.TSSWARM_HOST || `unix://${DEFAULT_SOCKET}`;
  if (h.startsWith('unix://')) return { url: h, socketPath: h.slice('unix://'.length) };
  if (h.startsWith('/')) return { url: `unix://${h}`, socketPath: h };
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(h);
  if (!m) throw invalid(`invalid host "${h}": use unix:///path/to.sock or tcp://HOST:PORT`);
  const target: Target = { url: h, host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  const dir = certDir || process.env.TSSWARM_CERT_PATH;
  if (dir) {
    target.tls = {
      ca: readFileSync(join(dir, 'ca.pem')),
      cert: readFileSync(join(dir, 'cert.pem')),
      key: readFileSync(join(dir, 'key.pem')),
    };
  }
  return target;
}

export interface RequestOpts {
  query?: Record<string, string | number | boolean | string[] | undefined>;
  body?: unknown;
  /** A stream sent as the body (application/x-tar). */
  upload?: Readable;
  headers?: Record<string, string>;
}

function qs(query: RequestOpts['query']): string {
  if (!query) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) p.append(k, String(item));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** A thin client of the daemon's HTTP API. */
export class Client {
  constructor(readonly target: Target) {}

  private options(method: string, path: string, opts: RequestOpts): RequestOptions {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.upload) headers['content-type'] = 'application/x-tar';
    const base: RequestOptions = { method, path: `${path}${qs(opts.query)}`, headers };
    if (this.target.socketPath) return { ...base, socketPath: this.target.socketPath };
    return {
      ...base,
      host: this.target.host,
      port: this.target.port,
      ...(this.target.tls
        ? { ca: this.target.tls.ca, cert: this.target.tls.cert, key: this.target.tls.key }
        : {}),
    };
  }

  private unreachable(err: NodeJS.ErrnoException): TsswarmError {
    return new TsswarmError(
      'daemon_unreachable',
      `cannot connect to the tsswarm daemon at ${this.target.url} (${err.code ?? err.message}): is \`tsswarm daemon\` running?`,
      { cause: err },
    );
  }

  private send(method: string, path: string, opts: RequestOpts): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const lib = this.target.tls ? https : http;
      const req = lib.request(this.options(method, path, opts), resolve);
      req.on('error', (e: NodeJS.ErrnoException) =>
        reject(
          ['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EACCES'].includes(e.code ?? '') ? this.unreachable(e) : e,
        ),
      );
      if (opts.upload) opts.upload.pipe(req);
      else req.end(opts.body !== undefined ? JSON.stringify(opts.body) : undefined);
    });
  }

  private static async text(res: IncomingMessage): Promise<string> {
    let s = '';
    res.setEncoding('utf8');
    for await (const c of res) s += c;
    return s;
  }

  /** Sends a request and returns the parsed JSON answer; API errors become typed errors. */
  async request<T = unknown>(method: string, path: string, opts: RequestOpts = {}): Promise<T> {
    const res = await this.send(method, path, opts);
    const text = await Client.text(res);
    const status = res.statusCode ?? 500;
    let body: unknown;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (status >= 400) throw fromWire(body, status);
    return body as T;
  }

  /** Sends a request and returns the response stream (for logs, stats, save). */
  async stream(method: string, path: string, opts: RequestOpts = {}): Promise<IncomingMessage> {
    const res = await this.send(method, path, opts);
    if ((res.statusCode ?? 500) >= 400) {
      const text = await Client.text(res);
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {}
      throw fromWire(body, res.statusCode ?? 500);
    }
    return res;
  }

  /** Upgrades the connection to a raw stream (attach, exec). */
  upgrade(path: string, headers: Record<string, string> = {}): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const lib = this.target.tls ? https : http;
      const req = lib.request(
        this.options('POST', path, {
          headers: { ...headers, connection: 'Upgrade', upgrade: 'tsswarm-stream' },
        }),
      );
      req.on('upgrade', (_res, socket, head) => {
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', async (res) => {
        const text = await Client.text(res);
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {}
        reject(fromWire(body, res.statusCode ?? 500));
      });
      req.on('error', (e: NodeJS.ErrnoException) =>
        reject(['ECONNREFUSED', 'ENOENT'].includes(e.code ?? '') ? this.unreachable(e) : e),
      );
      req.end();
    });
  }
}
