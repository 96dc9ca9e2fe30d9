import type { TaskRecord } from '../api/cluster.js';
import { TsswarmError } from '../api/errors.js';
import type { ContainerRecord } from '../engine/containers/types.js';
import type { Engine } from '../engine/engine.js';
import { decodeAuthHeader } from '../engine/registry/auth.js';
import type { ProgressEvent } from '../engine/registry/pull.js';
import { isTerminal } from '../manager/orchestrator/states.js';
import type { TaskStatus } from '../manager/orchestrator/types.js';
import type { NodeNetwork } from '../network/node.js';
import type { NetView } from '../network/view.js';

export interface StatusUpdate {
  taskId: string;
  status: TaskStatus;
  containerId?: string;
}

/** What a worker sees of its managers. The in-process link serves the manager's own node. */
export interface ManagerLink {
  /** Calls `onTasks` with every task assigned to `nodeId`, now and after every change. */
  watchAssignments(
    nodeId: string,
    onTasks: (tasks: TaskRecord[]) => void,
  ): Promise<{ cancel(): Promise<void> }>;
  /** Records task status changes; a status never moves backwards (the manager refuses that). */
  report(updates: StatusUpdate[]): Promise<void>;
  /** Calls `onView` with the node's network view (src/network/view.ts), now and after every change. */
  watchNetwork(nodeId: string, onView: (view: NetView) => void): Promise<{ cancel(): Promise<void> }>;
}

export const TASK_LABEL = 'org.tsswarm.task.id';
/** The longest a stop waits for discovery to let go of the task. */
export const DRAIN_MS = 2_000;
export const SERVICE_LABEL = 'org.tsswarm.service.name';
/** The ids of the networks a task's container is attached to, comma-separated. */
export const NETWORKS_LABEL = 'org.tsswarm.task.networks';
/**
 * How long a task on a network stays up after it left its service's DNS names and VIPs (the
 * view every node gets), before it is stopped: time for the other nodes to stop sending to it.
 */
export const NET_DRAIN_MS = 500;

/**
 * The worker agent: runs the tasks assigned to its node through the local engine, reports
 * their status, stops what its managers no longer want, and removes orphaned containers.
 * Containers outlive the agent; a restarted agent re-adopts them by their task label.
 */
export class Agent {
  private tasks = new Map<string, TaskRecord>();
  private queue: Promise<void> = Promise.resolve();
  private watch?: { cancel(): Promise<void> };
  private netWatch?: { cancel(): Promise<void> };
  private offExit?: () => void;
  private offHealth?: () => void;
  private readonly busy = new Set<string>();
  /** The operations spawned for tasks (start, stop) still running. */
  private readonly ops = new Set<Promise<void>>();
  /** Set by stop(): nothing new is started after it. */
  private stopped = false;
  private readonly listeners = new Set<() => void>();
  private readonly drainers = new Set<(taskId: string) => Promise<void>>();

  constructor(
    private readonly engine: Engine,
    private readonly link: ManagerLink,
    private readonly nodeId: string,
    private readonly log: (m: string) => void = () => {},
    /** The node's datapath: task namespaces, VIPs, DNS (absent: tasks get loopback only). */
    private readonly network?: NodeNetwork,
  ) {}

  async start(): Promise<void> {
    if (this.network) {
      const keep = new Map<string, string[]>();
      for (const c of this.engine.containers.list(true)) {
        const id = c.config.labels[TASK_LABEL];
        const nets = c.config.labels[NETWORKS_LABEL];
        if (id && nets && c.state.status === 'running') keep.set(id, nets.split(','));
      }
      await this.network.reconcile(keep);
      const network = this.network;
      this.netWatch = await this.link.watchNetwork(this.nodeId, (v) => network.setView(v));
      this.drainers.add(async (taskId) => {
        if (this.tasks.get(taskId)?.attachments?.length)
          await new Promise((r) => setTimeout(r, NET_DRAIN_MS));
      });
    }
    this.offExit = this.engine.containers.onExit((rec) => {
      this.changed();
      this.enqueue(() => this.onContainerExit(rec));
    });
    this.offHealth = this.engine.containers.onHealth(() => {
      this.changed();
      this.enqueue(() => this.reconcile());
    });
    this.watch = await this.link.watchAssignments(this.nodeId, (tasks) => {
      this.tasks = new Map(tasks.map((t) => [t.id, t]));
      this.changed();
      this.enqueue(() => this.reconcile());
    });
  }

  /**
   * Calls fn after every change of this node's tasks (assigned, state reported, container
   * health): what discovery registers follows from `snapshot()`. Returns the unsubscribe.
   */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The tasks assigned to this node, in the states this agent last reported, with their containers. */
  snapshot(): { task: TaskRecord; container?: ContainerRecord }[] {
    return [...this.tasks.values()].map((task) => {
      const container = this.containerOf(task.id);
      return container ? { task, container } : { task };
    });
  }

  /**
   * fn is awaited before a task's running container is stopped because it is no longer wanted
   * (at most DRAIN_MS): discovery takes the task out of lookups first, so that it stops
   * getting new work before it stops. Returns the unsubscribe.
   */
  onBeforeStop(fn: (taskId: string) => Promise<void>): () => void {
    this.drainers.add(fn);
    return () => this.drainers.delete(fn);
  }

  private async drain(taskId: string): Promise<void> {
    if (!this.drainers.size) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.drainers].map((fn) => fn(taskId))),
      new Promise((r) => {
        timer = setTimeout(r, DRAIN_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.offExit?.();
    this.offHealth?.();
    await this.watch?.cancel();
    await this.netWatch?.cancel();
    await this.queue;
    this.network?.close();
  }

  /** Stops the agent and removes every task container (the node leaves the swarm). */
  async removeTaskContainers(): Promise<void> {
    await this.stop();
    // a task being started now would otherwise create its container after the removal below
    await Promise.allSettled([...this.ops]);
    for (const c of this.engine.containers.list(true)) {
      const taskId = c.config.labels[TASK_LABEL];
      if (!taskId) continue;
      await this.engine.containers
        .remove(c.id, { force: true })
        .catch((e) => this.log(`agent: cannot remove ${c.id}: ${(e as Error).message}`));
      await this.network?.release(taskId);
    }
    await this.network
      ?.teardown()
      .catch((e) => this.log(`agent: cannot remove the node's networks: ${(e as Error).message}`));
  }

  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((e) => this.log(`agent: ${(e as Error).message}`));
  }

  private containerOf(taskId: string): ContainerRecord | undefined {
    return this.engine.containers.list(true).find((c) => c.config.labels[TASK_LABEL] === taskId);
  }

  private async report(
    task: TaskRecord,
    state: TaskStatus['state'],
    extra: Partial<TaskStatus> = {},
    containerId?: string,
  ) {
    const status: TaskStatus = { state, timestamp: Date.now(), ...extra };
    task.status = status;
    this.changed();
    await this.link.report([{ taskId: task.id, status, ...(containerId ? { containerId } : {}) }]);
  }

  /**
   * Decides what each task needs and starts it as its own operation, so a slow stop (a
   * grace period) never holds up other tasks; when an operation ends, the agent looks again.
   */
  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    for (const task of this.tasks.values()) {
      if (this.busy.has(task.id)) continue;
      const c = this.containerOf(task.id);
      // desired `ready` (a stop-first update's next task) waits until its predecessor has ended
      if (task.desiredState === 'ready') continue;
      const wantRunning = task.desiredState === 'running';
      if (wantRunning && !isTerminal(task.status.state)) {
        const health = c?.config.healthcheck ? c.state.health?.status : 'healthy';
        if (!c) this.spawn(task.id, () => this.run(task));
        else if (c.state.status === 'running' && health === 'unhealthy') {
          this.spawn(task.id, () => this.failUnhealthy(task, c));
        } else if (c.state.status === 'running' && task.status.state !== 'running') {
          // with a healthcheck, a task runs once its container is healthy (as swarm's)
          if (health === 'healthy') await this.report(task, 'running', { message: 'started' }, c.id);
          else if (task.status.state !== 'starting')
            await this.report(task, 'starting', { message: 'waiting for the healthcheck' }, c.id);
        } else if (c.state.status === 'exited') await this.onContainerExit(c);
      } else if (!wantRunning && c) {
        if (
          c.state.status === 'running' ||
          task.desiredState === 'remove' ||
          !isTerminal(task.status.state)
        ) {
          this.spawn(task.id, () => this.shutdown(task, c));
        }
      } else if (!wantRunning && !c && !isTerminal(task.status.state)) {
        await this.report(task, 'shutdown', { message: 'shut down before it started' });
      }
    }
    // containers of tasks this node no longer has
    for (const c of this.engine.containers.list(true)) {
      const taskId = c.config.labels[TASK_LABEL];
      if (!taskId || this.tasks.has(taskId) || this.busy.has(taskId)) continue;
      this.log(`agent: removing container ${c.name} of a task no longer assigned here`);
      this.spawn(taskId, async () => {
        await this.engine.containers.remove(c.id, { force: true });
        await this.network?.release(taskId);
      });
    }
  }

  private spawn(taskId: string, op: () => Promise<void>): void {
    this.busy.add(taskId);
    const p = op()
      .catch((e) => this.log(`agent: task ${taskId}: ${(e as Error).message}`))
      .finally(() => {
        this.busy.delete(taskId);
        this.ops.delete(p);
        this.enqueue(() => this.reconcile());
      });
    this.ops.add(p);
  }

  private async shutdown(task: TaskRecord, c: ContainerRecord): Promise<void> {
    if (c.state.status === 'running') {
      await this.drain(task.id);
      await this.engine.containers.stop(c.id);
    }
    await this.network?.release(task.id);
    if (!isTerminal(task.status.state)) {
      await this.report(task, 'shutdown', { message: 'shut down', exitCode: c.state.exitCode });
    }
    if (task.desiredState === 'remove') await this.engine.containers.remove(c.id, { force: true });
  }

  private async run(task: TaskRecord): Promise<void> {
    const spec = task.container;
    try {
      await this.report(task, 'accepted');
      await this.report(task, 'preparing');
      await this.ensureImage(task);
      const net = await this.network?.prepare(task);
      const limits = spec.limits;
      const { record } = await this.engine.containers.create({
        image: spec.image,
        name: `${task.serviceName}.${task.slot ?? task.nodeId}.${task.id.slice(0, 12)}`,
        cmd: spec.args,
        ...(spec.command
          ? { entrypoint: spec.command[0] ?? '', cmd: [...spec.command.slice(1), ...(spec.args ?? [])] }
          : {}),
        env: spec.env,
        workingDir: spec.workingDir,
        user: spec.user,
        hostname: spec.hostname,
        init: spec.init,
        stopSignal: spec.stopSignal,
        stopTimeout: Math.ceil(spec.stopGracePeriodMs / 1000),
        labels: {
          ...spec.labels,
          [TASK_LABEL]: task.id,
          [SERVICE_LABEL]: task.serviceName,
          ...(net ? { [NETWORKS_LABEL]: (task.attachments ?? []).map((a) => a.networkId).join(',') } : {}),
        },
        ...(net ? { netns: net.netns, dns: net.dns, extraHosts: net.extraHosts } : {}),
        ...(spec.healthcheck ? { healthcheck: spec.healthcheck } : {}),
        resources: {
          memory: limits.memoryBytes ? String(limits.memoryBytes) : undefined,
          cpus: limits.nanoCpus ? String(limits.nanoCpus / 1e9) : undefined,
          pidsLimit: limits.pids,
        },
      });
      await this.report(task, 'ready', {}, record.id);
      const waits = record.config.healthcheck ? { message: 'waiting for the healthcheck' } : {};
      await this.report(task, 'starting', waits, record.id);
      await this.engine.containers.start(record.id);
      if (!record.config.healthcheck) await this.report(task, 'running', { message: 'started' }, record.id);
    } catch (e) {
      const err = (e as Error).message;
      const state =
        task.status.state === 'running' || task.status.state === 'starting' ? 'failed' : 'rejected';
      await this.report(task, state, { err, message: err }).catch(() => {});
      const c = this.containerOf(task.id);
      if (c) await this.engine.containers.remove(c.id, { force: true }).catch(() => {});
      await this.network?.release(task.id).catch(() => {});
    }
  }

  /**
   * Pulls the task's image when this node lacks it (one pull per image at a time: tasks that
   * need the same image share it), reporting progress in the task's `preparing` status.
   */
  private async ensureImage(task: TaskRecord): Promise<void> {
    const ref = task.container.image;
    try {
      this.engine.images.resolve(ref);
      return;
    } catch (err) {
      if (!(err instanceof TsswarmError) || err.code !== 'not_found') throw err;
    }
    const layers = new Map<string, { done: boolean; current: number; total: number }>();
    // at most one report a second; the last progress is reported at the end of its second
    let last = 0;
    let trailing: NodeJS.Timeout | undefined;
    const send = () => {
      last = Date.now();
      trailing = undefined;
      void this.report(task, 'preparing', { message: pullMessage(ref, layers) }).catch(() => undefined);
    };
    const progress = (e: ProgressEvent) => {
      if (!e.id) return;
      const l = layers.get(e.id) ?? { done: false, current: 0, total: 0 };
      if (e.status === 'Pull complete' || e.status === 'Already exists') l.done = true;
      if (e.current !== undefined) l.current = e.current;
      if (e.total !== undefined) l.total = e.total;
      layers.set(e.id, l);
      if (Date.now() - last >= 1000) {
        clearTimeout(trailing);
        send();
      } else trailing ??= setTimeout(send, last + 1000 - Date.now());
    };
    const creds = task.container.registryAuth ? decodeAuthHeader(task.container.registryAuth) : undefined;
    await this.report(task, 'preparing', { message: `pulling ${ref}` });
    try {
      await this.engine.puller.pull(ref, { ...(creds ? { creds } : {}), onProgress: progress });
    } catch (err) {
      throw new TsswarmError(
        err instanceof TsswarmError ? err.code : 'internal',
        `pulling image ${ref}: ${(err as Error).message}`,
      );
    } finally {
      clearTimeout(trailing);
    }
  }

  /** An unhealthy container fails its task (the restart policy replaces it) and is stopped. */
  private async failUnhealthy(task: TaskRecord, c: ContainerRecord): Promise<void> {
    const last = c.state.health?.log.at(-1);
    const why = last ? `: ${last.output.trim().split('\n').at(-1) || `exit ${last.exitCode}`}` : '';
    await this.report(
      task,
      'failed',
      { err: `unhealthy container${why}`.slice(0, 300), message: 'unhealthy' },
      c.id,
    );
    await this.engine.containers.stop(c.id);
  }

  private async onContainerExit(c: ContainerRecord): Promise<void> {
    const taskId = c.config.labels[TASK_LABEL];
    const task = taskId ? this.tasks.get(taskId) : undefined;
    if (taskId) await this.network?.release(taskId);
    if (!task || isTerminal(task.status.state)) return;
    const code = c.state.exitCode ?? 255;
    if (task.desiredState !== 'running')
      await this.report(task, 'shutdown', { exitCode: code, message: 'shut down' });
    else if (code === 0) await this.report(task, 'complete', { exitCode: 0, message: 'finished' });
    else
      await this.report(task, 'failed', {
        exitCode: code,
        err: c.state.oomKilled ? 'OOM killed' : `task: non-zero exit (${code})`,
        message: 'failed',
      });
  }
}

/** `pulling IMAGE: 2/5 layers, 3.1 of 10.0 MB`. */
function pullMessage(
  ref: string,
  layers: Map<string, { done: boolean; current: number; total: number }>,
): string {
  const all = [...layers.values()];
  const done = all.filter((l) => l.done).length;
  const cur = all.reduce((a, l) => a + (l.done ? l.total : l.current), 0);
  const total = all.reduce((a, l) => a + l.total, 0);
  const mb = (n: number) => (n / 1e6).toFixed(1);
  return `pulling ${ref}: ${done}/${all.length} layers${total ? `, ${mb(cur)} of ${mb(total)} MB` : ''}`;
}
