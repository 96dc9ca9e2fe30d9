import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { TaskRecord } from '../api/cluster.js';
import { fromWire, TsswarmError } from '../api/errors.js';
import type { NodeCredentials } from '../manager/ca/tls.js';
import type { ManagerLink, StatusUpdate } from './agent.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One HTTPS call to a manager's dispatcher with this node's certificate. */
export function callManager(
  manager: string,
  creds: NodeCredentials | { caCertPem: string } | { insecure: true },
  method: string,
  path: string,
  body?: unknown,
): Promise<IncomingMessage> {
  const [host, port] = splitAddr(manager);
  // 'insecure' only fetches the CA, which the caller then checks against its join token
  const tls =
    'insecure' in creds
      ? { rejectUnauthorized: false }
      : 'certPem' in creds
        ? { ca: [creds.caCertPem], cert: creds.certPem, key: creds.keyPem, rejectUnauthorized: true }
        : { ca: [creds.caCertPem], rejectUnauthorized: true };
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method,
        path,
        headers: body !== undefined ? { 'content-type': 'application/json' } : {},
        timeout: 10_000,
        ...tls,
      },
      resolve,
    );
    req.on('error', (e) =>
      reject(
        new TsswarmError('daemon_unreachable', `cannot reach the manager at ${manager}: ${e.message}`, {
          cause: e,
        }),
      ),
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(body !== undefined ? JSON.stringify(body) : undefined);
  });
}

export async function readBody(res: IncomingMessage): Promise<string> {
  let s = '';
  res.setEncoding('utf8');
  for await (const c of res) s += c;
  return s;
}

/** Sends a JSON request and returns the JSON answer; errors of the manager become typed errors. */
export async function callJson<T>(
  manager: string,
  creds: Parameters<typeof callManager>[1],
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await callManager(manager, creds, method, path, body);
  const text = await readBody(res);
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {}
  if ((res.statusCode ?? 500) >= 400) throw fromWire(parsed, res.statusCode ?? 500);
  return parsed as T;
}

export function splitAddr(addr: string): [string, number] {
  const m = /^(.+):(\d+)$/.exec(addr);
  if (!m) throw new TsswarmError('invalid_argument', `invalid manager address "${addr}": expected HOST:PORT`);
  return [m[1]!, Number(m[2])];
}

/**
 * A worker's link to its managers over mutual TLS: a session streaming its assignments,
 * heartbeats, status reports. On any failure it moves to the next manager and reconnects; its
 * containers keep running meanwhile.
 */
export class RemoteLink implements ManagerLink {
  private closed = false;
  private current = 0;
  private heartbeatTimer?: NodeJS.Timeout;
  private sessionRes?: IncomingMessage;

  constructor(
    private readonly managers: string[],
    private readonly creds: NodeCredentials,
    private readonly log: (m: string) => void = () => {},
  ) {}

  private get manager(): string {
    return this.managers[this.current % this.managers.length]!;
  }

  private failover(why: string): void {
    this.log(`link: ${this.manager}: ${why}`);
    this.current++;
  }

  startHeartbeats(intervalMs = 1000): void {
    const beat = async () => {
      if (this.closed) return;
      try {
        await callJson(this.manager, this.creds, 'POST', '/heartbeat', {});
      } catch (e) {
        this.failover(`heartbeat failed: ${(e as Error).message}`);
      }
      this.heartbeatTimer = setTimeout(() => void beat(), intervalMs);
    };
    void beat();
  }

  async watchAssignments(_nodeId: string, onTasks: (tasks: TaskRecord[]) => void) {
    let backoff = 100;
    const loop = async () => {
      while (!this.closed) {
        try {
          const res = await callManager(this.manager, this.creds, 'GET', '/session');
          if ((res.statusCode ?? 500) >= 400)
            throw fromWire(JSON.parse((await readBody(res)) || '{}'), res.statusCode ?? 500);
          this.sessionRes = res;
          backoff = 100;
          let buf = '';
          res.setEncoding('utf8');
          for await (const chunk of res) {
            buf += chunk;
            let nl = buf.indexOf('\n');
            while (nl >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              const msg = JSON.parse(line) as { tasks?: TaskRecord[] };
              if (msg.tasks) onTasks(msg.tasks);
              nl = buf.indexOf('\n');
            }
          }
          if (!this.closed) this.failover('session ended');
        } catch (e) {
          if (this.closed) return;
          this.failover(`session failed: ${(e as Error).message}`);
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 2000);
        }
      }
    };
    void loop();
    return {
      cancel: async () => {
        this.closed = true;
        clearTimeout(this.heartbeatTimer);
        this.sessionRes?.destroy();
      },
    };
  }

  async report(updates: StatusUpdate[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await callJson(this.manager, this.creds, 'POST', '/status', { updates });
        return;
      } catch (e) {
        if (this.closed || attempt >= 5) throw e;
        this.failover(`status report failed: ${(e as Error).message}`);
        await sleep(200 * (attempt + 1));
      }
    }
  }
}
