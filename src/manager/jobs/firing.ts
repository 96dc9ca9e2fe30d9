/**
 * What a job's firing writes, decided without I/O: given the scheduled times that are due and
 * whether the current run still goes, the run (or skip) records to create and where the
 * schedule's cursor moves. The runner writes it all in one transaction with the service's
 * new job state, so a firing is recorded exactly once, before any of its tasks exists.
 */
import type { JobRun, JobRunRecord, JobSchedule } from '../../api/cluster.js';

/** A due time older than this when the leader gets to it was missed (no leader was firing). */
export const ON_TIME_MS = 10_000;

export type NewRecord = JobRun;

export interface FiringInput {
  schedule: JobSchedule;
  /** Scheduled times in (cursor, now], oldest first (as `CronClock.between` gives them). */
  due: number[];
  /** Due times older than those listed. */
  more: number;
  now: number;
  /** The current run, and whether it still goes. */
  iteration: number;
  running: boolean;
  /** The last record's sequence number. */
  seq: number;
}

export interface FiringDecision {
  /** The new cursor: the newest due time. */
  cursor: number;
  records: NewRecord[];
  /** The current run afterwards (a new one if the firing started a run). */
  iteration: number;
}

/** Decides a firing; undefined when nothing is due. */
export function decideFiring(f: FiringInput): FiringDecision | undefined {
  const latest = f.due.at(-1);
  if (latest === undefined) return undefined;
  const onTime = f.now - latest <= ON_TIME_MS;
  const missed = onTime ? f.due.slice(0, -1) : f.due;
  const records: NewRecord[] = [];
  let seq = f.seq;
  const missedFields = (times: number[], more: number) => ({
    ...(times.length ? { missed: times } : {}),
    ...(more ? { missedMore: more } : {}),
  });
  let fireAt: number | undefined = latest;
  let covers: number[] = [];
  let coversMore = 0;
  if (missed.length > 0) {
    if (f.schedule.missed === 'skip') {
      const at = missed.at(-1)!;
      const n = missed.length + f.more;
      records.push({
        seq: ++seq,
        trigger: 'schedule',
        scheduledAt: at,
        ...missedFields(missed.slice(0, -1), f.more),
        createdAt: f.now,
        endedAt: f.now,
        result: 'skipped',
        reason: `missed: ${n} scheduled time${n === 1 ? '' : 's'} passed while no leader fired them (missed: skip)`,
      });
      if (!onTime) fireAt = undefined;
    } else {
      // run-once: one run stands for every missed time (and the on-time one, if any)
      covers = onTime ? missed : missed.slice(0, -1);
      coversMore = f.more;
    }
  }
  if (fireAt === undefined) return { cursor: latest, records, iteration: f.iteration };
  const base = {
    trigger: 'schedule' as const,
    scheduledAt: fireAt,
    ...missedFields(covers, coversMore),
    createdAt: f.now,
  };
  if (f.running && f.schedule.concurrency === 'forbid') {
    records.push({
      ...base,
      seq: ++seq,
      endedAt: f.now,
      result: 'skipped',
      reason: `run ${f.iteration} is still going (concurrency forbid)`,
    });
    return { cursor: latest, records, iteration: f.iteration };
  }
  const iteration = f.iteration + 1;
  records.push({
    ...base,
    seq: ++seq,
    iteration,
    result: 'running',
    ...(missed.length ? { reason: catchUpReason(missed.length + f.more, onTime) } : {}),
  });
  return { cursor: latest, records, iteration };
}

function catchUpReason(missed: number, onTime: boolean): string {
  const times = `${missed} scheduled time${missed === 1 ? '' : 's'} missed while no leader fired them`;
  return onTime
    ? `also stands for ${times} (missed: run-once)`
    : `one late run for ${times} (missed: run-once)`;
}

/**
 * The records to delete so that `history` runs remain (with the skipped firings among them);
 * a run still going is never deleted.
 */
export function pruneRuns(records: readonly JobRunRecord[], history: number): JobRunRecord[] {
  const runs = records.filter((r) => r.iteration !== undefined).sort((a, b) => b.seq - a.seq);
  const oldestKept = runs[Math.min(history, runs.length) - 1]?.seq;
  if (oldestKept === undefined) return [...records].sort((a, b) => b.seq - a.seq).slice(history);
  return records.filter((r) => r.seq < oldestKept && r.result !== 'running');
}
