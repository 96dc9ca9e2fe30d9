import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import {
  type NodeRecord,
  REDACTED,
  type ServiceRecord,
  type ServiceSpec,
  type TaskRecord,
} from '../api/cluster.js';
import { conflict, invalid, notFound, precondition } from '../api/errors.js';
import { checkConsulBinary } from '../discovery/consul/agent.js';
import { type Instance, instancesOf, type LookupOptions } from '../discovery/instances.js';
import { type ConsulSettings, consulSettings, type TaskSource } from '../discovery/node.js';
import type { Engine } from '../engine/engine.js';
import { atomicWriteJson } from '../engine/fsutil.js';
import { registryOf } from '../engine/images/reference.js';
import { type AddressPool, checkPools, DEFAULT_SWARM_POOLS } from '../network/ipam.js';
import { nodeNetworkFor } from '../network/node.js';
import { VERSION } from '../version.js';
import { Agent } from '../worker/agent.js';
import { NodeApi } from '../worker/nodeApi.js';
import { CA_VALIDITY_DAYS, createClusterCA, issueNodeCertificate, newNodeKey } from './ca/ca.js';
import type { NodeCredentials } from './ca/tls.js';
import { caDigest, formatJoinToken, newJoinToken } from './ca/token.js';
import { STACK_LABEL, servicesFromStack } from './deploy.js';
import {
  type ClusterWithSecrets,
  DEFAULT_DISPATCHER_PORT,
  Dispatcher,
  type JoinAnswer,
  type ManagerEtcdInfo,
} from './dispatcher.js';
import { addLearner, memberEndpoints, memberName, promoteLearner, removeMember } from './etcd/membership.js';
import { EtcdSupervisor, type EtcdTlsFiles, etcdCredentials } from './etcd/supervisor.js';
import { JobApi } from './jobs/api.js';
import { JobRunner } from './jobs/runner.js';
import { NodeMonitor } from './liveness.js';
import { LocalLink } from './localLink.js';
import { NetworkViews } from './netViews.js';
import { NetworkApi } from './networks.js';
import { Reconciler } from './reconciler.js';
import { normalizeServiceSpec } from './serviceSpec.js';
import type { NormalizedStack } from './stack/types.js';
import { type EtcdStore, openEtcdStore } from './store/etcd.js';
import type { Leadership } from './store/types.js';

/** What a node remembers of its swarm across daemon restarts (DATA_ROOT/swarm.json). */
export interface SwarmState {
  role: 'manager';
  clusterId: string;
  nodeId: string;
  etcd: {
    /** Client URLs of the etcd members this manager talks to. */
    endpoints: string[];
    /** The swarm runs its own etcd: this manager's member. */
    embedded?: {
      clientPort: number;
      peerPort: number;
      /** Listen and advertise address of the member; default 127.0.0.1. */
      host?: string;
      /** Set for a member added to a running cluster (a joined or promoted manager). */
      initialCluster?: string;
      /** The member serves TLS with DATA_ROOT/etcd-tls/ (see writeEtcdTls). */
      tls?: boolean;
    };
  };
  dispatcher: { host: string; port: number };
  /** The swarm registers its tasks in Consul (absent: the embedded backend only). */
  discovery?: NodeConsulSettings;
}

/** A node's copy of the swarm's Consul settings; `bootstrap` on the manager that created the swarm. */
export type NodeConsulSettings = ConsulSettings & { bootstrap?: boolean };

export interface InitOptions {
  /** Run a Consul server with each manager (and a client agent on each worker). */
  consul?: boolean;
  /** Register in the existing Consul whose agent's HTTP API is at HOST:PORT. */
  consulAddr?: string;
  consulDatacenter?: string;
  /** Overlay networks' subnets are carved out of these (default 10.0.0.0/8). */
  defaultAddrPools?: string[];
  /** The size of those subnets (default 24). */
  defaultAddrPoolMaskLength?: number;
  etcdEndpoints?: string[];
  etcdClientPort?: number;
  etcdPeerPort?: number;
  advertiseAddr?: string;
  dispatcherPort?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * This daemon's membership of a swarm, as a manager: the store (and the swarm's own etcd
 * member), the dispatcher serving nodes, leadership and the leader's reconciler and node
 * monitor, and the agent running this node's tasks.
 */
export class SwarmNode {
  private leadership?: Leadership;
  private reconciler?: Reconciler;
  private monitor?: NodeMonitor;
  private jobRunner?: JobRunner;
  private agent?: Agent;
  private dispatcher?: Dispatcher;
  private views?: NetworkViews;
  private nodeApi?: NodeApi;
  private selfWatch?: { cancel(): Promise<void> };
  private closed = false;
  private endpointsTimer?: NodeJS.Timeout;
  /** Called when this manager is demoted: the daemon then runs it as a worker. */
  onDemoted?: () => void;
  /** Jobs: their runs, history and reruns. */
  readonly jobs: JobApi;
  /** Networks: create, list, inspect, remove. */
  readonly networks: NetworkApi;

  private constructor(
    private readonly engine: Engine,
    readonly state: SwarmState,
    readonly store: EtcdStore,
    private readonly etcd: EtcdSupervisor | undefined,
    private readonly log: (m: string) => void,
  ) {
    this.networks = new NetworkApi(
      store,
      { services: () => this.services(), tasks: () => this.tasks() },
      async () => {
        const c = await this.store.get<ClusterWithSecrets>('cluster', 'swarm');
        return (c.value.addressPools as AddressPool[] | undefined) ?? DEFAULT_SWARM_POOLS;
      },
    );
    this.jobs = new JobApi(store, {
      service: (ref) => this.service(ref),
      services: () => this.services(),
      tasks: () => this.tasks(),
      nodes: () => this.nodes(),
    });
  }

  static statePath(dataRoot: string): string {
    return join(dataRoot, 'swarm.json');
  }

  static credsPath(dataRoot: string): string {
    return join(dataRoot, 'swarm-creds.json');
  }

  /** Creates a swarm with this node as its first manager. */
  static async init(engine: Engine, opts: InitOptions, log: (m: string) => void): Promise<SwarmNode> {
    const dataRoot = engine.opts.dataRoot;
    if (existsSync(SwarmNode.statePath(dataRoot))) {
      throw conflict('this node is already part of a swarm: use `tsswarm swarm leave --force` first');
    }
    const advertise = opts.advertiseAddr ?? '127.0.0.1';
    const clientPort = opts.etcdClientPort ?? 2379;
    const discovery = consulSettings(opts);
    if (discovery?.mode === 'managed') await checkConsulBinary();
    if (opts.defaultAddrPoolMaskLength !== undefined && !opts.defaultAddrPools?.length)
      throw invalid('--default-addr-pool-mask-length needs --default-addr-pool');
    const pools = opts.defaultAddrPools?.length
      ? checkPools(
          opts.defaultAddrPools.map((base) => ({ base, size: opts.defaultAddrPoolMaskLength ?? 24 })),
        )
      : undefined;
    const state: SwarmState = {
      role: 'manager',
      dispatcher: { host: advertise, port: opts.dispatcherPort ?? DEFAULT_DISPATCHER_PORT },
      clusterId: randomBytes(12).toString('hex'),
      nodeId: randomBytes(12).toString('hex'),
      etcd: opts.etcdEndpoints?.length
        ? { endpoints: opts.etcdEndpoints }
        : {
            endpoints: [`http://${advertise}:${clientPort}`],
            embedded: { clientPort, peerPort: opts.etcdPeerPort ?? 2380, host: advertise },
          },
      ...(discovery ? { discovery: { ...discovery, bootstrap: true } } : {}),
    };
    // the cluster CA signs node certificates; a separate etcd CA signs only managers' etcd
    // certificates, so that no worker ever holds a certificate the swarm's etcd accepts
    const ca = await createClusterCA({ clusterId: state.clusterId });
    const key = newNodeKey();
    const addresses = [...new Set([advertise, '127.0.0.1'])];
    const certPem = await issueNodeCertificate(ca, {
      nodeId: state.nodeId,
      role: 'manager',
      hostname: hostname(),
      addresses,
      publicKeyPem: key.publicKeyPem,
    });
    await atomicWriteJson(SwarmNode.credsPath(dataRoot), {
      caCertPem: ca.certPem,
      certPem,
      keyPem: key.keyPem,
    });
    let etcdCa: ClusterWithSecrets['etcdCa'];
    if (state.etcd.embedded) {
      etcdCa = await createClusterCA({ clusterId: `${state.clusterId}-etcd` });
      const etcdCert = await issueNodeCertificate(etcdCa, {
        nodeId: state.nodeId,
        role: 'manager',
        hostname: hostname(),
        addresses,
        publicKeyPem: key.publicKeyPem,
        validityDays: CA_VALIDITY_DAYS,
      });
      await writeEtcdTls(dataRoot, { caCertPem: etcdCa.certPem, certPem: etcdCert, keyPem: key.keyPem });
      state.etcd.embedded.tls = true;
      state.etcd.endpoints = [`https://${advertise}:${clientPort}`];
    }
    let node: SwarmNode;
    try {
      node = await SwarmNode.open(engine, state, log);
    } catch (e) {
      await forgetSwarm(dataRoot);
      throw e;
    }
    try {
      const cluster: ClusterWithSecrets = {
        id: state.clusterId,
        createdAt: Date.now(),
        ...(pools ? { addressPools: pools } : {}),
        ...(discovery ? { discovery } : {}),
        ca,
        ...(etcdCa ? { etcdCa } : {}),
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
      await node.store.create('nodes', state.nodeId, node.nodeRecord(advertise));
      await atomicWriteJson(SwarmNode.statePath(dataRoot), state);
      await node.startRoles();
    } catch (e) {
      await node.close();
      await forgetSwarm(dataRoot);
      throw e;
    }
    return node;
  }

  /**
   * Becomes a manager of the swarm that accepted this node (`swarm join` with a manager
   * token, or a worker promoted): starts its etcd member when the swarm runs its own etcd
   * (added as a learner by the manager that answered, promoted here once it caught up).
   */
  static async joinAsManager(
    engine: Engine,
    answer: JoinAnswer,
    creds: NodeCredentials,
    opts: { advertiseAddr: string; dispatcherPort?: number },
    log: (m: string) => void,
  ): Promise<SwarmNode> {
    const dataRoot = engine.opts.dataRoot;
    if (!answer.etcd) throw invalid('the manager did not say how to reach etcd');
    const m = answer.etcd.member;
    const state: SwarmState = {
      role: 'manager',
      clusterId: answer.clusterId,
      nodeId: answer.nodeId,
      dispatcher: { host: opts.advertiseAddr, port: opts.dispatcherPort ?? DEFAULT_DISPATCHER_PORT },
      etcd: m
        ? {
            endpoints: answer.etcd.endpoints,
            embedded: {
              clientPort: m.clientPort,
              peerPort: m.peerPort,
              host: opts.advertiseAddr,
              initialCluster: m.initialCluster,
              ...(m.tls ? { tls: true } : {}),
            },
          }
        : { endpoints: answer.etcd.endpoints },
      ...(answer.discovery ? { discovery: answer.discovery } : {}),
    };
    await rm(join(dataRoot, 'etcd'), { recursive: true, force: true }); // a member starts empty
    await atomicWriteJson(SwarmNode.credsPath(dataRoot), creds);
    if (m?.tls) await writeEtcdTls(dataRoot, { ...m.tls, keyPem: creds.keyPem }); // the node's own key
    const node = await SwarmNode.open(engine, state, log);
    try {
      await atomicWriteJson(SwarmNode.statePath(dataRoot), state);
      await node.startRoles();
    } catch (e) {
      await node.close();
      await rm(SwarmNode.statePath(dataRoot), { force: true });
      throw e;
    }
    log(`joined swarm ${state.clusterId} as manager ${state.nodeId}`);
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

  /**
   * Starts this manager's etcd member (a member added to a running cluster is promoted from
   * learner first, through the other members) and opens the store, preferring the own member.
   */
  private static async open(engine: Engine, state: SwarmState, log: (m: string) => void): Promise<SwarmNode> {
    let etcd: EtcdSupervisor | undefined;
    const e = state.etcd.embedded;
    if (e) {
      etcd = new EtcdSupervisor({
        name: memberName(state.nodeId),
        dir: join(engine.opts.dataRoot, 'etcd'),
        host: e.host ?? '127.0.0.1',
        clientPort: e.clientPort,
        peerPort: e.peerPort,
        ...(e.initialCluster ? { initialCluster: e.initialCluster, initialClusterState: 'existing' } : {}),
        ...(e.tls ? { tls: etcdTlsFiles(engine.opts.dataRoot) } : {}),
        log,
      });
      // a member added to a running cluster serves nothing until it is promoted
      await etcd.start({ wait: !e.initialCluster });
    }
    const tls = e?.tls ? readEtcdTls(engine.opts.dataRoot) : undefined;
    try {
      if (e?.initialCluster && etcd) {
        const others = state.etcd.endpoints.filter((x) => x !== etcd!.endpoint);
        const tmp = new Etcd3({
          hosts: others,
          dialTimeout: 5_000,
          ...(tls ? { credentials: etcdCredentials(tls) } : {}),
        });
        try {
          await promoteLearner(tmp, etcd.peerURL);
        } finally {
          tmp.close();
        }
        await etcd.waitHealthy();
        state.etcd.endpoints = [...new Set([...state.etcd.endpoints, etcd.endpoint])];
      }
      const store = await openEtcdStore({
        endpoints: state.etcd.endpoints,
        ...(etcd ? { preferEndpoint: etcd.endpoint } : {}),
        ...(tls ? { tls } : {}),
        log,
      });
      return new SwarmNode(engine, state, store, etcd, log);
    } catch (err) {
      await etcd?.stop();
      throw err;
    }
  }

  private nodeRecord(address: string): NodeRecord {
    return {
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
      managerAddr: this.managerAddress,
    };
  }

  private async startRoles(): Promise<void> {
    const creds = JSON.parse(
      readFileSync(SwarmNode.credsPath(this.engine.opts.dataRoot), 'utf8'),
    ) as NodeCredentials;
    this.views = new NetworkViews(this.store);
    await this.views.start();
    this.dispatcher = new Dispatcher(this.store, {
      ...this.state.dispatcher,
      views: this.views,
      creds,
      nodeId: this.state.nodeId,
      addManager: (j) => this.addManager(j),
      log: this.log,
    });
    await this.dispatcher.start();
    this.nodeApi = new NodeApi(this.engine, {
      address: this.state.dispatcher.host,
      creds,
      clusterId: this.state.clusterId,
      log: this.log,
    });
    await this.nodeApi.start();
    await this.dispatcher.heartbeats.keepSelf();
    await this.refreshEndpoints();
    this.endpointsTimer = setInterval(() => void this.refreshEndpoints(), 10_000);
    this.campaign();
    this.agent = new Agent(
      this.engine,
      new LocalLink(this.store, this.views),
      this.state.nodeId,
      this.log,
      nodeNetworkFor(this.engine.opts, this.state.dispatcher.host, this.log),
    );
    void this.agent.start().catch((e) => this.log(`agent did not start: ${(e as Error).message}`));
    this.selfWatch = this.store.watch<NodeRecord>('nodes', {}, (ev) => {
      if (
        ev.type !== 'reset' &&
        ev.type !== 'delete' &&
        ev.id === this.state.nodeId &&
        ev.value.role === 'worker'
      )
        this.onDemoted?.();
    });
  }

  /** Campaigns for leadership, and again each time it is lost, until the node closes. */
  private campaign(): void {
    if (this.closed) return;
    const l = this.store.campaign('leader', this.state.nodeId);
    this.leadership = l;
    l.elected.then(
      async () => {
        if (this.closed || this.leadership !== l) return;
        this.log(`node ${this.state.nodeId} is the leader`);
        this.monitor = new NodeMonitor(this.store, this.log);
        this.reconciler = new Reconciler(this.store, {
          log: this.log,
          ensureIngress: () => this.networks.ensureIngress(),
        });
        this.reconciler.start();
        this.reconciler.kick();
        this.jobRunner = new JobRunner(this.store, this.log);
        this.jobRunner.start();
        await this.monitor.start().catch((e) => this.log(`node monitor: ${(e as Error).message}`));
      },
      () => {},
    );
    l.onLost((why) => {
      this.log(`leadership lost: ${why.message}`);
      void (async () => {
        await this.reconciler?.stop();
        await this.jobRunner?.stop();
        await this.monitor?.stop();
        this.reconciler = undefined;
        this.jobRunner = undefined;
        this.monitor = undefined;
        await sleep(500);
        this.campaign();
      })();
    });
  }

  /** Keeps the endpoints of every etcd member in swarm.json (the next start talks to all). */
  private async refreshEndpoints(): Promise<void> {
    if (!this.state.etcd.embedded) return;
    try {
      const eps = await memberEndpoints(this.store.client);
      // a listing that ends after the node closed (demoted, left) writes nothing
      if (this.closed) return;
      if (eps.length && JSON.stringify(eps) !== JSON.stringify(this.state.etcd.endpoints)) {
        this.state.etcd.endpoints = eps;
        await atomicWriteJson(SwarmNode.statePath(this.engine.opts.dataRoot), this.state);
      }
    } catch (e) {
      this.log(`cannot list etcd members: ${(e as Error).message}`);
    }
  }

  /** The dispatcher's hook for a joining manager: adds its etcd member when etcd is the swarm's own. */
  private async addManager(j: { nodeId: string; address: string; csrPem: string }): Promise<ManagerEtcdInfo> {
    const e = this.state.etcd.embedded;
    if (!e) return { endpoints: this.state.etcd.endpoints };
    let tls: { caCertPem: string; certPem: string } | undefined;
    if (e.tls) {
      const cluster = (await this.store.get<ClusterWithSecrets>('cluster', 'swarm')).value;
      if (!cluster.etcdCa) throw precondition('this swarm has no etcd CA: its etcd cannot take new members');
      tls = {
        caCertPem: cluster.etcdCa.certPem,
        certPem: await issueNodeCertificate(cluster.etcdCa, {
          nodeId: j.nodeId,
          role: 'manager',
          addresses: [j.address],
          csrPem: j.csrPem,
          validityDays: CA_VALIDITY_DAYS,
        }),
      };
    }
    const endpoints = await memberEndpoints(this.store.client);
    const initialCluster = await addLearner(
      this.store.client,
      memberName(j.nodeId),
      `${e.tls ? 'https' : 'http'}://${j.address}:${e.peerPort}`,
    );
    return {
      endpoints,
      member: {
        name: memberName(j.nodeId),
        initialCluster,
        clientPort: e.clientPort,
        peerPort: e.peerPort,
        ...(tls ? { tls } : {}),
      },
    };
  }

  /** Stops every role; the etcd member too. Containers keep running. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.endpointsTimer);
    await this.selfWatch?.cancel().catch(() => {});
    await this.dispatcher?.close().catch(() => {});
    await this.nodeApi?.close().catch(() => {});
    await this.agent?.stop().catch(() => {});
    await this.views?.close().catch(() => {});
    await this.reconciler?.stop().catch(() => {});
    await this.jobRunner?.stop().catch(() => {});
    await this.monitor?.stop().catch(() => {});
    await this.leadership?.resign().catch(() => {});
    await this.store.close().catch(() => {});
    await this.etcd?.stop();
  }

  /**
   * `swarm leave`: a manager leaves only with force (it may be the last one). Its etcd member
   * is removed from the cluster first, its node is marked down, its task containers are
   * removed, and the node forgets the swarm.
   */
  async leave(force: boolean): Promise<void> {
    if (!force)
      throw precondition(
        'this node is a manager: leaving would take a manager and its etcd member out of the swarm; demote it first or use --force',
      );
    const managers = (await this.nodes().catch(() => [])).filter(
      (n) => n.role === 'manager' && n.id !== this.state.nodeId,
    );
    await this.leadership?.resign().catch(() => {});
    if (managers.length > 0) {
      await this.dispatcher?.heartbeats.end(this.state.nodeId);
      await this.markLeft().catch((e) => this.log(`cannot mark this node down: ${(e as Error).message}`));
      if (this.state.etcd.embedded)
        await removeMember(this.store.client, memberName(this.state.nodeId)).catch((e) =>
          this.log(`cannot remove this etcd member: ${(e as Error).message}`),
        );
    }
    await this.agent?.removeTaskContainers().catch(() => {});
    await this.close();
    await forgetSwarm(this.engine.opts.dataRoot);
  }

  /** This node left: down for good (the leader's monitor no longer looks at its heartbeats). */
  private async markLeft(): Promise<void> {
    await this.store.retry(async () => {
      const cur = await this.store.get<NodeRecord>('nodes', this.state.nodeId);
      await this.store.update(
        'nodes',
        this.state.nodeId,
        { ...cur.value, status: 'down', left: true },
        cur.version,
      );
    });
  }

  /**
   * Demotion, on the demoted manager: its etcd member leaves the cluster, its roles stop, and
   * it keeps its node id and containers as a worker of the remaining managers.
   */
  async becomeWorker(): Promise<string[]> {
    const managers = (await this.dispatcher!.managers(true)).filter((a) => a !== this.managerAddress);
    await this.leadership?.resign().catch(() => {});
    if (this.state.etcd.embedded)
      await removeMember(this.store.client, memberName(this.state.nodeId)).catch((e) =>
        this.log(`cannot remove this etcd member: ${(e as Error).message}`),
      );
    await this.close();
    await rm(join(this.engine.opts.dataRoot, 'etcd'), { recursive: true, force: true });
    return managers;
  }

  /** This node's worker agent (what discovery registers), once the node's roles run. */
  get taskSource(): TaskSource | undefined {
    return this.agent;
  }

  /** The managers' addresses (for Consul agents to join). */
  async managerHosts(): Promise<string[]> {
    return (await this.dispatcher?.managers(true).catch(() => []))?.map(hostOf) ?? [];
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

  /** Nodes with their manager status: leader, reachable or unreachable. */
  async nodesWithStatus(): Promise<Array<NodeRecord & { managerStatus?: string }>> {
    const [nodes, leader] = await Promise.all([this.nodes(), this.store.leader('leader')]);
    return nodes.map((n) =>
      n.role !== 'manager'
        ? n
        : {
            ...n,
            managerStatus: n.id === leader ? 'leader' : n.status === 'ready' ? 'reachable' : 'unreachable',
          },
    );
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

  /**
   * `node promote`: the worker becomes a manager (it learns of it from its next heartbeat
   * answer, then gets a manager certificate and, with the swarm's own etcd, a member).
   */
  async promoteNode(ref: string): Promise<NodeRecord> {
    return this.store.retry(async () => {
      const n = await this.node(ref);
      const cur = await this.store.get<NodeRecord>('nodes', n.id);
      if (cur.value.role === 'manager') return cur.value;
      if (cur.value.status !== 'ready')
        throw precondition(`node ${n.hostname} is ${n.status}: only a ready node is promoted`);
      if (!cur.value.address)
        throw precondition(
          `node ${n.hostname} joined without --advertise-addr: managers and etcd could not reach it`,
        );
      const next: NodeRecord = {
        ...cur.value,
        role: 'manager',
        managerAddr: `${cur.value.address}:${DEFAULT_DISPATCHER_PORT}`,
      };
      await this.store.update('nodes', n.id, next, cur.version);
      return next;
    });
  }

  /** `node demote`: the manager becomes a worker; the last manager is never demoted. */
  async demoteNode(ref: string): Promise<NodeRecord> {
    return this.store.retry(async () => {
      const n = await this.node(ref);
      const cur = await this.store.get<NodeRecord>('nodes', n.id);
      if (cur.value.role === 'worker') return cur.value;
      const others = (await this.nodes()).filter(
        (x) => x.role === 'manager' && x.id !== n.id && x.status === 'ready',
      );
      if (others.length === 0)
        throw precondition(`node ${n.hostname} is the last reachable manager: promote another node first`);
      const { managerAddr: _gone, ...rest } = cur.value;
      const next: NodeRecord = { ...rest, role: 'worker' };
      await this.store.update('nodes', n.id, next, cur.version);
      return next;
    });
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

  /** `lookup`: a service's instances from the cluster state (the embedded discovery backend). */
  async lookup(ref: string, opts: LookupOptions = {}): Promise<Instance[]> {
    const svc = await this.service(ref);
    const [tasks, nodes] = await Promise.all([this.tasks(), this.nodes()]);
    return instancesOf(svc, tasks, nodes, opts);
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
    const all = await this.services();
    if (all.some((s) => s.spec.name === spec.name)) {
      throw conflict(`a service named "${spec.name}" already exists`);
    }
    assertIngressPortsFree(spec, all);
    await this.networks.checkAttachments((spec.networks ?? []).map((a) => a.target));
    const { next, ops } = this.jobs.created(rec, now);
    await this.store.txn([{ op: 'create', kind: 'services', id: rec.id, value: next }, ...ops]);
    return next;
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
      // a client sends back the redacted credentials it was shown: they stay as they are, as long
      // as the image stays on that registry (they are never sent to another)
      if (input.container?.registryAuth === REDACTED) {
        const sameRegistry =
          registryOf(input.container.image ?? cur.value.spec.container.image) ===
          registryOf(cur.value.spec.container.image);
        const kept = sameRegistry ? cur.value.spec.container.registryAuth : undefined;
        const { registryAuth: _shown, ...rest } = input.container;
        input = { ...input, container: { ...rest, ...(kept ? { registryAuth: kept } : {}) } };
      }
      const spec = normalizeServiceSpec({ ...cur.value.spec, ...input, name: cur.value.spec.name });
      assertIngressPortsFree(
        spec,
        (await this.services()).filter((s) => s.id !== svc.id),
      );
      await this.networks.checkAttachments((spec.networks ?? []).map((a) => a.target));
      // scaling (and a job's concurrency and schedule) is not a change of what the tasks run
      // nor are new registry credentials (the next tasks pull with them, as swarmkit's do)
      const taskSpec = (x: ServiceSpec) =>
        JSON.stringify({
          ...x,
          replicas: 0,
          maxConcurrent: undefined,
          schedule: undefined,
          container: { ...x.container, registryAuth: undefined },
        });
      const changed = opts.force || taskSpec(spec) !== taskSpec(cur.value.spec);
      const rescheduled = JSON.stringify(spec.schedule) !== JSON.stringify(cur.value.spec.schedule);
      const newAuth = spec.container.registryAuth !== cur.value.spec.container.registryAuth;
      if (!changed && !rescheduled && !newAuth && spec.replicas === cur.value.spec.replicas) return cur.value;
      const updated: ServiceRecord = changed
        ? {
            ...cur.value,
            spec,
            previousSpec: cur.value.spec,
            previousVersion: cur.value.version,
            version: cur.value.version + 1,
            updatedAt: Date.now(),
          }
        : { ...cur.value, spec, updatedAt: Date.now() };
      const { next, ops } = await this.jobs.updated(cur.value, updated, changed, Date.now());
      await this.store.txn([
        { op: 'update', kind: 'services', id: svc.id, value: next, expectedVersion: cur.version },
        ...ops,
      ]);
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
  /**
   * `registryAuth` (registry host → encoded credentials, from --with-registry-auth) goes with each
   * service whose image is on that registry; without it a service keeps the credentials it had.
   */
  async deployStack(stack: NormalizedStack, prune = false, registryAuth: Record<string, string> = {}) {
    const specs = servicesFromStack(stack);
    const existing = (await this.services()).filter((s) => s.spec.labels[STACK_LABEL] === stack.name);
    for (const spec of specs) {
      const auth = registryAuth[registryOf(spec.container.image)];
      const before = existing.find((s) => s.spec.name === spec.name)?.spec.container;
      // kept only while the image stays on the registry they are for
      const kept =
        before && registryOf(before.image) === registryOf(spec.container.image)
          ? before.registryAuth
          : undefined;
      if (auth ?? kept) spec.container.registryAuth = auth ?? kept;
    }
    const result = {
      stack: stack.name,
      networks: [] as string[],
      created: [] as string[],
      updated: [] as string[],
      unchanged: [] as string[],
      removed: [] as string[],
    };
    for (const spec of specs) normalizeServiceSpec(spec); // refuse the whole deploy before changing anything
    // the stack's networks first: external ones must exist, the others are created when missing
    const have = new Set((await this.networks.list()).map((n) => n.name));
    const nets = Object.values(stack.networks ?? {});
    for (const n of nets)
      if (n.external && !have.has(n.name))
        throw notFound(
          `network "${n.name}" is declared as external, but could not be found: create it with \`tsswarm network create\``,
        );
    for (const n of nets) {
      if (n.external || have.has(n.name)) continue;
      const pool = n.ipam.config[0];
      await this.networks.create({
        name: n.name,
        driver: n.driver,
        ...(pool?.subnet ? { subnet: pool.subnet } : {}),
        ...(pool?.gateway ? { gateway: pool.gateway } : {}),
        attachable: n.attachable,
        internal: n.internal,
        labels: { ...n.labels, [STACK_LABEL]: stack.name },
      });
      result.networks.push(n.name);
    }
    for (const spec of specs) {
      const cur = existing.find((s) => s.spec.name === spec.name);
      if (!cur) {
        await this.createService(spec);
        result.created.push(spec.name);
      } else {
        const next = await this.updateService(cur.id, spec);
        (next.version !== cur.version ||
        next.spec.replicas !== cur.spec.replicas ||
        JSON.stringify(next.spec.schedule) !== JSON.stringify(cur.spec.schedule)
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
    // and the networks the stack created (Docker removes them too)
    for (const n of await this.networks.list())
      if (n.labels[STACK_LABEL] === name) await this.networks.remove(n.id).catch(() => {});
    return mine.map((s) => s.spec.name);
  }

  async removeService(ref: string): Promise<void> {
    const svc = await this.service(ref);
    await this.store.delete('services', svc.id);
  }
}

/**
 * An ingress port is published on every node: two services cannot publish the same one
 * (Docker refuses it the same way). Host-mode ports are the scheduler's business.
 */
function assertIngressPortsFree(spec: ServiceSpec, others: ServiceRecord[]): void {
  for (const p of spec.endpoint?.ports ?? []) {
    if (p.mode !== 'ingress' || p.published === undefined) continue;
    const holder = others.find((o) =>
      (o.spec.endpoint?.ports ?? []).some(
        (q) => q.mode === 'ingress' && q.published === p.published && q.protocol === p.protocol,
      ),
    );
    if (holder)
      throw conflict(`port ${p.published}/${p.protocol} is already published by service ${holder.spec.name}`);
  }
}

/** Forgets the swarm on this node: its state, keys and etcd data. */
export async function forgetSwarm(dataRoot: string): Promise<void> {
  for (const f of ['swarm.json', 'swarm-creds.json', 'etcd', 'etcd-tls'])
    await rm(join(dataRoot, f), { recursive: true, force: true });
}

/** Where a manager keeps its etcd TLS files (etcd reads them itself). */
function etcdTlsFiles(dataRoot: string): EtcdTlsFiles {
  const dir = join(dataRoot, 'etcd-tls');
  return { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') };
}

async function writeEtcdTls(dataRoot: string, c: NodeCredentials): Promise<void> {
  const f = etcdTlsFiles(dataRoot);
  await mkdir(join(dataRoot, 'etcd-tls'), { recursive: true, mode: 0o700 });
  await writeFile(f.caFile, c.caCertPem);
  await writeFile(f.certFile, c.certPem);
  await writeFile(f.keyFile, c.keyPem, { mode: 0o600 });
}

function readEtcdTls(dataRoot: string): NodeCredentials {
  const f = etcdTlsFiles(dataRoot);
  return {
    caCertPem: readFileSync(f.caFile, 'utf8'),
    certPem: readFileSync(f.certFile, 'utf8'),
    keyPem: readFileSync(f.keyFile, 'utf8'),
  };
}

/** The host of a HOST:PORT address. */
export const hostOf = (addr: string): string => addr.replace(/^\[?(.*?)\]?:\d+$/, '$1');
