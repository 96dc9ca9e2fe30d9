import type { FastifyInstance } from 'fastify';
import type { ServiceSpec } from '../api/cluster.js';
import { invalid, precondition } from '../api/errors.js';
import type { Engine } from '../engine/engine.js';
import type { NormalizedStack } from '../manager/stack/types.js';
import { type InitOptions, SwarmNode } from '../manager/swarm.js';
import { WorkerNode } from '../worker/workerNode.js';

/** The daemon's swarm membership: none until `swarm init`, restored at daemon start. */
export class SwarmHolder {
  node?: SwarmNode;
  worker?: WorkerNode;
  constructor(
    readonly engine: Engine,
    private readonly log: (m: string) => void,
  ) {}

  async restore(): Promise<void> {
    if (WorkerNode.isWorker(this.engine.opts.dataRoot))
      this.worker = await WorkerNode.restore(this.engine, this.log);
    else this.node = await SwarmNode.restore(this.engine, this.log);
  }

  manager(): SwarmNode {
    if (this.worker) throw precondition('this node is a worker: run this command against a manager');
    if (!this.node) throw precondition('this node is not a swarm manager: run `tsswarm swarm init` first');
    return this.node;
  }

  async close(): Promise<void> {
    await this.node?.close();
    await this.worker?.close();
  }
}

/** The cluster API: swarm, nodes, services, tasks. */
export function registerClusterRoutes(
  app: FastifyInstance,
  swarm: SwarmHolder,
  log: (m: string) => void,
): void {
  app.post<{ Body: InitOptions }>('/swarm/init', async (req, reply) => {
    if (swarm.node || swarm.worker) throw precondition('this node is already part of a swarm');
    const body = req.body ?? {};
    for (const p of [body.etcdClientPort, body.etcdPeerPort]) {
      if (p !== undefined && (!Number.isInteger(p) || p < 1 || p > 65535)) throw invalid(`invalid port ${p}`);
    }
    swarm.node = await SwarmNode.init(swarm.engine, body, log);
    reply.code(201);
    return { ClusterId: swarm.node.state.clusterId, NodeId: swarm.node.state.nodeId };
  });
  app.post<{ Body: { token?: string; manager?: string; advertiseAddr?: string } }>(
    '/swarm/join',
    async (req) => {
      if (swarm.node || swarm.worker) throw precondition('this node is already part of a swarm');
      const b = req.body ?? {};
      if (!b.token || !b.manager) throw invalid('swarm join needs a token and a manager address');
      swarm.worker = await WorkerNode.join(
        swarm.engine,
        { token: b.token, manager: b.manager, advertiseAddr: b.advertiseAddr },
        log,
      );
      return { NodeId: swarm.worker.state.nodeId, ClusterId: swarm.worker.state.clusterId };
    },
  );
  app.get<{ Querystring: { role?: string; rotate?: string } }>('/swarm/join-token', async (req) => {
    const m = swarm.manager();
    const role = (req.query.role ?? 'worker') as 'worker' | 'manager';
    return { Token: await m.joinToken(role, req.query.rotate === '1'), Manager: m.managerAddress };
  });
  app.get('/swarm', async () => {
    const n = swarm.manager();
    return { ClusterId: n.state.clusterId, NodeId: n.state.nodeId, Etcd: n.state.etcd.endpoints };
  });
  app.get('/nodes', async () => swarm.manager().nodes());
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
  app.post<{ Body: { stack?: NormalizedStack; prune?: boolean } }>('/stacks/deploy', async (req) => {
    if (!req.body?.stack) throw invalid('deploy needs a stack');
    return swarm.manager().deployStack(req.body.stack, !!req.body.prune);
  });
  app.get('/stacks', async () => swarm.manager().stacks());
  app.delete<{ Params: { name: string } }>('/stacks/:name', async (req) => ({
    removed: await swarm.manager().removeStack(req.params.name),
  }));
  app.get<{ Querystring: { service?: string } }>('/tasks', async (req) =>
    swarm.manager().tasks(req.query.service),
  );
}
