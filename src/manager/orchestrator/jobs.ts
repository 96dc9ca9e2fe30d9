/**
 * Jobs: tasks that run to completion. A replicated job wants `totalCompletions` successful runs
 * (slots 1..totalCompletions) with at most `replicas` tasks at once; a global job wants one
 * successful run per eligible node, nodes that join later included. Failures follow the restart
 * policy (a clean exit is never restarted). Only tasks of the current run count (the service's
 * job iteration: bumped by a new version, a rerun or a scheduled firing; without one, the
 * version is the run). The tasks of earlier runs are stopped (their successful runs included),
 * unless the schedule's concurrency is `allow`, and pruned as history of their slot or node.
 */
import { eligibility } from './eligibility.js';
import { groupBy, isOccupied, nodeLost, Plan, type SettleOutcome, settle } from './group.js';
import { DEFAULT_HISTORY_LIMIT, pruneHistory } from './history.js';
import { endedInFailure, isLive } from './states.js';
import type { IdGenerator, NodeView, ReconcileOptions, ReconcileResult, ServiceView, Task } from './types.js';

export interface JobProgress {
  /** Successful completions wanted (global job: eligible nodes plus nodes already done). */
  total: number;
  succeeded: number;
  /** Slots (or nodes) the restart policy gave up on. */
  failed: number;
  /** Tasks wanted up and not ended, including those created by this result. */
  running: number;
  /** Nothing runs and nothing more will be started: every run succeeded or was given up. */
  done: boolean;
}

export interface JobResult extends ReconcileResult {
  progress: JobProgress;
}

/** Which tasks belong to the service's current run: its job iteration, or else its version. */
export function runOf(service: Pick<ServiceView, 'jobIteration' | 'version'>): (t: Task) => boolean {
  const it = service.jobIteration;
  return it === undefined ? (t) => t.specVersion === service.version : (t) => t.jobIteration === it;
}

const succeededIn = (group: readonly Task[]) =>
  group.some((t) => t.status.state === 'complete' && !endedInFailure(t));

/** Reconciles a `replicated-job` or `global-job` service (nodes are needed for both). */
export function reconcileJobs(
  service: ServiceView,
  tasks: readonly Task[],
  nodes: readonly NodeView[],
  now: number,
  ids: IdGenerator,
  opts: Omit<ReconcileOptions, 'nodes'> = {},
): JobResult {
  const plan = new Plan(service, now, ids);
  const mine = tasks.filter((t) => t.serviceId === service.id);
  const inRun = runOf(service);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  // an earlier run's tasks are history now, its successful runs included; with concurrency
  // `allow` an earlier run goes on beside the current one (unless its node is lost)
  for (const t of mine) {
    if (inRun(t)) continue;
    const lostNode = t.nodeId !== undefined && nodeLost(byId.get(t.nodeId));
    if (service.concurrency !== 'allow' || lostNode) plan.stop(t);
  }
  const current = mine.filter(inRun);
  const progress =
    service.jobIteration === 0
      ? { total: 0, succeeded: 0, failed: 0, running: 0, done: true }
      : service.mode === 'global-job'
        ? globalJob(plan, current, nodes)
        : replicatedJob(plan, current, nodes);
  const limit = opts.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  for (const id of pruneHistory(service.mode, mine, limit, plan.shutdown)) plan.remove.add(id);
  return { ...plan.result(), progress };
}

function replicatedJob(plan: Plan, tasks: Task[], nodes: readonly NodeView[]): JobProgress {
  const { service } = plan;
  const total = Math.max(0, service.totalCompletions ?? service.replicas);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const lost = (t: Task) => t.nodeId !== undefined && nodeLost(byId.get(t.nodeId));
  const slots = groupBy(tasks, (t) => t.slot);
  let succeeded = 0;
  let failed = 0;
  let running = 0;
  const pending: number[] = [];
  for (const [slot, group] of slots) {
    if (slot > total || slot < 1 || succeededIn(group)) {
      for (const t of group) if (isLive(t)) plan.stop(t);
      if (slot >= 1 && slot <= total) succeeded++;
    } else if (group.some((t) => isLive(t) && !lost(t))) {
      settle(plan, group, { lost, canCreate: false, where: { slot } });
      running++;
    } else pending.push(slot);
  }
  let room = Math.max(0, service.replicas) - running;
  for (let slot = 1; slot <= total; slot++) {
    const group = slots.get(slot);
    if (!group) {
      if (room > 0) {
        plan.make({ slot });
        room--;
        running++;
      }
      continue;
    }
    if (!pending.includes(slot)) continue;
    let outcome: SettleOutcome = 'waiting';
    if (isOccupied(group)) outcome = settle(plan, group, { lost, canCreate: room > 0, where: { slot } });
    else if (room > 0) {
      plan.make({ slot });
      outcome = 'replaced';
    }
    if (outcome === 'replaced') {
      room--;
      running++;
    } else if (outcome === 'dead') failed++;
  }
  return { total, succeeded, failed, running, done: running === 0 && succeeded + failed >= total };
}

function globalJob(plan: Plan, tasks: Task[], nodes: readonly NodeView[]): JobProgress {
  const elig = eligibility(plan.service);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const groups = groupBy(tasks, (t) => t.nodeId);
  let succeeded = 0;
  let failed = 0;
  let running = 0;
  let total = 0;
  for (const [nodeId, group] of groups) {
    const node = byId.get(nodeId);
    if (succeededIn(group)) {
      for (const t of group) if (isLive(t)) plan.stop(t);
      succeeded++;
      total++;
      continue;
    }
    if (elig.evicts(node)) {
      for (const t of group) if (isLive(t)) plan.stop(t);
      continue;
    }
    if (!isOccupied(group)) continue;
    const accepts = node !== undefined && elig.accepts(node);
    const outcome = settle(plan, group, { lost: () => false, canCreate: accepts, where: { nodeId } });
    if (outcome === 'dead') failed++;
    if (outcome === 'live' || outcome === 'replaced') running++;
    if (outcome !== 'waiting' || accepts) total++;
  }
  for (const node of nodes) {
    const group = groups.get(node.id);
    if ((!group || (!isOccupied(group) && !succeededIn(group))) && elig.accepts(node)) {
      plan.make({ nodeId: node.id });
      running++;
      total++;
    }
  }
  return { total, succeeded, failed, running, done: running === 0 && succeeded + failed >= total };
}

/** Where a run of a job stands (its view's job iteration), without planning anything. */
export function jobProgress(
  service: ServiceView,
  tasks: readonly Task[],
  nodes: readonly NodeView[],
  now: number,
): JobProgress {
  return reconcileJobs(service, tasks, nodes, now, () => 'probe').progress;
}
