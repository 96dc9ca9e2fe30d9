/**
 * The replicated orchestrator: `replicas` slots numbered from 1, each with one task wanted up.
 * Scaling down stops the highest slots; scaling up fills the lowest free numbers; an ended task
 * is replaced as the restart policy says; a task on a down, drained or deleted node is moved.
 */
import { groupBy, isOccupied, nodeLost, Plan, settle } from './group.js';
import { DEFAULT_HISTORY_LIMIT } from './history.js';
import type { IdGenerator, ReconcileOptions, ReconcileResult, ServiceView, Task } from './types.js';

/**
 * Compares the service's tasks (others in `tasks` are ignored) with `service.replicas` and says
 * what to create, stop and delete. Converged input gives an empty result.
 */
export function reconcileReplicated(
  service: ServiceView,
  tasks: readonly Task[],
  now: number,
  ids: IdGenerator,
  opts: ReconcileOptions = {},
): ReconcileResult {
  const plan = new Plan(service, now, ids);
  const nodes = opts.nodes ? new Map(opts.nodes.map((n) => [n.id, n])) : undefined;
  const lost = (t: Task) => nodes !== undefined && t.nodeId !== undefined && nodeLost(nodes.get(t.nodeId));
  const slots = groupBy(
    tasks.filter((t) => t.serviceId === service.id),
    (t) => t.slot,
  );
  const occupied = [...slots.keys()].filter((s) => isOccupied(slots.get(s)!)).sort((a, b) => a - b);
  const replicas = Math.max(0, service.replicas);
  for (const [k, slot] of occupied.entries()) {
    const group = slots.get(slot)!;
    if (k >= replicas) for (const t of group) plan.stop(t);
    else settle(plan, group, { lost, canCreate: true, where: { slot } });
  }
  const taken = new Set(occupied);
  let want = replicas - occupied.length;
  for (let slot = 1; want > 0; slot++) {
    if (taken.has(slot)) continue;
    plan.make({ slot });
    want--;
  }
  for (const group of slots.values()) plan.prune(group, opts.historyLimit ?? DEFAULT_HISTORY_LIMIT);
  return plan.result();
}
