/**
 * Task history: the ended tasks a slot (or, for the global modes, a node) keeps so that
 * `service ps` can show what happened, as Docker's task history retention limit (default 5).
 * Older ended tasks are deleted by the reconciler, which also removes their containers from
 * the nodes.
 */
import { isDesiredUp, isTerminal } from './states.js';
import type { ServiceMode, Task } from './types.js';

/** Ended tasks kept per slot (or node), as `docker swarm init --task-history-limit` defaults. */
export const DEFAULT_HISTORY_LIMIT = 5;

/** The newest first: by the time of the current status, then by creation. */
function newestFirst(a: Task, b: Task): number {
  return b.status.timestamp - a.status.timestamp || b.createdAt - a.createdAt;
}

/**
 * The ended tasks of one slot (or node) to delete: every one but the newest `limit`. A negative
 * limit keeps everything. A task still wanted up is never deleted (unless `stopping` has it):
 * it is the record of how its slot ended — a job's successful run, a failure the restart policy
 * gave up on or is about to retry — and the orchestrators read it.
 */
export function pruneGroup(
  group: readonly Task[],
  limit: number,
  stopping: ReadonlySet<string> = new Set(),
): string[] {
  if (limit < 0) return [];
  const ended = group.filter((t) => isTerminal(t.status.state)).sort(newestFirst);
  return ended
    .slice(limit)
    .filter((t) => !isDesiredUp(t.desiredState) || stopping.has(t.id))
    .map((t) => t.id);
}

/** Where a task's history is kept: its node for the global modes, its slot otherwise. */
export function historyKey(mode: ServiceMode, t: Task): string | undefined {
  if (mode === 'global' || mode === 'global-job') return t.nodeId === undefined ? undefined : `n:${t.nodeId}`;
  return t.slot === undefined ? undefined : `s:${t.slot}`;
}

/**
 * The ended tasks of one service to delete so that each slot (or node) keeps at most `limit`,
 * whatever service version they ran. Tasks being deleted already (desired `remove`) and tasks
 * without a slot or node are left alone.
 */
export function pruneHistory(
  mode: ServiceMode,
  tasks: readonly Task[],
  limit: number,
  stopping: ReadonlySet<string> = new Set(),
): string[] {
  const groups = new Map<string, Task[]>();
  for (const t of tasks) {
    if (t.desiredState === 'remove') continue;
    const key = historyKey(mode, t);
    if (key === undefined) continue;
    const g = groups.get(key);
    if (g) g.push(t);
    else groups.set(key, [t]);
  }
  return [...groups.values()].flatMap((g) => pruneGroup(g, limit, stopping));
}
