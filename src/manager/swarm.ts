import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  type ClusterRecord,
  DEFAULT_RESTART,
  DEFAULT_UPDATE,
  type NodeRecord,
  type ServiceRecord,
  type ServiceSpec,
  type TaskRecord,
} from '../api/cluster.js';
import { conflict, invalid, notFound, precondition } from '../api/errors.js';
import type { Engine } from '../engine/engine.js';
import { atomicWriteJson } from '../engine/fsutil.js';
import { parseConstraint } from '../scheduler/constraints.js';
import { VERSION } from '../version.js';
import { Agent } from '../worker/agent.js';
import { createClusterCA, issueNodeCertificate, newNodeKey } from './ca/ca.js';
import type { NodeCredentials } from './ca/tls.js';
import { caDigest, formatJoinToken, newJoinToken } from './ca/token.js';
import { STACK_LABEL, servicesFromStack } from './deploy.js';
import { DEFAULT_DISPATCHER_PORT, Dispatcher } from './dispatcher.js';
import { EtcdSupervisor } from './etcd/supervisor.js';
import { LocalLink } from './localLink.js';
import { Reconciler } from './reconciler.js';
import { normalizeServiceSpec } from './serviceSpec.js';
import type { NormalizedStack } from './stack/types.js';
import { openEtcdStore } from './store/etcd.js';
import type { Leadership, Store } from './store/types.js';

/** What a node remembers of its swarm across daemon restarts (DATA_ROOT/swarm.json). */
interface SwarmState {
  role: 'manager';
  clusterId: string;
  nodeId: string;
  etcd: { endpoints: string[]; embedded?: { clientPort: number; peerPort: number } };
  dispatcher: { host: string; port: number };
}

/** The cluster record: its CA and the current join-token secrets live only in etcd. */
type ClusterWithSecrets = ClusterRecord & {
  ca: { certPem: string; keyPem: string };
  secrets: { worker: string; manager: string };
};

export interface InitOptions {
  etcdEndpoints?: string[];
  etcdClientPort?: number;
  etcdPeerPort?: number;
  advertiseAddr?: string;
  dispatcherPort?: number;
}

/**
 * This daemon's membership of a swarm, as a manager: the store, leadership, the leader's
 * reconciler and the agent running this node's tasks.
 */
export class SwarmNode {
  private leadership?: Leadership;
  private reconciler?: Reconciler;
  private agent?: Agent;
  private dispatcher?: Dispatcher;

  private constructor(
    private readonly engine: Engine,
    readonly state: SwarmState,
    readonly store: Store,
    private readonly etcd: EtcdSupervisor | undefined,
    private readonly log: (m: string) => void,
  ) {}

  static statePath(dataRoot: string): string {
    return join(dataRoot, 'swarm.json');
  }

  /** Creates a swarm with this node as its first manager. */
  static async init(engine: Engine, opts: InitOptions, log: (m: string) => void): Promise<SwarmNode> {
    const dataRoot = engine.opts.dataRoot;
    if (existsSync(SwarmNode.statePath(dataRoot))) {
      throw conflict('this node is already part of a swarm: use `tsswarm swarm leave --force` first');
    }
    const advertise = opts.advertiseAddr ?? '127.0.0.1';
    const state: SwarmState = {
      role: 'manager',
      dispatcher: { host: advertise, port: opts.dispatcherPort ?? DEFAULT_DISPATCHER_PORT },
      clusterId: randomBytes(12).toString('hex'),
      nodeId: randomBytes(12).toString('hex'),
      etcd: opts.etcdEndpoints?.length
        ? { endpoints: opts.etcdEndpoints }
        : {
            endpoints: [`http://127.0.0.1:${opts.etcdClientPort ?? 2379}`],
            embedded: { clientPort: opts.etcdClientPort ?? 2379, peerPort: opts.etcdPeerPort ?? 2380 },
          },
    };
    const node = await SwarmNode.open(engine, state, log);
    try {
      const ca = await createClusterCA({ clusterId: state.clusterId });
      const cluster: ClusterWithSecrets = {
        id: state.clusterId,
        createdAt: Date.now(),
        ca,
        secrets: {
          worker: newJoinToken('worker', ca.certPem).secret,
          manager: newJoinToken('manager', ca.certPem).secret,
        },
      };
      await node.store.create('cluster', 'swarm', cluster).catch(() => {
        throw conflict(
          'the etcd cluster already holds a swarm: point --etcd-endpoints at an empty etcd or join that swarm',
        );
      });
      const key = newNodeKey();
      const certPem = await issueNodeCertificate(ca, {
        nodeId: state.nodeId,
        role: 'manager',
        hostname: hostname(),
        addresses: [...new Set([advertise, '127.0.0.1'])],
        publicKeyPem: key.publicKeyPem,
      });
      await atomicWriteJson(join(dataRoot, 'swarm-creds.json'), {
        caCertPem: ca.certPem,
        certPem,
        keyPem: key.keyPem,
      });
      await node.register(advertise);
      await atomicWriteJson(SwarmNode.statePath(dataRoot), state);
      await node.startRoles();
    } catch (e) {
      await node.close();
      throw e;
    }
    return node;
  }

  /** Rejoins the swarm this node was part of before the daemon restarted. */
  static async restore(engine: Engine, log: (m: string) => void): Promise<SwarmNode | undefined> {
    const path = SwarmNode.statePath(engine.opts.dataRoot);
    if (!existsSync(path)) return undefined;
    const state = JSON.parse(readFileSync(path, 'utf8')) as SwarmState;
    const node = await SwarmNode.open(engine, state, log);
    await node.startRoles();
    log(`rejoined swarm ${state.clusterId} as node ${state.nodeId}`);
    return node;
  }

  private static async open(engine: Engine, state: SwarmState, log: (m: string) => void): Promise<SwarmNode> {
    let etcd: EtcdSupervisor | undefined;
    if (state.etcd.embedded) {
      etcd = new EtcdSupervisor({
        name: `tsswarm-${state.nodeId.slice(0, 12)}`,
        dir: join(engine.opts.dataRoot, 'etcd'),
        clientPort: state.etcd.embedded.clientPort,
        peerPort: state.etcd.embedded.peerPort,
        log,
      });
      await etcd.start();
    }
    try {
      const store = await openEtcdStore({ endpoints: state.etcd.endpoints, log });
      return new SwarmNode(engine, state, store, etcd, log);
    } catch (e) {
      await etcd?.stop();
      throw e;
    }
  }

  private async register(address: string): Promise<void> {
    const node: NodeRecord = {
      id: this.state.nodeId,
      hostname: hostname(),
      role: 'manager',
      availability: 'active',
      status: 'ready',
      labels: {},
      address,
      platform: { os: 'linux', arch: process.arch === 'x64' ? 'x86_64' : process.arch },
      resources: { nanoCpus: availableParallelism() * 1e9, memoryBytes: totalmem() },
      engineVersion: VERSION,
    };
    await this.store.create('nodes', node.id, node);
  }

  private async startRoles(): Promise<void> {
    const creds = JSON.parse(
      readFileSync(join(this.engine.opts.dataRoot, 'swarm-creds.json'), 'utf8'),
    ) as NodeCredentials;
    this.dispatcher = new Dispatcher(this.store, { ...this.state.dispatcher, creds, log: this.log });
    await this.dispatcher.start();
    this.leadership = this.store.campaign('leader', this.state.nodeId);
    void this.leadership.elected.then(() => {
      this.log(`node ${this.state.nodeId} is the leader`);
      this.reconciler = new Reconciler(this.store, { log: this.log });
      this.reconciler.start();
      this.reconciler.kick();
    });
    this.leadership.onLost((why) => {
      this.log(`leadership lost: ${why.message}`);
      void this.reconciler?.stop();
    });
    this.agent = new Agent(this.engine, new LocalLink(this.store), this.state.nodeId, this.log);
    void this.agent.start().catch((e) => this.log(`agent did not start: ${(e as Error).message}`));
  }

  async close(): Promise<void> {
    await this.dispatcher?.close().catch(() => {});
    await this.agent?.stop().catch(() => {});
    await this.reconciler?.stop().catch(() => {});
    await this.leadership?.resign().catch(() => {});
    await this.store.close().catch(() => {});
    await this.etcd?.stop();
  }

  // ---- API ----

  /** The join token for a role; `rotate` replaces its secret first (older tokens stop working). */
  async joinToken(role: 'worker' | 'manager', rotate = false): Promise<string> {
    if (role !== 'worker' && role !== 'manager') throw invalid(`unknown role "${role}": worker or manager`);
    return this.store.retry(async () => {
      const cur = await this.store.get<ClusterWithSecrets>('cluster', 'swarm');
      let secret = cur.value.secrets[role];
      if (rotate) {
        secret = newJoinToken(role, cur.value.ca.certPem).secret;
        const next = { ...cur.value, secrets: { ...cur.value.secrets, [role]: secret } };
        await this.store.update('cluster', 'swarm', next, cur.version);
      }
      return formatJoinToken(caDigest(cur.value.ca.certPem), secret);
    });
  }

  /** Where nodes join this manager. */
  get managerAddress(): string {
    return `${this.state.dispatcher.host}:${this.state.dispatcher.port}`;
  }

  async nodes(): Promise<NodeRecord[]> {
    return (await this.store.list<NodeRecord>('nodes')).items.map((i) => i.value);
  }

  /** By id, unique id prefix or hostname. */
  async node(ref: string): Promise<NodeRecord> {
    const all = await this.nodes();
    const found =
      all.find((n) => n.id === ref) ?? all.filter((n) => n.id.startsWith(ref) || n.hostname === ref);
    if (!Array.isArray(found)) return found;
    if (found.length === 1) return found[0]!;
    if (found.length > 1) throw invalid(`node "${ref}" is ambiguous: use its id`);
    throw notFound(`no such node: ${ref}`);
  }

  /** `node update`: availability (drain moves the node's tasks, pause stops new ones) and labels. */
  async updateNode(
    ref: string,
    change: { availability?: string; labelAdd?: string[]; labelRm?: string[] },
  ): Promise<NodeRecord> {
    if (change.availability !== undefined && !['active', 'pause', 'drain'].includes(change.availability)) {
      throw invalid(`invalid availability "${change.availability}": active, pause or drain`);
    }
    const add: Record<string, string> = {};
    for (const l of change.labelAdd ?? []) {
      const eq = l.indexOf('=');
      const [k, v] = eq < 0 ? [l, ''] : [l.slice(0, eq), l.slice(eq + 1)];
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.\-/]*$/.test(k))
        throw invalid(`invalid label "${l}": expected KEY or KEY=VALUE`);
      add[k] = v;
    }
    return this.store.retry(async () => {
      const n = await this.node(ref);
      const cur = await this.store.get<NodeRecord>('nodes', n.id);
      const labels = { ...cur.value.labels, ...add };
      for (const k of change.labelRm ?? []) {
        if (!(k in labels)) throw invalid(`node ${n.hostname} has no label "${k}"`);
        delete labels[k];
      }
      const next: NodeRecord = {
        ...cur.value,
        labels,
        ...(change.availability ? { availability: change.availability as NodeRecord['availability'] } : {}),
      };
      await this.store.update('nodes', n.id, next, cur.version);
      return next;
    });
  }

  /** `node rm`: only a node that is down (or with force), never this manager itself. */
  async removeNode(ref: string, force = false): Promise<void> {
    const n = await this.node(ref);
    if (n.id === this.state.nodeId) throw precondition('a manager cannot remove itself');
    if (n.status !== 'down' && !force) {
      throw precondition(`node ${n.hostname} is ${n.status}: stop it first, or use --force`);
    }
    await this.store.delete('nodes', n.id);
  }

  async services(): Promise<ServiceRecord[]> {
    return (await this.store.list<ServiceRecord>('services')).items.map((i) => i.value);
  }

  async tasks(serviceRef?: string): Promise<TaskRecord[]> {
    const all = (await this.store.list<TaskRecord>('tasks')).items.map((i) => i.value);
    if (!serviceRef) return all;
    const svc = await this.service(serviceRef);
    return all.filter((t) => t.serviceId === svc.id);
  }

  /** By id, unique id prefix or name. */
  async service(ref: string): Promise<ServiceRecord> {
    const all = await this.services();
    const found = all.find((s) => s.spec.name === ref) ?? all.find((s) => s.id === ref);
    if (found) return found;
    const byPrefix = all.filter((s) => s.id.startsWith(ref));
    if (byPrefix.length === 1) return byPrefix[0]!;
    throw notFound(`no such service: ${ref}`);
  }

  async createService(
    input: Partial<ServiceSpec> & { name?: string; image?: string },
  ): Promise<ServiceRecord> {
    const spec = normalizeServiceSpec(input);
    const now = Date.now();
    const rec: ServiceRecord = {
      id: randomBytes(12).toString('hex'),
      spec,
      version: 1,
      createdAt: now,
      updatedAt: now,
    };
    if ((await this.services()).some((s) => s.spec.name === spec.name)) {
      throw conflict(`a service named "${spec.name}" already exists`);
    }
    await this.store.create('services', rec.id, rec);
    return rec;
  }

  async scaleService(ref: string, replicas: number): Promise<ServiceRecord> {
    if (!Number.isInteger(replicas) || replicas < 0)
      throw invalid(`invalid replicas "${replicas}": a whole number ≥ 0`);
    return this.store.retry(async () => {
      const svc = await this.service(ref);
      if (svc.spec.mode !== 'replicated')
        throw precondition(`service ${svc.spec.name} is ${svc.spec.mode}: only replicated services scale`);
      const cur = await this.store.get<ServiceRecord>('services', svc.id);
      const next: ServiceRecord = {
        ...cur.value,
        spec: { ...cur.value.spec, replicas },
        updatedAt: Date.now(),
      };
      await this.store.update('services', svc.id, next, cur.version);
      return next;
    });
  }

  /**
   * Replaces a service's spec. What the tasks run changing bumps the version and starts a
   * rolling update on the leader; the same spec again changes nothing.
   */
  async updateService(
    ref: string,
    input: Partial<ServiceSpec>,
    opts: { force?: boolean } = {},
  ): Promise<ServiceRecord> {
    return this.store.retry(async () => {
      const svc = await this.service(ref);
      const cur = await this.store.get<ServiceRecord>('services', svc.id);
      const spec = normalizeServiceSpec({ ...cur.value.spec, ...input, name: cur.value.spec.name });
      const taskSpec = (x: ServiceSpec) => JSON.stringify({ ...x, replicas: 0 });
      const changed = opts.force || taskSpec(spec) !== taskSpec(cur.value.spec);
      if (!changed && spec.replicas === cur.value.spec.replicas) return cur.value;
      const next: ServiceRecord = changed
        ? {
            ...cur.value,
            spec,
            previousSpec: cur.value.spec,
            previousVersion: cur.value.version,
            version: cur.value.version + 1,
            updatedAt: Date.now(),
          }
        : { ...cur.value, spec, updatedAt: Date.now() };
      await this.store.update('services', svc.id, next, cur.version);
      return next;
    });
  }

  /** Asks the leader to roll the service back to its previous spec. */
  async rollbackService(ref: string): Promise<ServiceRecord> {
    return this.store.retry(async () => {
      const svc = await this.service(ref);
      const cur = await this.store.get<ServiceRecord>('services', svc.id);
      if (!cur.value.previousSpec)
        throw precondition(`service ${svc.spec.name} has no previous spec to roll back to`);
      const next: ServiceRecord = { ...cur.value, rollbackRequested: true, updatedAt: Date.now() };
      await this.store.update('services', svc.id, next, cur.version);
      return next;
    });
  }

  /**
   * `deploy`: makes the cluster match the stack: creates missing services, updates changed
   * ones (a rolling update), leaves identical ones alone, and with `prune` removes the
   * stack's services no longer in the file.
   */
  async deployStack(stack: NormalizedStack, prune = false) {
    const specs = servicesFromStack(stack);
    const existing = (await this.services()).filter((s) => s.spec.labels[STACK_LABEL] === stack.name);
    const result = {
      stack: stack.name,
      created: [] as string[],
      updated: [] as string[],
      unchanged: [] as string[],
      removed: [] as string[],
    };
    for (const spec of specs) normalizeServiceSpec(spec); // refuse the whole deploy before changing anything
    for (const spec of specs) {
      const cur = existing.find((s) => s.spec.name === spec.name);
      if (!cur) {
        await this.createService(spec);
        result.created.push(spec.name);
      } else {
        const next = await this.updateService(cur.id, spec);
        (next.version !== cur.version || next.spec.replicas !== cur.spec.replicas
          ? result.updated
          : result.unchanged
        ).push(spec.name);
      }
    }
    if (prune) {
      for (const s of existing) {
        if (!specs.some((x) => x.name === s.spec.name)) {
          await this.removeService(s.id);
          result.removed.push(s.spec.name);
        }
      }
    }
    return result;
  }

  /** Stacks: the stack label of the services. */
  async stacks(): Promise<Array<{ name: string; services: number }>> {
    const counts = new Map<string, number>();
    for (const s of await this.services()) {
      const st = s.spec.labels[STACK_LABEL];
      if (st) counts.set(st, (counts.get(st) ?? 0) + 1);
    }
    return [...counts]
      .map(([name, services]) => ({ name, services }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async removeStack(name: string): Promise<string[]> {
    const mine = (await this.services()).filter((s) => s.spec.labels[STACK_LABEL] === name);
    if (mine.length === 0) throw notFound(`no such stack: ${name}`);
    for (const s of mine) await this.removeService(s.id);
    return mine.map((s) => s.spec.name);
  }

  async removeService(ref: string): Promise<void> {
    const svc = await this.service(ref);
    await this.store.delete('services', svc.id);
  }
}
