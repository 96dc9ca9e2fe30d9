/**
 * Run records of jobs (kind `jobruns`): how a new run starts, as a set of operations written in
 * one transaction with the service's job state.
 */
import type { JobRunRecord, ServiceRecord } from '../../api/cluster.js';
import type { TxnOp } from '../store/types.js';
import type { NewRecord } from './firing.js';

export const RUNS_KIND = 'jobruns';

export const runId = (serviceId: string, seq: number): string => `${serviceId}.${seq}`;

export function runRecord(svc: ServiceRecord, r: NewRecord): JobRunRecord {
  return { serviceId: svc.id, serviceName: svc.spec.name, ...r };
}

/** The ops that create run records for a service. */
export function createRunOps(svc: ServiceRecord, records: readonly NewRecord[]): TxnOp[] {
  return records.map((r) => ({
    op: 'create' as const,
    kind: RUNS_KIND,
    id: runId(svc.id, r.seq),
    value: runRecord(svc, r),
  }));
}

/**
 * A new run of a job now (its create, an update, a rollback, `job rerun`): the service's next
 * job state and its run record, to be written in one transaction (the service with its
 * expected version). The leader's job runner marks the run it replaces (unless the schedule
 * allows runs side by side), and the orchestrator stops that run's tasks.
 */
export function startRun(
  svc: ServiceRecord,
  trigger: JobRunRecord['trigger'],
  now: number,
): { next: ServiceRecord; ops: TxnOp[]; record: JobRunRecord } {
  const job = svc.job ?? { iteration: 0, seq: 0 };
  const iteration = job.iteration + 1;
  const seq = job.seq + 1;
  const next: ServiceRecord = { ...svc, job: { ...job, iteration, seq } };
  const run: NewRecord = { seq, trigger, iteration, createdAt: now, result: 'running' };
  return { next, ops: createRunOps(next, [run]), record: runRecord(next, run) };
}
