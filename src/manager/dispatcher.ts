import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { ClusterRecord, NodeRecord, TaskRecord } from '../api/cluster.js';
import { TsswarmError } from '../api/errors.js';
import { VERSION } from '../version.js';
import type { StatusUpdate } from '../worker/agent.js';
import { identityFromCertificate, issueNodeCertificate } from './ca/ca.js';
import type { NodeCredentials } from './ca/tls.js';
import { verifyJoinToken } from './ca/token.js';
import { recordStatus } from './localLink.js';
import type { Store } from './store/types.js';

export const DEFAULT_DISPATCHER_PORT = 2377;

/** What a joining node sends. */
export interface JoinRequest {
  token: string;
  csrPem: string;
  hostname: string;
  address: string;
  platform: { os: string; arch: string };
  resources: { nanoCpus: number; memoryBytes: number };
}

export interface JoinAnswer {
  nodeId: string;
  role: 'manager' | 'worker';
  clusterId: string;
  certPem: string;
  caCertPem: string;
}

export interface DispatcherOptions {
  host: string;
  port: number;
  creds: NodeCredentials;
  heartbeatTimeoutMs?: number;
  log?: (m: string) => void;
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function readJson<T>(req: IncomingMessage): Promise<T> {
  let s = '';
  for await (const c of req) {
    s += c;
    if (s.length > 1_000_000) throw new TsswarmError('invalid_argument', 'request too large');
  }
  try {
    return JSON.parse(s) as T;
  } catch {
    throw new TsswarmError('invalid_argument', 'the request body is not JSON');
  }
}

/**
 * Every manager's server for nodes (DESIGN §4): joining with a token yields a node certificate;
 * with it, a node keeps a session — its assignments streamed as they change, status reports,
 * heartbeats. A node whose heartbeats stop is marked down, so the leader replaces its tasks.
 * Nodes never talk to etcd.
 */
export class Dispatcher {
  private server?: Server;
  private readonly lastSeen = new Map<string, number>();
  private readonly down = new Set<string>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly opts: DispatcherOptions,
  ) {}

  private log(m: string): void {
    this.opts.log?.(`dispatcher: ${m}`);
  }

  async start(): Promise<void> {
    const c = this.opts.creds;
    this.server = createServer(
      {
        ca: [c.caCertPem],
        cert: c.certPem,
        key: c.keyPem,
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
      },
      (req, res) => {
        this.route(req, res).catch((e: unknown) => {
          const err = e instanceof TsswarmError ? e : new TsswarmError('internal', (e as Error).message);
          if (!res.headersSent) json(res, err.httpStatus, err.toJSON());
          else res.destroy();
        });
      },
    );
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const timeout = this.opts.heartbeatTimeoutMs ?? 3000;
    this.timer = setInterval(() => void this.checkHeartbeats(timeout), Math.min(500, timeout / 3));
    this.log(`listening on ${this.opts.host}:${this.opts.port}`);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private identity(req: IncomingMessage): { nodeId: string } {
    const sock = req.socket as TLSSocket;
    if (!sock.authorized)
      throw new TsswarmError('precondition', 'a node certificate of this cluster is required');
    return identityFromCertificate(sock.getPeerCertificate());
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://x');
    if (req.method === 'GET' && url.pathname === '/ca') {
      res.writeHead(200, { 'content-type': 'application/x-pem-file' });
      return void res.end(this.opts.creds.caCertPem);
    }
    if (req.method === 'POST' && url.pathname === '/join')
      return json(res, 200, await this.join(await readJson<JoinRequest>(req)));
    const { nodeId } = this.identity(req);
    if (req.method === 'POST' && url.pathname === '/heartbeat') {
      await this.heartbeat(nodeId);
      return json(res, 200, { heartbeatMs: 1000 });
    }
    if (req.method === 'POST' && url.pathname === '/status') {
      const body = await readJson<{ updates: StatusUpdate[] }>(req);
      const mine = await this.store.list<TaskRecord>('tasks');
      const allowed = new Set(mine.items.filter((t) => t.value.nodeId === nodeId).map((t) => t.id));
      await recordStatus(
        this.store,
        (body.updates ?? []).filter((u) => allowed.has(u.taskId)),
      );
      return json(res, 200, {});
    }
    if (req.method === 'GET' && url.pathname === '/session') return this.session(nodeId, req, res);
    json(res, 404, { code: 'not_found', message: `no such endpoint: ${req.method} ${url.pathname}` });
  }

  private async join(body: JoinRequest): Promise<JoinAnswer> {
    const cluster = (
      await this.store.get<
        ClusterRecord & {
          ca: { certPem: string; keyPem: string };
          secrets: { worker: string; manager: string };
        }
      >('cluster', 'swarm')
    ).value;
    const role = verifyJoinToken(String(body.token ?? ''), {
      caCertPem: cluster.ca.certPem,
      workerSecret: cluster.secrets.worker,
      managerSecret: cluster.secrets.manager,
    });
    if (role === 'manager')
      throw new TsswarmError('unsupported', 'joining as a manager is not supported yet: use a worker token');
    const nodeId = randomBytes(12).toString('hex');
    const certPem = await issueNodeCertificate(cluster.ca, {
      nodeId,
      role,
      hostname: body.hostname,
      addresses: body.address ? [body.address] : [],
      csrPem: body.csrPem,
    });
    const node: NodeRecord = {
      id: nodeId,
      hostname: String(body.hostname ?? nodeId),
      role,
      availability: 'active',
      status: 'ready',
      labels: {},
      address: String(body.address ?? ''),
      platform: body.platform ?? { os: 'linux', arch: 'x86_64' },
      resources: body.resources ?? { nanoCpus: 1e9, memoryBytes: 1 << 30 },
      engineVersion: VERSION,
    };
    await this.store.create('nodes', nodeId, node);
    this.lastSeen.set(nodeId, Date.now());
    this.log(`node ${nodeId} (${node.hostname}) joined as ${role}`);
    return { nodeId, role, clusterId: cluster.id, certPem, caCertPem: cluster.ca.certPem };
  }

  private async heartbeat(nodeId: string): Promise<void> {
    this.lastSeen.set(nodeId, Date.now());
    if (this.down.has(nodeId) || !(await this.isReady(nodeId))) {
      this.down.delete(nodeId);
      await this.setStatus(nodeId, 'ready');
    }
  }

  private async isReady(nodeId: string): Promise<boolean> {
    return (await this.store.find<NodeRecord>('nodes', nodeId))?.value.status === 'ready';
  }

  private async setStatus(nodeId: string, status: NodeRecord['status']): Promise<void> {
    await this.store.retry(async () => {
      const cur = await this.store.find<NodeRecord>('nodes', nodeId);
      if (!cur || cur.value.status === status) return;
      await this.store.update('nodes', nodeId, { ...cur.value, status }, cur.version);
      this.log(`node ${nodeId} is ${status}`);
    });
  }

  private async checkHeartbeats(timeoutMs: number): Promise<void> {
    const now = Date.now();
    for (const [nodeId, seen] of this.lastSeen) {
      if (now - seen > timeoutMs && !this.down.has(nodeId)) {
        this.down.add(nodeId);
        await this.setStatus(nodeId, 'down').catch((e) =>
          this.log(`cannot mark ${nodeId} down: ${(e as Error).message}`),
        );
      }
    }
  }

  /** Streams the node's assignments (NDJSON: the whole list each time it changes). */
  private async session(nodeId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    this.lastSeen.set(nodeId, Date.now());
    const mine = new Map<string, TaskRecord>();
    let last = '';
    const send = () => {
      const line = JSON.stringify({ tasks: [...mine.values()] });
      if (line === last) return;
      last = line;
      res.write(`${line}\n`);
    };
    const handle = this.store.watch<TaskRecord>('tasks', {}, (ev) => {
      if (ev.type === 'reset') {
        mine.clear();
        for (const it of ev.items) if (it.value.nodeId === nodeId) mine.set(it.id, it.value);
      } else if (ev.type === 'delete') mine.delete(ev.id);
      else if (ev.value.nodeId === nodeId) mine.set(ev.id, ev.value);
      else mine.delete(ev.id);
      send();
    });
    await handle.ready;
    send();
    await new Promise<void>((resolve) => req.socket.once('close', () => resolve()));
    await handle.cancel();
  }
}
