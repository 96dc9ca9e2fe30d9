/**
 * What the replicated, global and job orchestrators share: a result being built, and the
 * settling of one group of tasks (a slot, or a node of a global service).
 */
import { pruneGroup } from './history.js';
import { decideRestart, newTask } from './restart.js';
import { hasEnded, isDesiredUp, isLive, rankOf } from './states.js';
import type { IdGenerator, NodeView, ReconcileResult, ServiceView, Task } from './types.js';

/** A result under construction. */
export class Plan {
  readonly create: Task[] = [];
  readonly shutdown = new Set<string>();
  readonly remove = new Set<string>();
  constructor(
    readonly service: ServiceView,
    readonly now: number,
    readonly ids: IdGenerator,
  ) {}

  stop(t: Task): void {
    if (isDesiredUp(t.desiredState)) this.shutdown.add(t.id);
  }

  make(over: Parameters<typeof newTask>[3]): Task {
    const t = newTask(this.service, this.ids, this.now, over);
    this.create.push(t);
    return t;
  }

  /** Deletes terminal tasks of a group beyond the newest `limit` (see `pruneGroup`). */
  prune(group: readonly Task[], limit: number): void {
    for (const id of pruneGroup(group, limit, this.shutdown)) this.remove.add(id);
  }

  result(): ReconcileResult {
    const future = this.create
      .map((t) => t.notBefore)
      .filter((n): n is number => n !== undefined && n > this.now);
    const res: ReconcileResult = {
      create: this.create,
      shutdown: [...this.shutdown].filter((id) => !this.remove.has(id)),
      remove: [...this.remove],
    };
    if (future.length > 0) res.wakeAt = Math.min(...future);
    return res;
  }
}

/** Groups tasks by a key, skipping tasks without one and tasks being deleted. */
export function groupBy<K>(tasks: readonly Task[], key: (t: Task) => K | undefined): Map<K, Task[]> {
  const groups = new Map<K, Task[]>();
  for (const t of tasks) {
    if (t.desiredState === 'remove') continue;
    const k = key(t);
    if (k === undefined) continue;
    const g = groups.get(k);
    if (g) g.push(t);
    else groups.set(k, [t]);
  }
  return groups;
}

/** A group is occupied while a task of it is wanted up (running, on its way, or ended unreplaced). */
export function isOccupied(group: readonly Task[]): boolean {
  return group.some((t) => isDesiredUp(t.desiredState));
}

/** The newest first (by status time, then creation). */
export function newestFirst(a: Task, b: Task): number {
  return b.status.timestamp - a.status.timestamp || b.createdAt - a.createdAt;
}

export interface SettleOptions {
  /** The task's node is gone, down or drained: move the task (not a restart attempt). */
  lost: (t: Task) => boolean;
  /** New tasks may be created for the group now (a restart, a move or a job's next run). */
  canCreate: boolean;
  /** slot or nodeId of the group's tasks. */
  where: { slot?: number; nodeId?: string };
}

export type SettleOutcome = 'live' | 'replaced' | 'dead' | 'waiting';

/**
 * Brings one occupied group to one live task: stops duplicates of one version (different
 * versions side by side are a start-first update, the updater's business), moves tasks off lost
 * nodes, and replaces an ended task as the restart policy says. `dead`: the policy gave up and
 * the group keeps its ended task. `waiting`: a replacement is due but `canCreate` is false.
 */
export function settle(plan: Plan, group: readonly Task[], opts: SettleOptions): SettleOutcome {
  const live = group.filter(isLive);
  const lost = live.filter(opts.lost);
  const kept = live.filter((t) => !opts.lost(t));
  const ended = group.filter(hasEnded).sort(newestFirst);
  if (kept.length > 0) {
    for (const t of ended) plan.stop(t);
    const byVersion = groupBy(kept, (t) => t.specVersion);
    for (const same of byVersion.values()) {
      const best = [...same].sort(
        (a, b) => rankOf(b.status.state) - rankOf(a.status.state) || b.createdAt - a.createdAt,
      )[0];
      for (const t of same) if (t !== best) plan.stop(t);
    }
    for (const t of lost) plan.stop(t);
    return 'live';
  }
  if (lost.length > 0) {
    if (!opts.canCreate) return 'waiting';
    for (const t of [...lost, ...ended]) plan.stop(t);
    const from = lost.sort(newestFirst)[0]!;
    plan.make({ ...opts.where, restarts: from.restarts ?? [] });
    return 'replaced';
  }
  const last = ended[0];
  if (!last) return 'live';
  const decision = decideRestart(plan.service.restartPolicy, last);
  if (!decision.restart) return 'dead';
  if (!opts.canCreate) return 'waiting';
  for (const t of ended) plan.stop(t);
  plan.make({ ...opts.where, restarts: decision.restarts, notBefore: decision.notBefore });
  return 'replaced';
}

/** A node that lost its tasks: unknown to the store, down, or drained. */
export function nodeLost(node: NodeView | undefined): boolean {
  return node === undefined || node.status === 'down' || node.availability === 'drain';
}
