import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { TaskRecord } from '../api/cluster.js';
import { fromWire, TsswarmError } from '../api/errors.js';
import type { NodeCredentials } from '../manager/ca/tls.js';
import type { NetView } from '../network/view.js';
import type { ManagerLink, StatusUpdate } from './agent.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One HTTPS call to a manager's dispatcher with this node's certificate. */
export function callManager(
  manager: string,
  creds: NodeCredentials | { caCertPem: string } | { insecure: true },
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
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
        timeout: timeoutMs,
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
  timeoutMs?: number,
): Promise<T> {
  const res = await callManager(manager, creds, method, path, body, timeoutMs);
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
  private managers: string[];
  private onView?: (view: NetView) => void;
  private lastView?: NetView;
  /** Every heartbeat answer (the managers as they are now, this node's role). */
  onHeartbeat?: (answer: { managers?: string[]; role?: string }) => void;

  constructor(
    managers: string[],
    private readonly creds: NodeCredentials,
    private readonly log: (m: string) => void = () => {},
  ) {
    this.managers = [...managers];
  }

  get manager(): string {
    return this.managers[this.current % this.managers.length]!;
  }

  /** Replaces the list of managers, staying with the current one when it is still in it. */
  setManagers(list: string[]): void {
    const cur = this.manager;
    this.managers = [...list];
    const i = list.indexOf(cur);
    this.current = Math.max(i, 0);
    if (i < 0) this.sessionRes?.destroy(); // its manager is gone: the session moves now
  }

  /** Moves to the next manager: heartbeats, reports and the session all follow. */
  private failover(why: string): void {
    this.log(`link: ${this.manager}: ${why}`);
    this.current++;
    this.sessionRes?.destroy();
  }

  /**
   * Heartbeats every intervalMs; a failed one moves to the next manager and beats there at
   * once, so the node's liveness (a 3 s lease) survives its manager's death.
   */
  startHeartbeats(intervalMs = 1000): void {
    let failures = 0;
    const beat = async () => {
      if (this.closed) return;
      let delay = intervalMs;
      try {
        const a = await callJson<{ managers?: string[]; role?: string }>(
          this.manager,
          this.creds,
          'POST',
          '/heartbeat',
          {},
          Math.max(2000, 2 * intervalMs), // a slow answer is not yet a dead manager
        );
        failures = 0;
        if (!this.closed) this.onHeartbeat?.(a); // an answer after cancel is not heard
      } catch (e) {
        if (this.closed) return;
        this.failover(`heartbeat failed: ${(e as Error).message}`);
        // try each other manager at once, then back off
        delay = ++failures < this.managers.length ? 0 : Math.min(intervalMs, 250);
      }
      this.heartbeatTimer = setTimeout(() => void beat(), delay);
    };
    void beat();
  }

  /** The network view comes in the assignments' session (watchAssignments). */
  async watchNetwork(_nodeId: string, onView: (view: NetView) => void) {
    this.onView = onView;
    if (this.lastView) onView(this.lastView);
    return {
      cancel: async () => {
        this.onView = undefined;
      },
    };
  }

  async watchAssignments(_nodeId: string, onTasks: (tasks: TaskRecord[]) => void) {
    let backoff = 100;
    const loop = async () => {
      while (!this.closed) {
        try {
          // no idle timeout: a session is quiet while nothing changes; a failed heartbeat ends it
          const res = await callManager(this.manager, this.creds, 'GET', '/session', undefined, 0);
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
              const msg = JSON.parse(line) as { tasks?: TaskRecord[]; net?: NetView };
              if (msg.tasks) onTasks(msg.tasks);
              if (msg.net) {
                this.lastView = msg.net;
                this.onView?.(msg.net);
              }
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

  private pending: StatusUpdate[] = [];
  private waiting: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private flushing = false;

  /**
   * Status reports go out in batches: whatever the agent reports while one request is in
   * flight goes in the next, with only the latest status of each task (a status may skip
   * forward). Resolves once the manager has recorded it.
   */
  report(updates: StatusUpdate[]): Promise<void> {
    this.pending.push(...updates);
    const done = new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
    void this.flush();
    return done;
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = coalesce(this.pending.splice(0));
        const waiters = this.waiting.splice(0);
        try {
          await this.send(batch);
          for (const w of waiters) w.resolve();
        } catch (e) {
          for (const w of waiters) w.reject(e);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private async send(updates: StatusUpdate[]): Promise<void> {
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

/** One update per task: its latest status, and the container id if any update had one. */
export function coalesce(updates: StatusUpdate[]): StatusUpdate[] {
  const byTask = new Map<string, StatusUpdate>();
  for (const u of updates) {
    const prev = byTask.get(u.taskId);
    const containerId = u.containerId ?? prev?.containerId;
    byTask.set(u.taskId, { ...u, ...(containerId ? { containerId } : {}) });
  }
  return [...byTask.values()];
}
