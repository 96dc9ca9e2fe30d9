import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { ServiceSpec } from '../api/cluster.js';
import { invalid, precondition } from '../api/errors.js';
import { encodeFrame, exitFrame, Frame } from '../api/frames.js';
import type { Instance, LookupOptions } from '../discovery/instances.js';
import { NodeDiscovery } from '../discovery/node.js';
import type { Engine } from '../engine/engine.js';
import { atomicWriteJson } from '../engine/fsutil.js';
import { decodeAuthHeader } from '../engine/registry/auth.js';
import type { NetworkCreateRequest } from '../manager/networks.js';
import { logTasks, managerCredentials, serviceLogsOptions, streamTaskLogs } from '../manager/serviceLogs.js';
import type { NormalizedStack } from '../manager/stack/types.js';
import { forgetSwarm, hostOf, type InitOptions, SwarmNode } from '../manager/swarm.js';
import { type JoinOptions, requestJoin, requestPromotion } from '../worker/join.js';
import { WorkerNode, type WorkerState } from '../worker/workerNode.js';

/**
 * The daemon's swarm membership: none until `swarm init` or `swarm join`, restored at daemon
 * start; a promoted worker turns into a manager here and a demoted manager into a worker.
 */
export class SwarmHolder {
  node?: SwarmNode;
  worker?: WorkerNode;
  /** This node's Consul discovery, when the swarm uses Consul. */
  discovery?: NodeDiscovery;
  private discoveryRetry?: NodeJS.Timeout;
  constructor(
    readonly engine: Engine,
    private readonly log: (m: string) => void,
  ) {}

  async restore(): Promise<void> {
    if (WorkerNode.isWorker(this.engine.opts.dataRoot))
      this.setWorker(await WorkerNode.restore(this.engine, this.log));
    else {
      const n = await SwarmNode.restore(this.engine, this.log);
      if (n) this.setManager(n);
    }
    await this.startDiscovery();
  }

  /**
   * Starts this node's Consul discovery when the swarm uses Consul: the node's agent (a server
   * on a manager, a client on a worker) and the registration of the tasks it runs. A start that
   * fails is logged and tried again every 5 s; registrations are never given up.
   */
  async startDiscovery(): Promise<void> {
    clearTimeout(this.discoveryRetry);
    const n = this.node;
    const w = this.worker;
    const settings = n?.state.discovery ?? w?.state.discovery;
    const source = n?.taskSource ?? w?.taskSource;
    if (!settings || !source) return;
    if (!this.discovery) {
      try {
        this.discovery = await NodeDiscovery.start({
          dataRoot: this.engine.opts.dataRoot,
          node: {
            id: (n ?? w)!.state.nodeId,
            address: n ? n.state.dispatcher.host : w!.address,
            hostname: hostname(),
          },
          settings,
          server: !!n,
          bootstrap: !!n?.state.discovery?.bootstrap,
          join: n ? await n.managerHosts() : w!.state.managers.map(hostOf),
          log: this.log,
        });
      } catch (e) {
        this.log(`consul: cannot start this node's discovery: ${(e as Error).message}; trying again in 5 s`);
        this.discoveryRetry = setTimeout(() => void this.startDiscovery(), 5_000);
        return;
      }
    }
    this.discovery.follow(source);
  }

  /** A role change or leave: this node's registrations and Consul agent go (a new role starts afresh). */
  private async leaveDiscovery(): Promise<void> {
    clearTimeout(this.discoveryRetry);
    try {
      await this.discovery?.leave();
    } finally {
      this.discovery = undefined;
    }
  }

  /** `lookup`: from Consul when the swarm uses it (through this manager's agent), else from the cluster state. */
  async lookup(ref: string, opts: LookupOptions): Promise<Instance[]> {
    const m = this.manager();
    if (!m.state.discovery) return m.lookup(ref, opts);
    const svc = await m.service(ref);
    if (!this.discovery)
      throw precondition(
        "this manager's Consul agent does not run (see the daemon's log): look the service up through another manager",
      );
    return this.discovery.lookup(svc.spec.name, opts);
  }

  async join(opts: JoinOptions): Promise<{ NodeId: string; ClusterId: string; Role: string }> {
    if (this.node || this.worker) throw precondition('this node is already part of a swarm');
    const { answer, creds } = await requestJoin(opts);
    if (answer.role === 'manager') {
      if (!opts.advertiseAddr) throw invalid('a manager joins with --advertise-addr');
      this.setManager(
        await SwarmNode.joinAsManager(
          this.engine,
          answer,
          creds,
          {
            advertiseAddr: opts.advertiseAddr,
            ...(opts.dispatcherPort ? { dispatcherPort: opts.dispatcherPort } : {}),
          },
          this.log,
        ),
      );
    } else this.setWorker(await WorkerNode.joined(this.engine, answer, creds, opts.manager, this.log));
    await this.startDiscovery();
    return { NodeId: answer.nodeId, ClusterId: answer.clusterId, Role: answer.role };
  }

  /** Tracks a manager created by `swarm init`. */
  async adopt(n: SwarmNode): Promise<void> {
    this.setManager(n);
    await this.startDiscovery();
  }

  private setManager(n: SwarmNode): void {
    this.node = n;
    this.worker = undefined;
    n.onDemoted = () => void this.demoted(n);
  }

  private setWorker(w: WorkerNode): void {
    this.worker = w;
    this.node = undefined;
    this.promotionRetryMs = 0;
    w.onPromoted = () => void this.promoted(w);
  }

  /** How long a worker whose promotion failed waits before it acts on the next one (doubling to 30 s). */
  private promotionRetryMs = 0;

  /** Serialises role changes and leaving: a promotion or demotion finishes before the next starts. */
  private changing: Promise<void> = Promise.resolve();

  /** Queues a role change; one that fails is logged and does not stop the ones after it. */
  private change(what: string, fn: () => Promise<void>): void {
    this.changing = this.changing.then(fn).catch((e) => this.log(`${what} failed: ${(e as Error).message}`));
  }

  private promoted(w: WorkerNode): void {
    this.change('promotion', async () => {
      if (this.worker !== w) return;
      this.log('this node was promoted: becoming a manager');
      let closed = false;
      try {
        const { answer, creds } = await requestPromotion(w.manager, w.credentials);
        if (!answer.address) throw new Error('the manager did not say at which address this node is known');
        await this.leaveDiscovery();
        closed = true;
        await w.close();
        this.setManager(
          await SwarmNode.joinAsManager(
            this.engine,
            answer,
            creds,
            { advertiseAddr: answer.address },
            this.log,
          ),
        );
      } catch (e) {
        this.log(`promotion failed: ${(e as Error).message}; staying a worker`);
        if (this.worker === w) {
          if (closed) {
            // the manager's start may have replaced the worker's files: put them back, start it again
            const root = this.engine.opts.dataRoot;
            await atomicWriteJson(SwarmNode.statePath(root), w.state);
            await atomicWriteJson(SwarmNode.credsPath(root), w.credentials);
            this.setWorker(await WorkerNode.restore(this.engine, this.log));
          } else {
            // the worker goes on; a later heartbeat may promote it, after a growing pause
            this.promotionRetryMs = Math.min(Math.max(this.promotionRetryMs * 2, 1_000), 30_000);
            setTimeout(() => {
              if (this.worker === w) w.onPromoted = () => void this.promoted(w);
            }, this.promotionRetryMs).unref();
          }
        }
      }
      await this.startDiscovery();
    });
  }

  private demoted(n: SwarmNode): void {
    this.change('demotion', async () => {
      if (this.node !== n) return;
      this.log('this node was demoted: becoming a worker');
      await this.leaveDiscovery();
      const managers = await n.becomeWorker();
      const { bootstrap: _, ...discovery } = n.state.discovery ?? {};
      const state: WorkerState = {
        role: 'worker',
        clusterId: n.state.clusterId,
        nodeId: n.state.nodeId,
        managers,
        ...(n.state.discovery ? { discovery: discovery as WorkerState['discovery'] } : {}),
      };
      await atomicWriteJson(SwarmNode.statePath(this.engine.opts.dataRoot), state);
      this.setWorker(await WorkerNode.restore(this.engine, this.log));
      await this.startDiscovery();
    });
  }

  /**
   * `swarm leave`: the node leaves the swarm and forgets it; its task containers are removed.
   * It takes its turn among role changes: one under way ends first, and one asked for meanwhile
   * finds the node gone.
   */
  leave(force: boolean): Promise<void> {
    const left = this.changing.then(() => this.leaveNow(force));
    this.changing = left.catch(() => {});
    return left;
  }

  private async leaveNow(force: boolean): Promise<void> {
    if (this.node && !force) await this.node.leave(force); // refuses: a manager leaves with --force
    await this.leaveDiscovery();
    if (this.node) await this.node.leave(force);
    else if (this.worker) await this.worker.leave();
    else throw precondition('this node is not part of a swarm');
    this.node = undefined;
    this.worker = undefined;
    await forgetSwarm(this.engine.opts.dataRoot);
  }

  manager(): SwarmNode {
    if (this.worker) throw precondition('this node is a worker: run this command against a manager');
    if (!this.node) throw precondition('this node is not a swarm manager: run `tsswarm swarm init` first');
    return this.node;
  }

  async close(): Promise<void> {
    clearTimeout(this.discoveryRetry);
    await this.discovery?.stop();
    await this.node?.close();
    await this.worker?.close();
  }
}

/** The cluster API: swarm, nodes, services, tasks. */
/** A copy of an API answer with every `registryAuth` value replaced. */
export function redactRegistryAuth(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redactRegistryAuth);
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v))
    out[k] = k === 'registryAuth' ? '<redacted>' : redactRegistryAuth(x);
  return out;
}

export function registerClusterRoutes(
  app: FastifyInstance,
  swarm: SwarmHolder,
  log: (m: string) => void,
): void {
  // registry credentials that travel with services and tasks are for workers only
  app.addHook('preSerialization', async (_req, _reply, payload) => redactRegistryAuth(payload));
  app.post<{ Body: InitOptions }>('/swarm/init', async (req, reply) => {
    if (swarm.node || swarm.worker) throw precondition('this node is already part of a swarm');
    const body = req.body ?? {};
    for (const p of [body.etcdClientPort, body.etcdPeerPort]) {
      if (p !== undefined && (!Number.isInteger(p) || p < 1 || p > 65535)) throw invalid(`invalid port ${p}`);
    }
    await swarm.adopt(await SwarmNode.init(swarm.engine, body, log));
    reply.code(201);
    return { ClusterId: swarm.node!.state.clusterId, NodeId: swarm.node!.state.nodeId };
  });
  app.post<{ Body: { token?: string; manager?: string; advertiseAddr?: string; dispatcherPort?: number } }>(
    '/swarm/join',
    async (req) => {
      const b = req.body ?? {};
      if (!b.token || !b.manager) throw invalid('swarm join needs a token and a manager address');
      return swarm.join({
        token: b.token,
        manager: b.manager,
        ...(b.advertiseAddr ? { advertiseAddr: b.advertiseAddr } : {}),
        ...(b.dispatcherPort ? { dispatcherPort: b.dispatcherPort } : {}),
      });
    },
  );
  app.post<{ Querystring: { force?: string } }>('/swarm/leave', async (req) => {
    await swarm.leave(req.query.force === '1');
    return {};
  });
  app.get<{ Querystring: { role?: string; rotate?: string } }>('/swarm/join-token', async (req) => {
    const m = swarm.manager();
    const role = (req.query.role ?? 'worker') as 'worker' | 'manager';
    return { Token: await m.joinToken(role, req.query.rotate === '1'), Manager: m.managerAddress };
  });
  app.get('/swarm', async () => {
    const n = swarm.manager();
    const d = n.state.discovery;
    return {
      ClusterId: n.state.clusterId,
      NodeId: n.state.nodeId,
      Etcd: n.state.etcd.endpoints,
      Discovery: d
        ? {
            Backend: 'consul',
            Mode: d.mode,
            Datacenter: d.datacenter,
            ...(d.addr ? { Addr: d.addr } : {}),
            ...(swarm.discovery?.httpAddr ? { Http: swarm.discovery.httpAddr } : {}),
            ...(swarm.discovery?.dnsAddr ? { Dns: swarm.discovery.dnsAddr } : {}),
          }
        : { Backend: 'embedded' },
    };
  });
  app.get('/nodes', async () => swarm.manager().nodesWithStatus());
  app.post<{ Params: { ref: string } }>('/nodes/:ref/promote', async (req) =>
    swarm.manager().promoteNode(req.params.ref),
  );
  app.post<{ Params: { ref: string } }>('/nodes/:ref/demote', async (req) =>
    swarm.manager().demoteNode(req.params.ref),
  );
  app.get<{ Params: { ref: string } }>('/nodes/:ref', async (req) => swarm.manager().node(req.params.ref));
  app.post<{
    Params: { ref: string };
    Body: { availability?: string; labelAdd?: string[]; labelRm?: string[] };
  }>('/nodes/:ref/update', async (req) => swarm.manager().updateNode(req.params.ref, req.body ?? {}));
  app.delete<{ Params: { ref: string }; Querystring: { force?: string } }>(
    '/nodes/:ref',
    async (req, reply) => {
      await swarm.manager().removeNode(req.params.ref, req.query.force === '1');
      reply.code(204);
    },
  );
  app.get('/services', async () => swarm.manager().services());
  app.post<{ Body: Partial<ServiceSpec> & { image?: string } }>('/services', async (req, reply) => {
    const rec = await swarm.manager().createService(req.body ?? {});
    reply.code(201);
    return rec;
  });
  app.get<{ Params: { ref: string } }>('/services/:ref', async (req) =>
    swarm.manager().service(req.params.ref),
  );
  // `service logs`: frames, protocol in src/manager/serviceLogs.ts
  app.get<{ Params: { ref: string }; Querystring: Record<string, string | undefined> }>(
    '/services/:ref/logs',
    async (req, reply) => {
      const m = swarm.manager();
      const opts = serviceLogsOptions(req.query ?? {});
      // `job logs --run N`: the tasks of one run of a job
      const run = req.query.run === undefined ? undefined : Number(req.query.run);
      if (run !== undefined && !(Number.isInteger(run) && run >= 1))
        throw invalid(`invalid run "${req.query.run}": a run number (see job history)`);
      const tasks = (await logTasks(m, req.params.ref)).filter(
        (t) => run === undefined || t.jobIteration === run,
      );
      const ctx = {
        engine: swarm.engine,
        nodeId: m.state.nodeId,
        creds: await managerCredentials(SwarmNode.credsPath(swarm.engine.opts.dataRoot)),
        nodes: await m.nodes(),
      };
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'application/vnd.tsswarm.frames' });
      raw.flushHeaders();
      const ac = new AbortController();
      raw.on('close', () => ac.abort());
      const r = await streamTaskLogs(
        ctx,
        tasks,
        opts,
        (stream, text) => raw.write(encodeFrame(stream === 'stderr' ? Frame.stderr : Frame.stdout, text)),
        ac.signal,
      );
      raw.end(exitFrame(r.read === 0 && r.failed > 0 ? 1 : 0));
    },
  );
  app.post<{ Params: { ref: string }; Body: { replicas?: number } }>('/services/:ref/scale', async (req) =>
    swarm.manager().scaleService(req.params.ref, Number(req.body?.replicas)),
  );
  app.post<{ Params: { ref: string }; Body: { spec?: Partial<ServiceSpec>; force?: boolean } }>(
    '/services/:ref/update',
    async (req) =>
      swarm.manager().updateService(req.params.ref, req.body?.spec ?? {}, { force: !!req.body?.force }),
  );
  app.post<{ Params: { ref: string } }>('/services/:ref/rollback', async (req) =>
    swarm.manager().rollbackService(req.params.ref),
  );
  app.delete<{ Params: { ref: string } }>('/services/:ref', async (req, reply) => {
    await swarm.manager().removeService(req.params.ref);
    reply.code(204);
  });
  app.post<{ Body: { stack?: NormalizedStack; prune?: boolean; registryAuth?: Record<string, string> } }>(
    '/stacks/deploy',
    async (req) => {
      if (!req.body?.stack) throw invalid('deploy needs a stack');
      const auth = req.body.registryAuth ?? {};
      for (const [host, v] of Object.entries(auth))
        if (typeof v !== 'string' || !decodeAuthHeader(v))
          throw invalid(`malformed registry credentials for ${host}`);
      return swarm.manager().deployStack(req.body.stack, !!req.body.prune, auth);
    },
  );
  app.get('/stacks', async () => swarm.manager().stacks());
  app.delete<{ Params: { name: string } }>('/stacks/:name', async (req) => ({
    removed: await swarm.manager().removeStack(req.params.name),
  }));
  app.get<{ Params: { ref: string }; Querystring: { all?: string } }>(
    '/services/:ref/instances',
    async (req) => swarm.lookup(req.params.ref, { all: req.query.all === '1' }),
  );
  app.get('/networks', async () => swarm.manager().networks.list());
  app.post<{ Body: NetworkCreateRequest }>('/networks', async (req, reply) => {
    const rec = await swarm.manager().networks.create(req.body ?? {});
    reply.code(201);
    return rec;
  });
  app.get<{ Params: { ref: string } }>('/networks/:ref', async (req) =>
    swarm.manager().networks.inspect(req.params.ref),
  );
  app.delete<{ Params: { ref: string } }>('/networks/:ref', async (req, reply) => {
    await swarm.manager().networks.remove(req.params.ref);
    reply.code(204);
  });
  app.get('/jobs', async () => swarm.manager().jobs.list());
  app.get<{ Params: { ref: string } }>('/jobs/:ref/history', async (req) =>
    swarm.manager().jobs.history(req.params.ref),
  );
  app.post<{ Params: { ref: string } }>('/jobs/:ref/rerun', async (req, reply) => {
    const run = await swarm.manager().jobs.rerun(req.params.ref);
    reply.code(201);
    return run;
  });
  app.get<{ Querystring: { service?: string } }>('/tasks', async (req) =>
    swarm.manager().tasks(req.query.service),
  );
}
