/**
 * The restart supervisor as pure decisions: whether a task that ended is replaced, when its
 * replacement may start, and how many attempts the slot (or node) has left. Attempts are the
 * failure times carried on the tasks themselves (`Task.restarts`), so the decision is the same
 * whoever takes it and however much history was pruned.
 */
import { endedInFailure } from './states.js';
import type { IdGenerator, RestartPolicy, ServiceView, Task } from './types.js';

export interface RestartDecision {
  restart: boolean;
  /** Why not, for a message; set when restart is false. */
  reason?: string;
  /** The replacement must not start before this (failure time + delay); absent without a delay. */
  notBefore?: number;
  /** The attempts to carry on the replacement. */
  restarts: number[];
}

/** When the task ended: the timestamp of its terminal status. */
export function endedAt(t: Task): number {
  return t.status.timestamp;
}

/**
 * Whether `ended` (a task wanted up that reached a terminal state) is replaced under `policy`.
 * `none` never, `on-failure` after a failure or a non-zero exit, `any` always (a job's clean
 * completion is the caller's business). At most `maxAttempts` restarts whose failures fall in
 * the `windowMs` before this one (0 = ever).
 */
export function decideRestart(policy: RestartPolicy, ended: Task): RestartDecision {
  const at = endedAt(ended);
  const prior = (ended.restarts ?? []).filter((r) => policy.windowMs <= 0 || r > at - policy.windowMs);
  if (policy.condition === 'none')
    return { restart: false, reason: 'restart condition none', restarts: prior };
  if (policy.condition === 'on-failure' && !endedInFailure(ended)) {
    return { restart: false, reason: 'exited cleanly (restart condition on-failure)', restarts: prior };
  }
  if (policy.maxAttempts > 0 && prior.length >= policy.maxAttempts) {
    return { restart: false, reason: `restarted ${prior.length} times (max attempts)`, restarts: prior };
  }
  const restarts = policy.maxAttempts > 0 ? [...prior, at].slice(-policy.maxAttempts) : [];
  return {
    restart: true,
    restarts,
    ...(policy.delayMs > 0 ? { notBefore: at + policy.delayMs } : {}),
  };
}

/** A new task of the service's current version, desired running unless told otherwise. */
export function newTask(
  service: ServiceView,
  ids: IdGenerator,
  now: number,
  over: Partial<Pick<Task, 'slot' | 'nodeId' | 'notBefore' | 'restarts' | 'desiredState'>> = {},
): Task {
  const task: Task = {
    id: ids(),
    serviceId: service.id,
    specVersion: service.version,
    desiredState: over.desiredState ?? 'running',
    status: { state: 'new', timestamp: now },
    createdAt: now,
  };
  if (over.slot !== undefined) task.slot = over.slot;
  if (over.nodeId !== undefined) task.nodeId = over.nodeId;
  if (over.notBefore !== undefined) task.notBefore = over.notBefore;
  if (over.restarts !== undefined && over.restarts.length > 0) task.restarts = over.restarts;
  if (service.jobIteration !== undefined) task.jobIteration = service.jobIteration;
  return task;
}
