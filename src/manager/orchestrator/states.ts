/**
 * Task states and who moves them (DESIGN.md §3). States are totally ordered and a task only
 * moves forward; managers own the states up to `assigned` (and `remove`/`orphaned`, which they
 * set on tasks whose worker is gone or that are being deleted), the worker owns `accepted` onwards.
 */
import type { DesiredState, Task, TaskState } from './types.js';

export const TASK_STATES: readonly TaskState[] = [
  'new',
  'pending',
  'assigned',
  'accepted',
  'preparing',
  'ready',
  'starting',
  'running',
  'complete',
  'shutdown',
  'failed',
  'rejected',
  'remove',
  'orphaned',
];

const RANK = new Map<TaskState, number>(TASK_STATES.map((s, i) => [s, i]));

/** Position of a state in the monotonic order. */
export function rankOf(state: TaskState): number {
  const r = RANK.get(state);
  if (r === undefined) throw new Error(`unknown task state ${JSON.stringify(state)}`);
  return r;
}

/** A task in a terminal state never runs again: complete, shutdown, failed, rejected, remove, orphaned. */
export function isTerminal(state: TaskState): boolean {
  return rankOf(state) > rankOf('running');
}

/**
 * Whether a task may go from `from` to `to`: only forward, never to the same state, and only to
 * `remove` or `orphaned` once terminal (a finished task can still be deleted or given up on, but
 * it cannot change how it ended).
 */
export function canTransition(from: TaskState, to: TaskState): boolean {
  if (rankOf(to) <= rankOf(from)) return false;
  if (isTerminal(from)) return to === 'remove' || to === 'orphaned';
  return true;
}

/** Who writes a state: the leader's orchestrators, scheduler and reaper, or the task's worker. */
export function ownerOf(state: TaskState): 'manager' | 'worker' {
  return rankOf(state) <= rankOf('assigned') || state === 'remove' || state === 'orphaned'
    ? 'manager'
    : 'worker';
}

/** The desired state asks for the task to run (or to be ready to). */
export function isDesiredUp(desired: DesiredState): boolean {
  return desired === 'ready' || desired === 'running';
}

/** The task is wanted and still on its way or running: it fills its slot. */
export function isLive(t: Task): boolean {
  return isDesiredUp(t.desiredState) && !isTerminal(t.status.state);
}

/** The task ended although it was wanted up: the restart policy decides what follows. */
export function hasEnded(t: Task): boolean {
  return isDesiredUp(t.desiredState) && isTerminal(t.status.state);
}

/** The task ended because something went wrong (not a clean exit 0). */
export function endedInFailure(t: Task): boolean {
  const s = t.status.state;
  if (s === 'complete') return t.status.exitCode !== undefined && t.status.exitCode !== 0;
  return isTerminal(s);
}
