/**
 * Cron schedules of jobs, read with node-cron (its syntax and semantics: 5 fields, or 6 with
 * seconds first; day of month and day of week must both match). node-cron's own timer is not
 * used: the leader's job runner fires, so that every firing is recorded in etcd exactly once.
 */
import { createRequire } from 'node:module';
import type { ScheduledTask } from 'node-cron';
import type { JobSchedule } from '../../api/cluster.js';
import { invalid } from '../../api/errors.js';

/** node-cron, loaded on first use: the CLI imports this module and rarely needs it. */
let nodeCron: typeof import('node-cron') | undefined;
function cron(): typeof import('node-cron') {
  nodeCron ??= createRequire(import.meta.url)('node-cron') as typeof import('node-cron');
  return nodeCron;
}

export const CONCURRENCY = ['forbid', 'allow', 'replace'] as const;
export const MISSED = ['run-once', 'skip'] as const;
/** Runs kept by `job history` when the schedule does not say. */
export const DEFAULT_RUN_HISTORY = 5;
/** How far back a leader looks for scheduled times it missed (older ones are counted, not listed). */
export const MISSED_LOOKBACK_MS = 31 * 24 * 3600_000;

/** Why a cron expression is refused, or undefined when node-cron takes it. */
export function cronError(expr: string): string | undefined {
  const fields = expr.trim().split(/\s+/).length;
  if (expr.trim() === '' || fields < 5 || fields > 6)
    return `invalid cron expression "${expr}": 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first`;
  const v = cron().validateDetailed(expr);
  if (v.valid) return undefined;
  const why = v.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  return `invalid cron expression "${expr}": ${why || 'not understood'}`;
}

/** Why a time zone is refused, or undefined when the runtime knows it. */
export function timezoneError(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch {
    return `unknown time zone "${tz}": an IANA name such as UTC or Europe/Berlin`;
  }
}

/** A schedule from user input (`service create` or a stack file), its defaults filled; throws invalid_argument. */
export function scheduleFrom(input: Partial<JobSchedule> & { cron?: unknown }): JobSchedule {
  if (typeof input.cron !== 'string') throw invalid('a schedule needs a cron expression');
  const timezone = input.timezone ?? 'UTC';
  const concurrency = input.concurrency ?? 'forbid';
  const missed = input.missed ?? 'run-once';
  const history = input.history ?? DEFAULT_RUN_HISTORY;
  const err =
    cronError(input.cron) ??
    (typeof timezone === 'string' ? timezoneError(timezone) : 'the time zone must be a string') ??
    (CONCURRENCY.includes(concurrency)
      ? undefined
      : `unknown concurrency "${concurrency}": forbid, allow or replace`) ??
    (MISSED.includes(missed) ? undefined : `unknown missed-firings policy "${missed}": run-once or skip`) ??
    (Number.isInteger(history) && history >= 1
      ? undefined
      : `history must be a whole number ≥ 1 (got ${history})`);
  if (err) throw invalid(err);
  return { cron: input.cron.trim(), timezone, concurrency, history, missed };
}

/** What identifies the times a schedule fires at (a change of it restarts the count). */
export const scheduleKey = (s: JobSchedule): string => `${s.timezone} ${s.cron}`;

/** A schedule's firing times. */
export class CronClock {
  private readonly task: ScheduledTask;
  private readonly seconds: number[];

  private readonly wallClock: Intl.DateTimeFormat;

  constructor(readonly schedule: JobSchedule) {
    this.task = cron().createTask(schedule.cron, () => {}, { timezone: schedule.timezone });
    this.seconds = [...cron().parse(schedule.cron).second].sort((a, b) => a - b);
    this.wallClock = new Intl.DateTimeFormat('en-US', {
      timeZone: schedule.timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
  }

  /** The local time a daylight-saving fall-back repeats (its second occurrence fires not again, as node-cron). */
  private repeated(t: number): boolean {
    const local = this.wallClock.format(t);
    return this.wallClock.format(t - 3_600_000) === local || this.wallClock.format(t - 1_800_000) === local;
  }

  /** The next firing after now (node-cron's own walk, fast for sparse schedules). */
  next(): number | undefined {
    return this.task.getNextRuns(1)[0]?.getTime();
  }

  /**
   * The firing times in (after, until], oldest first, at most `cap` (the newest ones; `more`
   * counts the older ones left out). Walks minute by minute: a time zone's offset is whole
   * minutes, so whether a minute matches does not depend on its second. A local time that a
   * daylight-saving fall-back repeats fires once; one that spring-forward skips, never.
   */
  between(after: number, until: number, cap = 1000): { times: number[]; more: number } {
    const times: number[] = [];
    const first = this.seconds[0];
    if (first === undefined) return { times, more: 0 };
    let more = 0;
    for (let m = Math.floor(after / 60_000) * 60_000; m <= until; m += 60_000) {
      if (!this.task.match(new Date(m + first * 1000))) continue;
      for (const s of this.seconds) {
        const t = m + s * 1000;
        if (t <= after || t > until || this.repeated(t)) continue;
        times.push(t);
        if (times.length > cap) {
          times.shift();
          more++;
        }
      }
    }
    return { times, more };
  }
}
