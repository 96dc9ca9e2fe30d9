/** Builders and a tiny simulated cluster for the orchestrators' tests. Not used by the orchestrators. */

import type { IdGenerator, NodeView, ReconcileResult, ServiceView, Task, TaskState } from './types.js';
import type { UpdateAction } from './updater.js';

export function makeService(over: Partial<ServiceView> = {}): ServiceView {
  return {
    id: 'svc',
    name: 'web',
    version: 1,
    mode: 'replicated',
    replicas: 3,
    restartPolicy: { condition: 'any', delayMs: 0, maxAttempts: 0, windowMs: 0 },
    update: {
      parallelism: 1,
      delayMs: 0,
      failureAction: 'pause',
      monitorMs: 0,
      maxFailureRatio: 0,
      order: 'stop-first',
    },
    constraints: [],
    ...over,
  };
}

export function makeNode(id: string, over: Partial<NodeView> = {}): NodeView {
  return {
    id,
    availability: 'active',
    status: 'ready',
    labels: {},
    role: 'worker',
    platform: { os: 'linux', arch: 'x86_64' },
    ...over,
  };
}

/** Ids t1, t2, … */
export function counter(prefix = 't'): IdGenerator {
  let n = 0;
  return () => `${prefix}${++n}`;
}

/** A running task of `svc` version 1 unless told otherwise. */
export function makeTask(id: string, over: Partial<Task> = {}): Task {
  return {
    id,
    serviceId: 'svc',
    specVersion: 1,
    desiredState: 'running',
    status: { state: 'running', timestamp: 0 },
    createdAt: 0,
    ...over,
  };
}

/** The store after committing a reconcile result. */
export function apply(tasks: readonly Task[], res: ReconcileResult): Task[] {
  const stop = new Set(res.shutdown);
  const gone = new Set(res.remove);
  return [
    ...tasks
      .filter((t) => !gone.has(t.id))
      .map((t) => (stop.has(t.id) ? { ...t, desiredState: 'shutdown' as const } : t)),
    ...res.create,
  ];
}

/** The store after committing an updater step's actions. */
export function applyActions(tasks: readonly Task[], actions: readonly UpdateAction[]): Task[] {
  let out = [...tasks];
  for (const a of actions) {
    if (a.type === 'start') out.push(a.task);
    else {
      const desired = a.type === 'stop' ? ('shutdown' as const) : ('running' as const);
      out = out.map((t) => (t.id === a.taskId ? { ...t, desiredState: desired } : t));
    }
  }
  return out;
}

/** A worker's report: tasks `ids` reach `state` at `at`. */
export function report(
  tasks: readonly Task[],
  ids: readonly string[],
  state: TaskState,
  at: number,
  exitCode?: number,
): Task[] {
  return tasks.map((t) =>
    ids.includes(t.id)
      ? { ...t, status: { state, timestamp: at, ...(exitCode !== undefined ? { exitCode } : {}) } }
      : t,
  );
}

/** Workers obey: tasks desired running that are not terminal run; tasks desired shutdown stop. */
export function converge(tasks: readonly Task[], at: number): Task[] {
  return tasks.map((t) => {
    const terminal = ['complete', 'shutdown', 'failed', 'rejected', 'remove', 'orphaned'].includes(
      t.status.state,
    );
    if (terminal) return t;
    if (t.desiredState === 'running' && t.status.state !== 'running')
      return { ...t, status: { state: 'running', timestamp: at } };
    if (t.desiredState === 'shutdown' || t.desiredState === 'remove')
      return { ...t, status: { state: 'shutdown', timestamp: at } };
    return t;
  });
}

export const bySlot = (tasks: readonly Task[]) =>
  [...tasks]
    .filter((t) => t.desiredState === 'running')
    .map((t) => t.slot)
    .sort((a, b) => (a ?? 0) - (b ?? 0));
