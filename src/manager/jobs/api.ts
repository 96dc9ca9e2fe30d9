/**
 * What managers answer about jobs (`job ls|ps|history|rerun`) and how service changes move a
 * job's runs: a job's create and each update of what its tasks run start a new run (as swarm
 * re-runs a job on update); a schedule starts none until it fires, and a new schedule counts
 * its times from its update.
 */
import type { JobRunRecord, JobSchedule, NodeRecord, ServiceRecord, TaskRecord } from '../../api/cluster.js';
import { precondition } from '../../api/errors.js';
import { type JobProgress, jobProgress } from '../orchestrator/jobs.js';
import { nodeView, serviceView } from '../reconciler.js';
import { isJob } from '../serviceSpec.js';
import type { Item, Store, TxnOp } from '../store/types.js';
import { RUNS_KIND, startRun } from './runs.js';
import { CronClock, scheduleKey } from './schedule.js';

export interface JobSummary {
  id: string;
  name: string;
  mode: ServiceRecord['spec']['mode'];
  schedule?: JobSchedule;
  /** The current run (0: a schedule that has not fired yet). */
  iteration: number;
  /** The current run's tasks: successful, given up, going, wanted. */
  progress: JobProgress;
  /** The current run's record and the newest ended one. */
  current?: JobRunRecord;
  last?: JobRunRecord;
  /** Among the records kept: runs that succeeded, failed, were replaced; firings skipped. */
  counts: { succeeded: number; failed: number; replaced: number; skipped: number };
  /** A schedule's next firing (ms). */
  nextRun?: number;
}

interface Cluster {
  service(ref: string): Promise<ServiceRecord>;
  services(): Promise<ServiceRecord[]>;
  tasks(): Promise<TaskRecord[]>;
  nodes(): Promise<NodeRecord[]>;
}

export class JobApi {
  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
  ) {}

  /** A new service's job state (and its first run, unless it waits for its schedule). */
  created(rec: ServiceRecord, now: number): { next: ServiceRecord; ops: TxnOp[] } {
    if (!isJob(rec.spec.mode)) return { next: rec, ops: [] };
    const s = rec.spec.schedule;
    if (s)
      return {
        next: { ...rec, job: { iteration: 0, seq: 0, cursor: now, scheduleKey: scheduleKey(s) } },
        ops: [],
      };
    return startRun(rec, 'create', now);
  }

  /**
   * An updated service's job state: a new run when what the tasks run changed (unscheduled
   * jobs), the schedule's count restarted when its times changed.
   */
  async updated(
    prev: ServiceRecord,
    next: ServiceRecord,
    changed: boolean,
    now: number,
  ): Promise<{ next: ServiceRecord; ops: TxnOp[] }> {
    if (!isJob(next.spec.mode)) {
      const { job: _gone, ...rest } = next;
      return { next: rest as ServiceRecord, ops: [] };
    }
    const s = next.spec.schedule;
    const job = next.job ?? { iteration: 0, seq: 0 };
    if (s) {
      const key = scheduleKey(s);
      if (job.scheduleKey === key) return { next, ops: [] };
      return { next: { ...next, job: { ...job, cursor: now, scheduleKey: key } }, ops: [] };
    }
    if (!changed && prev.job) return { next, ops: [] };
    const { cursor: _c, scheduleKey: _k, ...plain } = job;
    return startRun({ ...next, job: plain }, 'update', now);
  }

  async records(serviceId: string): Promise<Array<Item<JobRunRecord>>> {
    const all = await this.store.list<JobRunRecord>(RUNS_KIND);
    return all.items.filter((r) => r.value.serviceId === serviceId).sort((a, b) => b.value.seq - a.value.seq);
  }

  private async job(ref: string): Promise<ServiceRecord> {
    const svc = await this.cluster.service(ref);
    if (!isJob(svc.spec.mode))
      throw precondition(
        `service ${svc.spec.name} is ${svc.spec.mode}, not a job (to restart its tasks: service update --force)`,
      );
    return svc;
  }

  /** `job rerun`: a new run now, as a firing would start it (concurrency `forbid` refuses while one goes). */
  async rerun(ref: string): Promise<JobRunRecord> {
    return this.store.retry(async () => {
      const svc = await this.job(ref);
      const cur = await this.store.get<ServiceRecord>('services', svc.id);
      const going = (await this.records(svc.id)).find(
        (r) => r.value.result === 'running' && r.value.iteration === cur.value.job?.iteration,
      );
      if (going && cur.value.spec.schedule?.concurrency === 'forbid')
        throw precondition(
          `job ${svc.spec.name}: run ${going.value.iteration} is still going and its concurrency is forbid: wait for it to end`,
        );
      const now = Date.now();
      const { next, ops, record } = startRun(cur.value, 'manual', now);
      await this.store.txn([
        { op: 'update', kind: 'services', id: svc.id, value: next, expectedVersion: cur.version },
        ...ops,
      ]);
      return record;
    });
  }

  /** `job history`: the records kept, newest first. */
  async history(ref: string): Promise<JobRunRecord[]> {
    const svc = await this.job(ref);
    return (await this.records(svc.id)).map((r) => r.value);
  }

  /** `job ls`: every job with its current run and counts. */
  async list(): Promise<JobSummary[]> {
    const [services, tasks, nodes, runs] = await Promise.all([
      this.cluster.services(),
      this.cluster.tasks(),
      this.cluster.nodes(),
      this.store.list<JobRunRecord>(RUNS_KIND),
    ]);
    const now = Date.now();
    const views = nodes.map(nodeView);
    return services
      .filter((s) => isJob(s.spec.mode))
      .map((s) => {
        const iteration = s.job?.iteration ?? 0;
        const records = runs.items
          .map((r) => r.value)
          .filter((r) => r.serviceId === s.id)
          .sort((a, b) => b.seq - a.seq);
        const mine = tasks.filter((t) => t.serviceId === s.id);
        const progress = jobProgress(serviceView(s), mine, views, now);
        const counts = { succeeded: 0, failed: 0, replaced: 0, skipped: 0 };
        for (const r of records) if (r.result !== 'running') counts[r.result]++;
        const current = records.find((r) => r.iteration === iteration && iteration > 0);
        const last = records.find((r) => r.iteration !== undefined && r.result !== 'running');
        const nextRun = s.spec.schedule ? new CronClock(s.spec.schedule).next() : undefined;
        return {
          id: s.id,
          name: s.spec.name,
          mode: s.spec.mode,
          ...(s.spec.schedule ? { schedule: s.spec.schedule } : {}),
          iteration,
          progress,
          ...(current ? { current } : {}),
          ...(last ? { last } : {}),
          counts,
          ...(nextRun !== undefined ? { nextRun } : {}),
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}
