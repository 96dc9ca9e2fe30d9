import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { ClusterRecord, NodeRecord, TaskRecord } from '../api/cluster.js';
import { TsswarmError } from '../api/errors.js';
import type { ConsulSettings } from '../discovery/node.js';
import { VERSION } from '../version.js';
import type { StatusUpdate } from '../worker/agent.js';
import { identityFromCertificate, issueNodeCertificate } from './ca/ca.js';
import { createNodeServer, sendJson } from './ca/https.js';
import type { NodeCredentials } from './ca/tls.js';
import { verifyJoinToken } from './ca/token.js';
import { HeartbeatKeeper } from './liveness.js';
import { recordStatus } from './localLink.js';
import type { NetworkViews } from './netViews.js';
import type { Store } from './store/types.js';

export const DEFAULT_DISPATCHER_PORT = 2377;
/** A node's assignments are sent at most this often (changes in between are merged). */
const SESSION_BATCH_MS = 30;

/** What a joining node sends. */
export interface JoinRequest {
  token: string;
  csrPem: string;
  hostname: string;
  address: string;
  platform: { os: string; arch: string };
  resources: { nanoCpus: number; memoryBytes: number };
  /** A joining manager's dispatcher port (default 2377). */
  dispatcherPort?: number;
}

export interface JoinAnswer {
  nodeId: string;
  role: 'manager' | 'worker';
  clusterId: string;
  certPem: string;
  caCertPem: string;
  /** The managers' dispatcher addresses (HOST:PORT), for a worker to fail over between. */
  managers: string[];
  /** The address the node is known at (answered to a promoted worker). */
  address?: string;
  /** For a manager: how to reach (and, when the etcd is the swarm's own, become part of) etcd. */
  etcd?: ManagerEtcdInfo;
  /** The swarm's Consul settings, when it registers its tasks in Consul. */
  discovery?: ConsulSettings;
}

/** What a joining manager needs to know of the swarm's etcd. */
export interface ManagerEtcdInfo {
  /** Client URLs of the etcd members. */
  endpoints: string[];
  /** Set when the swarm runs its own etcd: the new member was added (as a learner) under this name. */
  member?: {
    name: string;
    initialCluster: string;
    clientPort: number;
    peerPort: number;
    /** The etcd CA and the new member's certificate from it (for the key of its join request). */
    tls?: { caCertPem: string; certPem: string };
  };
}

export interface DispatcherOptions {
  host: string;
  port: number;
  creds: NodeCredentials;
  /** This manager's node id (it holds the heartbeat leases of the nodes it serves). */
  nodeId: string;
  /** Prepares etcd for a joining manager (adds its member when the etcd is the swarm's own). */
  addManager: (joiner: { nodeId: string; address: string; csrPem: string }) => Promise<ManagerEtcdInfo>;
  /** The nodes' network views, streamed in their sessions. */
  views: NetworkViews;
  log?: (m: string) => void;
}

/** The cluster record with its CA key and join-token secrets, as only managers read it. */
export type ClusterWithSecrets = ClusterRecord & {
  ca: { certPem: string; keyPem: string };
  /** The CA of the swarm's own etcd (absent with --etcd-endpoints). */
  etcdCa?: { certPem: string; keyPem: string };
  secrets: { worker: string; manager: string };
};

const json = sendJson;

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
  readonly heartbeats: HeartbeatKeeper;
  private managersCache: { at: number; list: string[] } = { at: 0, list: [] };
  /** Every node's role as last listed (a promoted worker learns of it from its heartbeat). */
  private roles = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly opts: DispatcherOptions,
  ) {
    this.heartbeats = new HeartbeatKeeper(store, opts.nodeId, undefined, opts.log);
  }

  private log(m: string): void {
    this.opts.log?.(`dispatcher: ${m}`);
  }

  async start(): Promise<void> {
    const c = this.opts.creds;
    this.server = createNodeServer(c, (req, res) => this.route(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.log(`listening on ${this.opts.host}:${this.opts.port}`);
  }

  async close(): Promise<void> {
    this.heartbeats.close();
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
      await this.heartbeats.beat(nodeId);
      const managers = await this.managers();
      return json(res, 200, { heartbeatMs: 1000, managers, role: await this.roleOf(nodeId) });
    }
    if (req.method === 'POST' && url.pathname === '/promote')
      return json(res, 200, await this.promote(nodeId, await readJson<{ csrPem: string }>(req)));
    if (req.method === 'POST' && url.pathname === '/leave') {
      await this.heartbeats.end(nodeId);
      await this.store.retry(async () => {
        const cur = await this.store.find<NodeRecord>('nodes', nodeId);
        if (cur && !cur.value.left)
          await this.store.update('nodes', nodeId, { ...cur.value, status: 'down', left: true }, cur.version);
      });
      this.log(`node ${nodeId} left the swarm`);
      return json(res, 200, {});
    }
    if (req.method === 'POST' && url.pathname === '/status') {
      const body = await readJson<{ updates: StatusUpdate[] }>(req);
      // a node reports only on its own tasks: recordStatus reads each task and checks its node
      await recordStatus(this.store, body.updates ?? [], nodeId);
      return json(res, 200, {});
    }
    if (req.method === 'GET' && url.pathname === '/session') return this.session(nodeId, req, res);
    json(res, 404, { code: 'not_found', message: `no such endpoint: ${req.method} ${url.pathname}` });
  }

  private async join(body: JoinRequest): Promise<JoinAnswer> {
    const cluster = (await this.store.get<ClusterWithSecrets>('cluster', 'swarm')).value;
    const role = verifyJoinToken(String(body.token ?? ''), {
      caCertPem: cluster.ca.certPem,
      workerSecret: cluster.secrets.worker,
      managerSecret: cluster.secrets.manager,
    });
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
    let etcd: ManagerEtcdInfo | undefined;
    if (role === 'manager') {
      if (!body.address)
        throw new TsswarmError(
          'invalid_argument',
          'a manager joins with --advertise-addr: other managers and etcd reach it there',
        );
      etcd = await this.opts.addManager({ nodeId, address: node.address, csrPem: body.csrPem });
      node.managerAddr = `${node.address}:${body.dispatcherPort ?? DEFAULT_DISPATCHER_PORT}`;
    }
    await this.store.create('nodes', nodeId, node);
    // a worker's session comes here next; a manager keeps its own liveness
    if (role === 'worker') await this.heartbeats.beat(nodeId);
    this.log(`node ${nodeId} (${node.hostname}) joined as ${role}`);
    return {
      nodeId,
      role,
      clusterId: cluster.id,
      certPem,
      caCertPem: cluster.ca.certPem,
      managers: await this.managers(true),
      ...(etcd ? { etcd } : {}),
      ...(cluster.discovery ? { discovery: cluster.discovery as ConsulSettings } : {}),
    };
  }

  /** A worker promoted by `node promote` gets its manager certificate and its etcd member. */
  private async promote(nodeId: string, body: { csrPem: string }): Promise<JoinAnswer> {
    const node = await this.store.get<NodeRecord>('nodes', nodeId);
    if (node.value.role !== 'manager')
      throw new TsswarmError('precondition', `node ${nodeId} has not been promoted`);
    const cluster = (await this.store.get<ClusterWithSecrets>('cluster', 'swarm')).value;
    const certPem = await issueNodeCertificate(cluster.ca, {
      nodeId,
      role: 'manager',
      hostname: node.value.hostname,
      addresses: node.value.address ? [node.value.address] : [],
      csrPem: String(body.csrPem ?? ''),
    });
    const etcd = await this.opts.addManager({
      nodeId,
      address: node.value.address,
      csrPem: String(body.csrPem ?? ''),
    });
    this.log(`node ${nodeId} (${node.value.hostname}) is becoming a manager`);
    return {
      nodeId,
      role: 'manager',
      clusterId: cluster.id,
      certPem,
      caCertPem: cluster.ca.certPem,
      managers: await this.managers(true),
      address: node.value.address,
      etcd,
      ...(cluster.discovery ? { discovery: cluster.discovery as ConsulSettings } : {}),
    };
  }

  /**
   * A heartbeating node's role, as its heartbeat answer tells it. The cached roles may be
   * seconds old, and a node acts on `manager` (it asks to be promoted), so that one is read
   * afresh: a node just demoted is not told it is a manager again.
   */
  private async roleOf(nodeId: string): Promise<string | undefined> {
    const cached = this.roles.get(nodeId);
    if (cached !== 'manager') return cached;
    // unknown when the store does not answer: the heartbeat itself is not failed for it
    const role = (await this.store.find<NodeRecord>('nodes', nodeId).catch(() => undefined))?.value.role;
    if (role) this.roles.set(nodeId, role);
    return role;
  }

  /** The dispatcher addresses of the managers that are up (cached for a few seconds). */
  async managers(fresh = false): Promise<string[]> {
    if (fresh || Date.now() - this.managersCache.at > 5000) {
      const nodes = await this.store.list<NodeRecord>('nodes');
      this.roles = new Map(nodes.items.map((n) => [n.id, n.value.role]));
      const list = nodes.items
        .map((n) => n.value)
        .filter((n) => n.role === 'manager' && n.status !== 'down' && n.managerAddr)
        .map((n) => n.managerAddr as string);
      this.managersCache = { at: Date.now(), list };
    }
    return this.managersCache.list;
  }

  /**
   * Streams the node's assignments (NDJSON: `{tasks}`, the whole list each time it changes)
   * and its network view (`{net}`, each time it changes).
   */
  private async session(nodeId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    this.heartbeats.takeOver(nodeId);
    await this.heartbeats.beat(nodeId);
    const mine = new Map<string, TaskRecord>();
    let last = '';
    let timer: NodeJS.Timeout | undefined;
    const send = () => {
      timer = undefined;
      const line = JSON.stringify({ tasks: [...mine.values()] });
      if (line === last) return;
      last = line;
      res.write(`${line}\n`);
    };
    // changes come in bursts (a deploy, a failover): the node gets one list per SESSION_BATCH_MS
    const changed = () => {
      timer ??= setTimeout(send, SESSION_BATCH_MS);
    };
    const handle = this.store.watch<TaskRecord>('tasks', {}, (ev) => {
      if (ev.type === 'reset') {
        mine.clear();
        for (const it of ev.items) if (it.value.nodeId === nodeId) mine.set(it.id, it.value);
      } else if (ev.type === 'delete') {
        if (!mine.delete(ev.id)) return;
      } else if (ev.value.nodeId === nodeId) mine.set(ev.id, ev.value);
      else if (!mine.delete(ev.id)) return;
      changed();
    });
    await handle.ready;
    send();
    const offView = this.opts.views.subscribe(nodeId, (net) => res.write(`${JSON.stringify({ net })}\n`));
    await new Promise<void>((resolve) => req.socket.once('close', () => resolve()));
    offView();
    clearTimeout(timer);
    await handle.cancel();
  }
}
