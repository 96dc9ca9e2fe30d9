/**
 * The rolling updater as a pure step function. The caller keeps the `UpdaterState` (in the
 * service object), applies the actions of each step, and steps again on the next task change or
 * at `wakeAt`. Slots (or nodes, for a global service) whose tasks are not of the service's
 * version are updated `parallelism` at a time; the next batch starts `delayMs` after every task
 * of the previous one runs (or failed). `stop-first` creates the new task desired `ready` and
 * stops the old one, then runs the new one once the old has ended; `start-first` starts the new
 * task and stops the old one once the new one runs. New tasks are watched for `monitorMs` after
 * they start running; failures/updated above `maxFailureRatio` triggers the failure action.
 *
 * Rollback: when the action is `rollback` the state turns `rollback_started` and the step does
 * nothing more; the caller swaps the service to its previous spec (a new version) and runs the
 * same updater from `startUpdate('rollback', …)`, which uses the service's `rollback` config.
 */
import { groupBy, newestFirst } from './group.js';
import { newTask } from './restart.js';
import { isDesiredUp, isLive, isTerminal } from './states.js';
import type { IdGenerator, ServiceView, Task, UpdateConfig } from './types.js';

export type UpdateStatus =
  | 'updating'
  | 'paused'
  | 'completed'
  | 'rollback_started'
  | 'rollback_paused'
  | 'rollback_completed';

/** One slot being updated. */
export interface InFlight {
  slot?: number;
  nodeId?: string;
  newTaskId: string;
  /** The slot's tasks replaced (stopped first, or once the new task runs). */
  oldTaskIds: string[];
  order: UpdateConfig['order'];
}

export interface Monitored {
  taskId: string;
  /** Failing until then (inclusive) counts against the update. */
  until: number;
}

export interface UpdaterState {
  mode: 'update' | 'rollback';
  status: UpdateStatus;
  message?: string;
  /** The version being rolled out, and the one it replaces. */
  version: number;
  previousVersion: number;
  startedAt: number;
  completedAt?: number;
  /** Slots (`s:<slot>`) or nodes (`n:<id>`) taken up so far; each is updated once per run. */
  done: string[];
  /** Tasks started with the new version. */
  updated: number;
  failures: number;
  failedTaskIds: string[];
  batch: InFlight[];
  monitoring: Monitored[];
  /** No batch starts before this. */
  nextBatchAt: number;
}

export type UpdateAction =
  /** Write this new task (desired `ready` for stop-first while the old task still runs). */
  | { type: 'start'; slot?: number; nodeId?: string; task: Task }
  /** Set the task's desired state to `shutdown`. */
  | { type: 'stop'; slot?: number; nodeId?: string; taskId: string }
  /** Set the (stop-first) new task's desired state to `running`: the old one has ended. */
  | { type: 'run'; slot?: number; nodeId?: string; taskId: string };

export interface UpdateStepResult {
  actions: UpdateAction[];
  state: UpdaterState;
  /** Step again at this time even if no task changes (batch delay, end of a monitor window). */
  wakeAt?: number;
}

/** The state an update (or a rollback) starts from. */
export function startUpdate(
  mode: UpdaterState['mode'],
  service: ServiceView,
  previousSpecVersion: number,
  now: number,
): UpdaterState {
  return {
    mode,
    status: mode === 'rollback' ? 'rollback_started' : 'updating',
    version: service.version,
    previousVersion: previousSpecVersion,
    startedAt: now,
    done: [],
    updated: 0,
    failures: 0,
    failedTaskIds: [],
    batch: [],
    monitoring: [],
    nextBatchAt: now,
  };
}

/** The task stopped without being asked to: a failure, a rejection, a lost node, an unexpected exit. */
export function failedOnItsOwn(t: Task): boolean {
  const s = t.status.state;
  if (s === 'failed' || s === 'rejected' || s === 'orphaned') return true;
  if (s === 'complete') return isDesiredUp(t.desiredState) || (t.status.exitCode ?? 0) !== 0;
  if (s === 'shutdown') return isDesiredUp(t.desiredState);
  return false;
}

const keyOf = (t: { slot?: number; nodeId?: string }, global: boolean): string | undefined =>
  global
    ? t.nodeId === undefined
      ? undefined
      : `n:${t.nodeId}`
    : t.slot === undefined
      ? undefined
      : `s:${t.slot}`;

const where = (t: { slot?: number; nodeId?: string }): { slot?: number; nodeId?: string } =>
  t.slot !== undefined ? { slot: t.slot } : t.nodeId !== undefined ? { nodeId: t.nodeId } : {};

/**
 * One step of the update of `service` (already at its new version) over its tasks. Pure: the
 * returned state is a new object; `state` is not modified. A paused or finished state returns
 * no actions.
 */
export function updateStep(
  service: ServiceView,
  previousSpecVersion: number,
  tasks: readonly Task[],
  state: UpdaterState,
  now: number,
  ids: IdGenerator,
): UpdateStepResult {
  const s: UpdaterState = {
    ...state,
    done: [...state.done],
    failedTaskIds: [...state.failedTaskIds],
    batch: [...state.batch],
    monitoring: [...state.monitoring],
    previousVersion: state.previousVersion ?? previousSpecVersion,
  };
  if (s.status !== 'updating' && s.status !== 'rollback_started') return { actions: [], state: s };
  const cfg = (s.mode === 'rollback' ? service.rollback : undefined) ?? service.update;
  const global = service.mode === 'global' || service.mode === 'global-job';
  const mine = tasks.filter((t) => t.serviceId === service.id);
  const byId = new Map(mine.map((t) => [t.id, t]));
  const actions: UpdateAction[] = [];
  const fail = (t: Task) => {
    s.failures++;
    s.failedTaskIds.push(t.id);
  };

  // 1. the batch in flight
  const batchWasBusy = s.batch.length > 0;
  s.batch = s.batch.filter((e) => {
    const nt = byId.get(e.newTaskId);
    const olds = e.oldTaskIds.map((id) => byId.get(id)).filter((t): t is Task => t !== undefined);
    if (!nt) return false;
    if (isTerminal(nt.status.state)) {
      if (failedOnItsOwn(nt)) fail(nt);
      return false;
    }
    if (e.order === 'stop-first' && nt.desiredState === 'ready') {
      if (olds.every((o) => isTerminal(o.status.state))) {
        actions.push({ type: 'run', ...where(e), taskId: nt.id });
      }
      return true;
    }
    if (nt.status.state === 'running') {
      if (e.order === 'start-first') {
        for (const o of olds)
          if (isDesiredUp(o.desiredState)) actions.push({ type: 'stop', ...where(e), taskId: o.id });
      }
      if (cfg.monitorMs > 0) s.monitoring.push({ taskId: nt.id, until: nt.status.timestamp + cfg.monitorMs });
      return false;
    }
    return true;
  });
  if (batchWasBusy && s.batch.length === 0) s.nextBatchAt = now + cfg.delayMs;

  // 2. new tasks under watch
  s.monitoring = s.monitoring.filter((m) => {
    const t = byId.get(m.taskId);
    if (!t) return false;
    if (isTerminal(t.status.state)) {
      if (failedOnItsOwn(t) && t.status.timestamp <= m.until) fail(t);
      return false;
    }
    return now < m.until;
  });

  // 3. the failure action
  if (s.failures > 0 && s.failures / Math.max(1, s.updated) > cfg.maxFailureRatio) {
    const culprit = s.failedTaskIds[s.failedTaskIds.length - 1];
    if (cfg.failureAction === 'rollback' && s.mode === 'update') {
      s.status = 'rollback_started';
      s.message = `update rolled back due to failure or early termination of task ${culprit}`;
      s.batch = [];
      s.monitoring = [];
      return { actions, state: s };
    }
    if (cfg.failureAction !== 'continue') {
      s.status = s.mode === 'rollback' ? 'rollback_paused' : 'paused';
      s.message = `${s.mode} paused due to failure or early termination of task ${culprit}`;
      return { actions, state: s };
    }
  }

  // 4. the next batch
  const groups = groupBy(mine, (t) => keyOf(t, global));
  const dirty = [...groups.entries()]
    .filter(([key, group]) => {
      if (s.done.includes(key)) return false;
      const up = group.filter((t) => isDesiredUp(t.desiredState));
      return up.length > 0 && !up.some((t) => t.specVersion === service.version);
    })
    .sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  if (s.batch.length === 0 && now >= s.nextBatchAt && dirty.length > 0) {
    const n = cfg.parallelism > 0 ? cfg.parallelism : dirty.length;
    for (const [key, group] of dirty.slice(0, n)) {
      const up = group.filter((t) => isDesiredUp(t.desiredState)).sort(newestFirst);
      const at = where(up[0]!);
      const running = up.filter(isLive);
      const stopFirst = cfg.order === 'stop-first' && running.length > 0;
      const task = newTask(service, ids, now, { ...at, desiredState: stopFirst ? 'ready' : 'running' });
      actions.push({ type: 'start', ...at, task });
      // what already ended goes now; what runs goes now (stop-first) or once the new task runs
      for (const o of up) {
        if (stopFirst || !isLive(o)) actions.push({ type: 'stop', ...at, taskId: o.id });
      }
      s.batch.push({ ...at, newTaskId: task.id, oldTaskIds: running.map((o) => o.id), order: cfg.order });
      s.done.push(key);
      s.updated++;
    }
    dirty.splice(0, n);
  }

  // 5. finished?
  if (s.batch.length === 0 && s.monitoring.length === 0 && dirty.length === 0) {
    s.status = s.mode === 'rollback' ? 'rollback_completed' : 'completed';
    s.message = `${s.mode} completed`;
    s.completedAt = now;
    return { actions, state: s };
  }
  const times = s.monitoring.map((m) => m.until);
  if (s.batch.length === 0 && dirty.length > 0) times.push(s.nextBatchAt);
  const future = times.filter((x) => x > now);
  return future.length > 0 ? { actions, state: s, wakeAt: Math.min(...future) } : { actions, state: s };
}
