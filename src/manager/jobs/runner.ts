/**
 * The leader's job runner: fires cron schedules and keeps the run records of jobs.
 *
 * - A firing is decided from the schedule's cursor in etcd (every scheduled time up to it has
 *   been handled), not from a timer's memory: the scheduled times in (cursor, now] are due.
 *   It is written in one transaction that compares the service's version: the new job state
 *   (cursor, run) and the run (or skip) records. Two leaders for a
 *   moment, a failover or a restart can neither fire a time twice nor lose one; times that
 *   passed with no leader follow the schedule's `missed` policy.
 * - A run ends when its tasks have: its record gets the result and the counts. A run that a
 *   newer one replaced (unless the schedule's concurrency is `allow`) is marked so.
 * - Records beyond the schedule's history (5 for unscheduled jobs) are pruned; those of
 *   removed services are deleted.
 */
import type { JobRunRecord, NodeRecord, ServiceRecord, TaskRecord } from '../../api/cluster.js';
import { jobProgress } from '../orchestrator/jobs.js';
import { isLive } from '../orchestrator/states.js';
import type { NodeView, Task } from '../orchestrator/types.js';
import { commitPass, PassLoop } from '../passLoop.js';
import { nodeView, serviceView } from '../reconciler.js';
import { isJob } from '../serviceSpec.js';
import type { Item, Store, TxnOp } from '../store/types.js';
import { decideFiring, pruneRuns } from './firing.js';
import { createRunOps, RUNS_KIND } from './runs.js';
import { CronClock, DEFAULT_RUN_HISTORY, MISSED_LOOKBACK_MS, scheduleKey } from './schedule.js';

const PASS_BATCH_MS = 30;

interface Clock {
  key: string;
  clock: CronClock;
  /** No scheduled time after the cursor is due up to here (saves walking the same minutes). */
  scannedTo: number;
}

export class JobRunner {
  private watch?: { cancel(): Promise<void> };
  private readonly loop: PassLoop;
  private readonly clocks = new Map<string, Clock>();

  constructor(
    private readonly store: Store,
    private readonly log: (m: string) => void = () => {},
  ) {
    this.loop = new PassLoop(() => this.pass(), {
      batchMs: PASS_BATCH_MS,
      log: (m) => this.log(`job runner: ${m}`),
    });
  }

  start(): void {
    this.watch = this.store.watch(
      ['services', 'tasks', RUNS_KIND, 'nodes'],
      { onError: (e) => this.log(`job runner: watch: ${String(e)}`) },
      () => this.loop.kick(),
    );
    this.loop.kick();
  }

  async stop(): Promise<void> {
    this.loop.stop();
    await this.watch?.cancel();
  }

  private async pass(): Promise<void> {
    const [services, runs] = await Promise.all([
      this.store.list<ServiceRecord>('services'),
      this.store.list<JobRunRecord>(RUNS_KIND),
    ]);
    // no job and no record: nothing to read further (the common case of a busy cluster)
    if (runs.items.length === 0 && !services.items.some((s) => isJob(s.value.spec.mode))) return;
    const [tasks, nodes] = await Promise.all([
      this.store.list<TaskRecord>('tasks'),
      this.store.list<NodeRecord>('nodes'),
    ]);
    const now = Date.now();
    const nodeViews = nodes.items.map((n) => nodeView(n.value));
    const tasksOf = groupItems(tasks.items, (t) => t.serviceId);
    const runsOf = groupItems(runs.items, (r) => r.serviceId);
    const ops: TxnOp[] = [];
    const firings: TxnOp[][] = [];
    let wake = Number.POSITIVE_INFINITY;
    for (const item of services.items) {
      const svc = item.value;
      const records = runsOf.get(svc.id) ?? [];
      runsOf.delete(svc.id);
      if (!isJob(svc.spec.mode) || !svc.job) continue;
      const mine = (tasksOf.get(svc.id) ?? []).map((t) => t.value);
      const r = this.service(item, mine, records, nodeViews, now);
      ops.push(...r.ops);
      if (r.firing) firings.push(r.firing);
      if (r.wake !== undefined) wake = Math.min(wake, r.wake);
    }
    // the records of removed services
    for (const list of runsOf.values())
      for (const r of list) ops.push({ op: 'delete', kind: RUNS_KIND, id: r.id, expectedVersion: r.version });
    for (const id of this.clocks.keys()) if (!services.items.some((s) => s.id === id)) this.clocks.delete(id);

    for (const f of firings) {
      try {
        await this.store.txn(f);
      } catch (e) {
        if ((e as { code?: string }).code !== 'conflict') throw e;
        this.loop.repeat(); // someone changed the service: decide again on what it is now
      }
    }
    if (ops.length) await commitPass(this.store, this.loop, ops);
    if (Number.isFinite(wake)) this.loop.wakeAt(wake);
  }

  /** One job: its runs that ended, its schedule's firing, its pruned records. */
  private service(
    item: Item<ServiceRecord>,
    mine: Task[],
    records: Array<Item<JobRunRecord>>,
    nodes: NodeView[],
    now: number,
  ): { ops: TxnOp[]; firing?: TxnOp[]; wake?: number } {
    const svc = item.value;
    const job = svc.job!;
    const view = serviceView(svc);
    const progressOf = (iteration: number) =>
      jobProgress({ ...view, jobIteration: iteration }, mine, nodes, now);
    const current = job.iteration > 0 ? progressOf(job.iteration) : undefined;
    const ops: TxnOp[] = [];
    const touched = new Set<string>();

    for (const rec of records) {
      const r = rec.value;
      if (r.result !== 'running' || r.iteration === undefined) continue;
      if (r.iteration < job.iteration && svc.spec.schedule?.concurrency !== 'allow') {
        // a newer run replaced it: the orchestrator stops its tasks
        touched.add(rec.id);
        const reason = `replaced by run ${job.iteration}`;
        const value = { ...r, result: 'replaced', endedAt: now, reason };
        ops.push({ op: 'update', kind: RUNS_KIND, id: rec.id, value, expectedVersion: rec.version });
        continue;
      }
      let ended: { succeeded: number; failed: number; total: number } | undefined;
      if (r.iteration === job.iteration) {
        if (current?.done) ended = current;
      } else if (!mine.some((t) => t.jobIteration === r.iteration && isLive(t)))
        ended = progressOf(r.iteration);
      if (!ended) continue;
      const ok = ended.failed === 0 && ended.succeeded >= ended.total;
      touched.add(rec.id);
      ops.push({
        op: 'update',
        kind: RUNS_KIND,
        id: rec.id,
        value: {
          ...r,
          result: ok ? 'succeeded' : 'failed',
          endedAt: now,
          succeeded: ended.succeeded,
          failed: ended.failed,
          total: ended.total,
        },
        expectedVersion: rec.version,
      });
    }

    const history = svc.spec.schedule?.history ?? DEFAULT_RUN_HISTORY;
    for (const r of pruneRuns(
      records.map((x) => x.value),
      history,
    )) {
      const it = records.find((x) => x.value.seq === r.seq)!;
      if (!touched.has(it.id))
        ops.push({ op: 'delete', kind: RUNS_KIND, id: it.id, expectedVersion: it.version });
    }

    const schedule = svc.spec.schedule;
    if (!schedule) return { ops };
    const key = scheduleKey(schedule);
    let c = this.clocks.get(svc.id);
    if (!c || c.key !== key) {
      c = { key, clock: new CronClock(schedule), scannedTo: 0 };
      this.clocks.set(svc.id, c);
    }
    const cursor = job.scheduleKey === key && job.cursor !== undefined ? job.cursor : svc.updatedAt;
    const after = Math.max(cursor, c.scannedTo, now - MISSED_LOOKBACK_MS);
    const due = c.clock.between(after, now);
    const decision = decideFiring({
      schedule,
      due: due.times,
      more: due.more,
      now,
      iteration: job.iteration,
      running: current !== undefined && !current.done,
      seq: job.seq,
    });
    const next = c.clock.next();
    if (!decision) {
      c.scannedTo = now;
      return { ops, ...(next !== undefined ? { wake: next } : {}) };
    }
    const nextSvc: ServiceRecord = {
      ...svc,
      job: {
        iteration: decision.iteration,
        seq: job.seq + decision.records.length,
        cursor: decision.cursor,
        scheduleKey: key,
      },
    };
    const firing: TxnOp[] = [
      { op: 'update', kind: 'services', id: svc.id, value: nextSvc, expectedVersion: item.version },
      ...createRunOps(nextSvc, decision.records),
    ];
    for (const r of decision.records)
      this.log(
        `job ${svc.spec.name}: ${new Date(r.scheduledAt ?? now).toISOString()} ${r.result === 'skipped' ? `skipped (${r.reason})` : `run ${r.iteration}`}`,
      );
    // the firing's own transaction: a conflicting finish or prune waits for the next pass
    return {
      ops: ops.filter((o) => !firing.some((f) => f.kind === o.kind && f.id === o.id)),
      firing,
      wake: now,
    };
  }
}

function groupItems<T>(items: Array<Item<T>>, key: (v: T) => string): Map<string, Array<Item<T>>> {
  const out = new Map<string, Array<Item<T>>>();
  for (const it of items) {
    const k = key(it.value);
    const list = out.get(k);
    if (list) list.push(it);
    else out.set(k, [it]);
  }
  return out;
}
