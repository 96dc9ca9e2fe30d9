import { randomBytes } from 'node:crypto';
import type {
  NetworkAddress,
  NetworkRecord,
  NodeRecord,
  ServiceRecord,
  ServiceSpec,
  TaskRecord,
} from '../api/cluster.js';
import { schedule } from '../scheduler/index.js';
import type { PendingTask, RunningTask, Node as SchedNode } from '../scheduler/types.js';
import { AddressBook, taskNetworks } from './allocator.js';
import { startRun } from './jobs/runs.js';
import { reconcileGlobal, reconcileJobs, reconcileReplicated } from './orchestrator/index.js';
import { isTerminal } from './orchestrator/states.js';
import type { NodeView, ReconcileResult, ServiceView, Task } from './orchestrator/types.js';
import { startUpdate, updateStep } from './orchestrator/updater.js';
import { commitPass, PassLoop } from './passLoop.js';
import { hostPortsOf, isJob } from './serviceSpec.js';
import type { Item, Store, TxnOp } from './store/types.js';

/** A pass starts this long after the first change that asks for it. */
const PASS_BATCH_MS = 20;

const newId = () => randomBytes(12).toString('hex');

/** States in which a task holds its node's resources. */
const HOLDS_NODE = new Set(['assigned', 'accepted', 'preparing', 'ready', 'starting', 'running']);

export function serviceView(s: ServiceRecord): ServiceView {
  const replicatedJob = s.spec.mode === 'replicated-job';
  return {
    id: s.id,
    name: s.spec.name,
    version: s.version,
    mode: s.spec.mode,
    // a replicated job's spec counts completions; its orchestrator's `replicas` is tasks at once
    replicas: replicatedJob ? (s.spec.maxConcurrent ?? s.spec.replicas) : s.spec.replicas,
    ...(replicatedJob ? { totalCompletions: s.spec.replicas } : {}),
    restartPolicy: s.spec.restartPolicy,
    update: s.spec.update,
    ...(s.spec.rollback ? { rollback: s.spec.rollback } : {}),
    constraints: s.spec.constraints,
    ...(s.job ? { jobIteration: s.job.iteration } : {}),
    ...(s.spec.schedule ? { concurrency: s.spec.schedule.concurrency } : {}),
  };
}

export function nodeView(n: NodeRecord): NodeView {
  return {
    id: n.id,
    hostname: n.hostname,
    availability: n.availability,
    status: n.status,
    labels: n.labels,
    role: n.role,
    platform: n.platform,
  };
}

/**
 * The leader's control loop: turns services into tasks (orchestrators), then places pending
 * tasks on nodes (scheduler). Driven by store watches; each pass reads a fresh snapshot and
 * writes its changes in transactions that compare revisions, so a conflicting writer makes
 * the pass run again rather than lose an update.
 */
export class Reconciler {
  private watch?: { cancel(): Promise<void> };
  private readonly loop: PassLoop;

  constructor(
    private readonly store: Store,
    private readonly opts: {
      log?: (m: string) => void;
      seed?: number;
      /** Ended tasks kept per slot (per node for the global modes); default 5, negative: all. */
      historyLimit?: number;
      /** Creates the ingress network (called when a service publishes an ingress port and it is missing). */
      ensureIngress?: () => Promise<void>;
    } = {},
  ) {
    this.loop = new PassLoop(() => this.pass(), { batchMs: PASS_BATCH_MS, log: (m) => this.log(m) });
  }

  start(): void {
    this.watch = this.store.watch(
      ['services', 'tasks', 'nodes'],
      { onError: (e) => this.log(`watch: ${String(e)}`) },
      () => this.kick(),
    );
  }

  async stop(): Promise<void> {
    this.loop.stop();
    await this.watch?.cancel();
  }

  private log(m: string): void {
    this.opts.log?.(`reconciler: ${m}`);
  }

  /** Asks for a pass; passes never overlap, and a request during one runs another after it. */
  kick(): void {
    this.loop.kick();
  }

  private async pass(): Promise<void> {
    const [services, tasks, nodes, networks] = await Promise.all([
      this.store.list<ServiceRecord>('services'),
      this.store.list<TaskRecord>('tasks'),
      this.store.list<NodeRecord>('nodes'),
      this.store.list<NetworkRecord>('networks'),
    ]);
    const publishes = services.items.some((s) =>
      s.value.spec.endpoint?.ports.some((p) => p.mode === 'ingress' && p.published !== undefined),
    );
    if (publishes && !networks.items.some((n) => n.value.ingress) && this.opts.ensureIngress) {
      await this.opts.ensureIngress();
      return this.pass();
    }
    const book = new AddressBook(
      networks.items.map((n) => n.value),
      services.items.map((s) => s.value),
      tasks.items.map((t) => t.value),
      nodes.items.map((n) => n.value),
    );
    const now = Date.now();
    const nodeViews = nodes.items.map((n) => nodeView(n.value));
    const byService = new Map<string, Array<Item<TaskRecord>>>();
    for (const t of tasks.items) {
      const list = byService.get(t.value.serviceId) ?? [];
      list.push(t);
      byService.set(t.value.serviceId, list);
    }
    const ops: TxnOp[] = [];
    let wake: number | undefined;

    // the ingress network: an address on it for every node
    for (const it of networks.items) {
      if (!it.value.ingress) continue;
      const endpoints = book.endpoints(
        it.value,
        nodes.items.map((n) => n.value),
      );
      if (endpoints)
        ops.push({
          op: 'update',
          kind: 'networks',
          id: it.id,
          value: { ...it.value, endpoints },
          expectedVersion: it.version,
        });
    }

    // the manager owns a task until it is assigned: one no longer wanted simply ends there
    for (const it of tasks.items) {
      const t = it.value;
      if (
        (t.status.state === 'new' || t.status.state === 'pending') &&
        (t.desiredState === 'shutdown' || t.desiredState === 'remove')
      ) {
        ops.push({
          op: 'update',
          kind: 'tasks',
          id: it.id,
          value: {
            ...t,
            status: { state: 'shutdown', timestamp: now, message: 'shut down before it was assigned' },
          },
          expectedVersion: it.version,
        });
      }
    }

    // depends_on: a service starts only once each service it depends on has a running task
    // (or, for a job whose tasks may end before any pass sees them run, a successful one)
    const runningByName = new Map<string, number>();
    for (const { value: svc } of services.items) {
      const n = (byService.get(svc.id) ?? []).filter(
        (t) =>
          (t.value.status.state === 'running' && t.value.desiredState === 'running') ||
          (t.value.status.state === 'complete' && (t.value.status.exitCode ?? 0) === 0),
      ).length;
      runningByName.set(svc.spec.name, n);
    }

    for (const { value: svc } of services.items) {
      const items = byService.get(svc.id) ?? [];
      const waitingFor = (svc.spec.dependsOn ?? []).filter((dep) => !runningByName.get(dep));
      if (waitingFor.length > 0 && items.length === 0) {
        byService.delete(svc.id);
        continue; // the watch brings another pass when a dependency's task runs
      }
      byService.delete(svc.id);
      const view = serviceView(svc);
      const current: Task[] = items.map((i) => i.value);
      // a schedule keeps the tasks of its last `history` runs (one ended task per slot and run)
      const limit = svc.spec.schedule?.history ?? this.opts.historyLimit;
      const history = limit !== undefined ? { historyLimit: limit } : {};
      let result: ReconcileResult;
      if (isJob(svc.spec.mode)) result = reconcileJobs(view, current, nodeViews, now, newId, history);
      else if (svc.spec.mode === 'global')
        result = reconcileGlobal(view, current, nodeViews, now, newId, history);
      else result = reconcileReplicated(view, current, now, newId, { nodes: nodeViews, ...history });
      if (result.wakeAt !== undefined) wake = Math.min(wake ?? Number.POSITIVE_INFINITY, result.wakeAt);
      const toRecord = (t: Task): TaskRecord => ({
        ...t,
        status: { state: 'pending', timestamp: now },
        serviceName: svc.spec.name,
        container: svc.spec.container,
        reservations: svc.spec.reservations,
        ...(svc.spec.endpoint?.ports.length ? { endpoint: { ports: svc.spec.endpoint.ports } } : {}),
      });
      for (const t of result.create) ops.push({ op: 'create', kind: 'tasks', id: t.id, value: toRecord(t) });
      const byId = new Map(items.map((i) => [i.id, i]));
      const svcItem = services.items.find((x) => x.id === svc.id)!;
      const vips = book.vips(svc);
      if (vips)
        ops.push({
          op: 'update',
          kind: 'services',
          id: svc.id,
          value: { ...svc, virtualIps: vips },
          expectedVersion: svcItem.version,
        });
      const upd = this.rollingUpdate(svcItem, current, byId, toRecord, now);
      ops.push(...upd.ops);
      if (upd.wakeAt !== undefined) wake = Math.min(wake ?? Number.POSITIVE_INFINITY, upd.wakeAt);
      for (const id of result.shutdown) {
        const it = byId.get(id);
        if (it && it.value.desiredState !== 'shutdown' && it.value.desiredState !== 'remove') {
          ops.push(this.setDesired(it, 'shutdown', now));
        }
      }
      for (const id of result.remove) {
        const it = byId.get(id);
        if (it) ops.push({ op: 'delete', kind: 'tasks', id, expectedVersion: it.version });
      }
    }

    // tasks of services that are gone: stop them, then forget them once they have ended
    for (const items of byService.values()) {
      for (const it of items) {
        const t = it.value;
        if (isTerminal(t.status.state) || !t.nodeId)
          ops.push({ op: 'delete', kind: 'tasks', id: it.id, expectedVersion: it.version });
        else if (t.desiredState !== 'remove') ops.push(this.setDesired(it, 'remove', now));
      }
    }

    if (ops.length > 0) {
      await this.commit(ops);
      return; // the watch brings the next pass, on the new snapshot
    }
    const scheduled = await this.schedulePending(tasks.items, nodes.items, services.items, book, now);
    if (scheduled.wake !== undefined) wake = Math.min(wake ?? Number.POSITIVE_INFINITY, scheduled.wake);
    if (wake !== undefined && Number.isFinite(wake)) this.loop.wakeAt(wake);
  }

  /**
   * Drives a rolling update (or rollback) of a service whose tasks run an older version, one
   * updater step per pass; the updater's state lives in the service record.
   */
  private rollingUpdate(
    item: Item<ServiceRecord>,
    current: Task[],
    byId: Map<string, Item<TaskRecord>>,
    toRecord: (t: Task) => TaskRecord,
    now: number,
  ): { ops: TxnOp[]; wakeAt?: number } {
    const svc = item.value;
    if (isJob(svc.spec.mode)) return this.rollBackJob(item, now);
    const view = serviceView(svc);
    let state = svc.updateStatus;
    if (svc.rollbackRequested || (state?.status === 'rollback_started' && state.mode === 'update')) {
      // swap back to the previous spec as a new version, then roll back with the rollback config
      if (!svc.previousSpec) return { ops: [] };
      const next: ServiceRecord = {
        ...svc,
        spec: svc.previousSpec,
        previousSpec: svc.spec,
        previousVersion: svc.version,
        version: svc.version + 1,
        rollbackRequested: false,
        updatedAt: now,
      };
      next.updateStatus = startUpdate('rollback', serviceView(next), svc.version, now);
      return {
        ops: [{ op: 'update', kind: 'services', id: svc.id, value: next, expectedVersion: item.version }],
      };
    }
    const stale = current.some(
      (t) =>
        t.specVersion !== svc.version &&
        !isTerminal(t.status.state) &&
        t.desiredState !== 'shutdown' &&
        t.desiredState !== 'remove',
    );
    if (!state || state.version !== svc.version) {
      if (!stale) return { ops: [] };
      state = startUpdate('update', view, svc.previousVersion ?? svc.version - 1, now);
    }
    if (!['updating', 'rollback_started'].includes(state.status)) return { ops: [] };
    const step = updateStep(view, state.previousVersion, current, state, now, newId);
    const ops: TxnOp[] = [];
    for (const a of step.actions) {
      if (a.type === 'start')
        ops.push({ op: 'create', kind: 'tasks', id: a.task.id, value: toRecord(a.task) });
      else {
        const it = byId.get(a.taskId);
        if (it) ops.push(this.setDesired(it, a.type === 'stop' ? 'shutdown' : 'running', now));
      }
    }
    if (JSON.stringify(step.state) !== JSON.stringify(svc.updateStatus)) {
      ops.push({
        op: 'update',
        kind: 'services',
        id: svc.id,
        value: { ...svc, updateStatus: step.state },
        expectedVersion: item.version,
      });
    }
    return { ops, ...(step.wakeAt !== undefined ? { wakeAt: step.wakeAt } : {}) };
  }

  /**
   * Jobs are not rolled out: a new version is a new run of the job (its orchestrator stops the
   * older tasks). A rollback only puts the previous spec back, as a new version.
   */
  private rollBackJob(item: Item<ServiceRecord>, now: number): { ops: TxnOp[] } {
    const svc = item.value;
    if (!svc.rollbackRequested) return { ops: [] };
    if (!svc.previousSpec) {
      const next: ServiceRecord = { ...svc, rollbackRequested: false };
      return {
        ops: [{ op: 'update', kind: 'services', id: svc.id, value: next, expectedVersion: item.version }],
      };
    }
    const next: ServiceRecord = {
      ...svc,
      spec: svc.previousSpec,
      previousSpec: svc.spec,
      previousVersion: svc.version,
      version: svc.version + 1,
      rollbackRequested: false,
      updatedAt: now,
    };
    next.updateStatus = {
      ...startUpdate('rollback', serviceView(next), svc.version, now),
      status: 'rollback_completed',
      message: next.spec.schedule
        ? 'rollback completed (the next firing runs the previous spec)'
        : 'rollback completed (a job runs again with the previous spec)',
      completedAt: now,
    };
    // an unscheduled job runs again; a schedule's next firing runs the previous spec
    const run = next.spec.schedule ? { next, ops: [] } : startRun(next, 'rollback', now);
    return {
      ops: [
        { op: 'update', kind: 'services', id: svc.id, value: run.next, expectedVersion: item.version },
        ...run.ops,
      ],
    };
  }

  private setDesired(it: Item<TaskRecord>, desired: TaskRecord['desiredState'], _now: number): TxnOp {
    return {
      op: 'update',
      kind: 'tasks',
      id: it.id,
      value: { ...it.value, desiredState: desired },
      expectedVersion: it.version,
    };
  }

  private commit(ops: TxnOp[]): Promise<void> {
    return commitPass(this.store, this.loop, ops);
  }

  private async schedulePending(
    tasks: Array<Item<TaskRecord>>,
    nodes: Array<Item<NodeRecord>>,
    services: Array<Item<ServiceRecord>>,
    book: AddressBook,
    now: number,
  ): Promise<{ wake?: number }> {
    let wake: number | undefined;
    const pending: Array<Item<TaskRecord>> = [];
    const specs = new Map(services.map((s) => [s.id, s.value.spec]));
    const ops: TxnOp[] = [];
    for (const it of tasks) {
      const t = it.value;
      if (t.status.state !== 'pending' || t.desiredState !== 'running') continue;
      if (t.notBefore !== undefined && t.notBefore > now) {
        wake = Math.min(wake ?? Number.POSITIVE_INFINITY, t.notBefore);
        continue;
      }
      // its addresses first (kept from now on); none free: it waits, saying why
      const spec = specs.get(t.serviceId);
      if (spec && taskNetworks(spec).length && !t.attachments) {
        let attachments: NetworkAddress[];
        try {
          attachments = book.attach(spec);
        } catch (e) {
          const why = (e as Error).message;
          if (t.status.message !== why)
            ops.push({
              op: 'update',
              kind: 'tasks',
              id: it.id,
              value: { ...t, status: { ...t.status, message: why } },
              expectedVersion: it.version,
            });
          continue;
        }
        pending.push(attachments.length ? { ...it, value: { ...t, attachments } } : it);
        continue;
      }
      pending.push(it);
    }
    if (pending.length === 0) {
      if (ops.length) await this.commit(ops);
      return { wake };
    }
    const schedNodes = schedulerNodes(
      nodes.map((n) => n.value),
      tasks.map((t) => t.value),
    );
    const toSchedule = pending.map(({ value: t }) => pendingTask(t, specs.get(t.serviceId)));
    const plan = schedule({ nodes: schedNodes }, toSchedule, { seed: this.opts.seed ?? now });
    const byId = new Map(pending.map((p) => [p.id, p]));
    for (const a of plan.assignments) {
      const it = byId.get(a.taskId)!;
      ops.push({
        op: 'update',
        kind: 'tasks',
        id: it.id,
        value: {
          ...it.value,
          nodeId: a.nodeId,
          status: { state: 'assigned', timestamp: now, message: 'scheduled' },
        },
        expectedVersion: it.version,
      });
    }
    for (const u of plan.unplaced) {
      const it = byId.get(u.taskId)!;
      if (it.value.status.message === u.summary) continue;
      ops.push({
        op: 'update',
        kind: 'tasks',
        id: it.id,
        value: { ...it.value, status: { ...it.value.status, message: u.summary } },
        expectedVersion: it.version,
      });
    }
    if (ops.length) await this.commit(ops);
    return { wake };
  }
}

/**
 * The nodes as the scheduler sees them, with the tasks that hold something there: a task wanted
 * running from its assignment on holds its reservations and host ports; a task being stopped
 * holds its host ports until it has ended (its process may still be bound to them).
 */
export function schedulerNodes(nodes: readonly NodeRecord[], tasks: readonly TaskRecord[]): SchedNode[] {
  const onNode = new Map<string, RunningTask[]>();
  for (const t of tasks) {
    if (t.nodeId === undefined || !HOLDS_NODE.has(t.status.state)) continue;
    const hostPorts = hostPortsOf(t.endpoint?.ports);
    let held: RunningTask | undefined;
    if (t.desiredState === 'running')
      held = { serviceId: t.serviceId, reservations: t.reservations, hostPorts };
    else if (hostPorts.length > 0)
      held = { serviceId: t.serviceId, reservations: { nanoCpus: 0, memoryBytes: 0 }, hostPorts };
    if (!held) continue;
    const list = onNode.get(t.nodeId);
    if (list) list.push(held);
    else onNode.set(t.nodeId, [held]);
  }
  return nodes.map((n) => ({
    id: n.id,
    hostname: n.hostname,
    role: n.role,
    availability: n.availability,
    status: n.status,
    labels: n.labels,
    platform: n.platform,
    resources: n.resources,
    tasks: onNode.get(n.id) ?? [],
  }));
}

/** A pending task as the scheduler takes it: placement from its service, ports from the task. */
export function pendingTask(t: TaskRecord, spec: ServiceSpec | undefined): PendingTask {
  const p: PendingTask = {
    id: t.id,
    serviceId: t.serviceId,
    spec: {
      reservations: t.reservations,
      constraints: spec?.constraints ?? [],
      preferences: spec?.preferences ?? [],
      hostPorts: hostPortsOf(t.endpoint?.ports),
      ...(spec?.maxReplicasPerNode ? { maxReplicasPerNode: spec.maxReplicasPerNode } : {}),
    },
  };
  if (t.slot !== undefined) p.slot = t.slot;
  if (t.nodeId !== undefined) p.nodeId = t.nodeId;
  return p;
}
