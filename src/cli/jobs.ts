/** `tsswarm job`: jobs' runs, tasks, history, logs and reruns. */
import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import type { JobRunRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import type { JobSummary } from '../manager/jobs/api.js';
import { type LogsOptions, logsOptions, printServiceLogs, taskRows } from './cluster.js';
import { table } from './render.js';

type GetClient = () => Client;
const enc = encodeURIComponent;
const json = (v: unknown) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
const formatOption = () =>
  new Option('--format <format>', 'output format').choices(['table', 'json']).default('table');
const runNumber = (v: string) => {
  if (!/^[1-9]\d*$/.test(v)) throw invalid(`--run must be a run number (see job history), not "${v}"`);
  return Number(v);
};

/** A time as the tables show it: UTC, to the second. */
export function when(ms: number | undefined): string {
  return ms === undefined
    ? ''
    : new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z');
}

/** `in 4s`, `in 3m`: how far a time is ahead. */
export function until(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((ms - now) / 1000));
  if (s < 120) return `in ${s}s`;
  if (s < 7200) return `in ${Math.round(s / 60)}m`;
  if (s < 172_800) return `in ${Math.round(s / 3600)}h`;
  return `in ${Math.round(s / 86_400)}d`;
}

export function jobRows(jobs: JobSummary[], now = Date.now()): string[][] {
  return jobs.map((j) => {
    const p = j.progress;
    const status = j.current?.result ?? (j.iteration === 0 ? 'waiting' : (j.last?.result ?? ''));
    const progress =
      j.iteration === 0
        ? ''
        : `${p.succeeded}/${p.total} completed${p.running ? `, ${p.running} running` : ''}${p.failed ? `, ${p.failed} failed` : ''}`;
    return [
      j.name,
      j.mode,
      j.schedule ? `${j.schedule.cron} (${j.schedule.timezone})` : '',
      j.iteration === 0 ? '' : String(j.iteration),
      status,
      progress,
      `${j.counts.succeeded}/${j.counts.failed}/${j.counts.skipped}`,
      j.nextRun !== undefined ? until(j.nextRun, now) : '',
    ];
  });
}

export function historyRows(runs: JobRunRecord[]): string[][] {
  return runs.map((r) => [
    r.iteration === undefined ? '' : String(r.iteration),
    r.trigger,
    when(r.scheduledAt),
    r.iteration === undefined ? '' : when(r.createdAt),
    when(r.endedAt),
    r.result,
    r.total === undefined ? '' : `${r.succeeded}/${r.total}${r.failed ? ` (${r.failed} failed)` : ''}`,
    [r.reason, r.missed?.length ? `missed: ${r.missed.map((t) => when(t)).join(', ')}` : '']
      .filter(Boolean)
      .join('; '),
  ]);
}

export function jobCommands(getClient: GetClient): Command {
  const c = new Command('job')
    .description('Jobs: services that run to completion, once or on a cron schedule')
    .enablePositionalOptions();
  c.command('ls')
    .description('List jobs: current run, its progress, runs succeeded/failed/skipped, next firing')
    .addOption(formatOption())
    .action(async (o: { format: string }) => {
      const jobs = await getClient().request<JobSummary[]>('GET', '/jobs');
      if (o.format === 'json') return void json(jobs);
      process.stdout.write(
        table(
          ['NAME', 'MODE', 'SCHEDULE', 'RUN', 'STATUS', 'PROGRESS', 'OK/FAILED/SKIPPED', 'NEXT'],
          jobRows(jobs),
        ),
      );
    });
  c.command('ps')
    .description("List a job's tasks: those of its current run (or of --run N, or of every run kept)")
    .argument('<job>')
    .option('--run <n>', 'the tasks of this run', runNumber)
    .option('-a, --all', 'the tasks of every run kept')
    .addOption(formatOption())
    .action(async (ref: string, o: { run?: number; all?: boolean; format: string }) => {
      const client = getClient();
      const [svc, tasks] = await Promise.all([
        client.request<ServiceRecord>('GET', `/services/${enc(ref)}`),
        client.request<TaskRecord[]>('GET', '/tasks', { query: { service: ref } }),
      ]);
      const run = o.run ?? svc.job?.iteration;
      const mine = o.all ? tasks : tasks.filter((t) => t.jobIteration === run);
      if (o.format === 'json') return void json(mine);
      const rows = taskRows(mine).map((r, i) => [String(mine[i]?.jobIteration ?? ''), ...r]);
      process.stdout.write(
        table(['RUN', 'ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'], rows),
      );
    });
  c.command('history')
    .description("Show a job's recent runs and skipped firings, newest first (logs: job logs JOB --run N)")
    .argument('<job>')
    .addOption(formatOption())
    .action(async (ref: string, o: { format: string }) => {
      const runs = await getClient().request<JobRunRecord[]>('GET', `/jobs/${enc(ref)}/history`);
      if (o.format === 'json') return void json(runs);
      process.stdout.write(
        table(
          ['RUN', 'TRIGGER', 'SCHEDULED', 'STARTED', 'ENDED', 'RESULT', 'TASKS OK', 'NOTE'],
          historyRows(runs),
        ),
      );
    });
  logsOptions(
    c
      .command('logs')
      .description("Fetch the logs of a job's tasks: of its current run, or of --run N")
      .argument('<job>')
      .option('--run <n>', 'the logs of this run (see job history)', runNumber),
  ).action(async (ref: string, o: LogsOptions & { run?: number }) => {
    const client = getClient();
    const run = o.run ?? (await client.request<ServiceRecord>('GET', `/services/${enc(ref)}`)).job?.iteration;
    await printServiceLogs(client, ref, o, run);
  });
  c.command('rerun')
    .description('Start a new run of a job now (a scheduled job keeps its schedule)')
    .argument('<job>')
    .action(async (ref: string) => {
      const run = await getClient().request<JobRunRecord>('POST', `/jobs/${enc(ref)}/rerun`);
      process.stdout.write(`${run.serviceName}: run ${run.iteration} started\n`);
    });
  return c;
}
