/**
 * The global orchestrator: one task per eligible node (ready, active, constraints hold). A node
 * that joins gains a task; a node drained, down, deleted or no longer matching loses it; a paused
 * node (or one whose status is unknown) keeps what it runs but gains nothing new.
 */
import { eligibility } from './eligibility.js';
import { groupBy, isOccupied, Plan, settle } from './group.js';
import { DEFAULT_HISTORY_LIMIT } from './history.js';
import type { IdGenerator, NodeView, ReconcileOptions, ReconcileResult, ServiceView, Task } from './types.js';

export function reconcileGlobal(
  service: ServiceView,
  tasks: readonly Task[],
  nodes: readonly NodeView[],
  now: number,
  ids: IdGenerator,
  opts: Omit<ReconcileOptions, 'nodes'> = {},
): ReconcileResult {
  const plan = new Plan(service, now, ids);
  const elig = eligibility(service);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const groups = groupBy(
    tasks.filter((t) => t.serviceId === service.id),
    (t) => t.nodeId,
  );
  for (const [nodeId, group] of groups) {
    const node = byId.get(nodeId);
    if (elig.evicts(node)) {
      for (const t of group) plan.stop(t);
    } else if (isOccupied(group)) {
      // a task is bound to its node: it is never "lost", only evicted above
      settle(plan, group, {
        lost: () => false,
        canCreate: node ? elig.accepts(node) : false,
        where: { nodeId },
      });
    }
  }
  for (const node of nodes) {
    const group = groups.get(node.id);
    if ((!group || !isOccupied(group)) && elig.accepts(node)) plan.make({ nodeId: node.id });
  }
  for (const group of groups.values()) plan.prune(group, opts.historyLimit ?? DEFAULT_HISTORY_LIMIT);
  return plan.result();
}
