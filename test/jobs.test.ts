import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { JobRunRecord, TaskRecord } from '../src/api/cluster.js';
import type { JobSummary } from '../src/manager/jobs/api.js';
import type { TestDaemon } from './lib/harness.js';
import { cliJson, startSwarmDaemon } from './lib/swarm.js';
import { until } from './lib/wait.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const history = (d: TestDaemon, job: string) => cliJson<JobRunRecord[]>(d, ['job', 'history', job]);
const missedSkip = (r: JobRunRecord) => r.result === 'skipped' && /^missed/.test(r.reason ?? '');
const runsOf = (h: JobRunRecord[]) => h.filter((r) => r.iteration !== undefined);
const tasksOf = (d: TestDaemon, job: string) => cliJson<TaskRecord[]>(d, ['job', 'ps', '--all', job]);

/** Every scheduled time a job's records stand for, oldest first. */
const covered = (h: JobRunRecord[]) =>
  h
    .flatMap((r) => [...(r.missed ?? []), ...(r.scheduledAt !== undefined ? [r.scheduledAt] : [])])
    .sort((a, b) => a - b);

/** `times` are exactly every `stepMs` from the first to the last: nothing lost, nothing twice. */
function assertContiguous(t: Test, times: number[], stepMs: number, what: string): void {
  const gaps = times.slice(1).map((x, i) => x - times[i]!);
  t.same(
    gaps.filter((g) => g !== stepMs),
    [],
    `${what}: ${times.length} scheduled times, each once, none left out`,
  );
}

t.test(
  'jobs on a manager: schedules fire, concurrency, history, logs, reruns, bad schedules, missed firings',
  async (t) => {
    const d = await startSwarmDaemon(t);
    const create = async (name: string, args: string[], cmd: string[]) => {
      const r = await d.cli(['service', 'create', '--name', name, ...args, 'busybox:test', ...cmd]);
      t.equal(r.code, 0, `create ${name}: ${r.stderr}`);
    };

    await t.test(
      'an unscheduled job: its create is run 1; rerun and update start runs; ps and logs per run',
      async (t) => {
        await create('once', ['--mode', 'replicated-job'], ['sh', '-c', 'echo hello from once']);
        await until(
          'run 1 succeeded',
          () => history(d, 'once'),
          (h) => h[0]?.result === 'succeeded',
        );
        const rerun = await d.cli(['job', 'rerun', 'once']);
        t.equal(rerun.code, 0, rerun.stderr);
        t.equal(rerun.stdout, 'once: run 2 started\n');
        await until(
          'run 2 succeeded',
          () => history(d, 'once'),
          (h) => h[0]?.iteration === 2 && h[0].result === 'succeeded',
        );
        const up = await d.cli(['service', 'update', '--env-add', 'X=1', 'once']);
        t.equal(up.code, 0, up.stderr);
        const h = await until(
          'run 3 succeeded',
          () => history(d, 'once'),
          (h) => h[0]?.iteration === 3 && h[0].result === 'succeeded',
        );
        t.match(
          h.map((r) => [r.iteration, r.trigger, r.result, r.succeeded, r.total]),
          [
            [3, 'update', 'succeeded', 1, 1],
            [2, 'manual', 'succeeded', 1, 1],
            [1, 'create', 'succeeded', 1, 1],
          ],
        );
        const current = await cliJson<TaskRecord[]>(d, ['job', 'ps', 'once']);
        t.same(
          current.map((x) => x.jobIteration),
          [3],
          'job ps: the current run',
        );
        t.same(
          (await tasksOf(d, 'once')).map((x) => x.jobIteration).sort(),
          [1, 2, 3],
          '--all: every run kept',
        );
        const logs = await d.cli(['job', 'logs', '--raw', '--run', '2', 'once']);
        t.equal(logs.code, 0, logs.stderr);
        t.equal(logs.stdout, 'hello from once\n', 'the logs of run 2 alone');
        const table = await d.cli(['job', 'history', 'once']);
        t.match(
          table.stdout,
          /^RUN\s+TRIGGER\s+SCHEDULED\s+STARTED\s+ENDED\s+RESULT\s+TASKS OK\s+NOTE\n3\s+update\s/,
        );
        const badRun = await d.cli(['job', 'logs', '--run', 'two', 'once']);
        t.equal(badRun.code, 125);
        t.match(badRun.stderr, /--run must be a run number/);
        const notJob = await d.cli(['service', 'create', '--name', 'svc', 'busybox:test', 'sleep', '60']);
        t.equal(notJob.code, 0);
        const r = await d.cli(['job', 'rerun', 'svc']);
        t.not(r.code, 0);
        t.match(r.stderr, /service svc is replicated, not a job/);
        t.equal((await d.cli(['service', 'rm', 'svc', 'once'])).code, 0);
      },
    );

    await t.test(
      'schedules fire every time, once; forbid skips, replace stops, allow overlaps',
      async (t) => {
        const every2 = ['--schedule', '*/2 * * * * *', '--schedule-history', '100'];
        await create('tick', every2, ['sh', '-c', 'echo tick']);
        await create('slow', every2, ['sleep', '5']);
        await create(
          'swap',
          ['--schedule', '*/3 * * * * *', '--schedule-concurrency', 'replace', '--schedule-history', '100'],
          ['sh', '-c', 'trap "exit 0" TERM; sleep 30 & wait'],
        );
        await create('pile', [...every2, '--schedule-concurrency', 'allow'], ['sleep', '5']);
        await create('short', ['--schedule', '*/2 * * * * *', '--schedule-history', '2'], ['true']);

        const ls = await cliJson<JobSummary[]>(d, ['job', 'ls']);
        t.match(
          ls.map((j) => [j.name, j.schedule?.concurrency]),
          [
            ['pile', 'allow'],
            ['short', 'forbid'],
            ['slow', 'forbid'],
            ['swap', 'replace'],
            ['tick', 'forbid'],
          ],
        );
        t.ok(
          ls.every((j) => j.nextRun !== undefined && j.nextRun > Date.now() - 5000),
          'a next firing for each',
        );

        // allow: runs go on side by side
        const overlap = await until(
          'two runs of pile at once',
          () => tasksOf(d, 'pile'),
          (ts) =>
            new Set(ts.filter((x) => x.status.state === 'running').map((x) => x.jobIteration)).size >= 2,
          20_000,
        );
        t.ok(overlap.length >= 2);

        const tick = await until(
          'six runs of tick',
          () => history(d, 'tick'),
          (h) => runsOf(h).filter((r) => r.result === 'succeeded').length >= 6,
          30_000,
        );
        const runs = runsOf(tick);
        t.ok(
          runs.every((r) => r.trigger === 'schedule' && r.scheduledAt! % 2000 === 0),
          'each run is for a scheduled time',
        );
        t.same(
          tick.filter((r) => r.missed || r.result === 'skipped'),
          [],
          'none missed or skipped',
        );
        assertContiguous(t, covered(tick), 2000, 'tick');
        const lag = runs.map((r) => r.createdAt - r.scheduledAt!).sort((a, b) => a - b);
        t.comment(
          `firing lag (run recorded − scheduled time): median ${lag[lag.length >> 1]} ms, max ${lag.at(-1)} ms`,
        );
        t.same(
          runs.map((r) => r.iteration),
          runs.map((_r, i) => runs.length - i),
          'runs numbered 1, 2, 3, ... in firing order',
        );
        const oneRun = runs.find((r) => r.result === 'succeeded')!;
        const logs = await d.cli(['job', 'logs', '--raw', '--run', String(oneRun.iteration), 'tick']);
        t.equal(logs.stdout, 'tick\n', `logs of run ${oneRun.iteration}`);

        // forbid: a firing while the run goes is skipped, and runs never overlap
        const slow = await history(d, 'slow');
        t.ok(
          slow.some(
            (r) =>
              r.result === 'skipped' && /run \d+ is still going \(concurrency forbid\)/.test(r.reason ?? ''),
          ),
          'firings skipped while a run went',
        );
        assertContiguous(t, covered(slow), 2000, 'slow');
        const slowRuns = runsOf(slow).reverse();
        for (let i = 1; i < slowRuns.length; i++)
          t.ok(
            slowRuns[i]!.createdAt >= (slowRuns[i - 1]!.endedAt ?? Number.POSITIVE_INFINITY),
            `run ${slowRuns[i]!.iteration} started after run ${slowRuns[i - 1]!.iteration} ended`,
          );
        // forbid refuses a rerun while a run goes. The run seen going may end before the
        // rerun arrives; the rerun is then accepted, and it is the run going on the next try.
        let refusal: string | undefined;
        for (let attempt = 0; attempt < 3 && refusal === undefined; attempt++) {
          const seen = await until(
            'a run of slow going',
            () => history(d, 'slow'),
            (h) => h.some((r) => r.result === 'running'),
          );
          const going = seen.find((r) => r.result === 'running')!;
          const rerun = await d.cli(['job', 'rerun', 'slow']);
          if (rerun.code !== 0) {
            refusal = rerun.stderr;
            break;
          }
          const after = await history(d, 'slow');
          t.not(
            after.find((r) => r.iteration === going.iteration)?.result,
            'running',
            `a rerun was accepted only once run ${going.iteration} had ended`,
          );
        }
        t.match(
          refusal,
          /run \d+ is still going and its concurrency is forbid/,
          'rerun refused while a run goes',
        );

        // replace: the run going is stopped and the new one starts
        const swap = await until(
          'a run of swap replaced',
          () => history(d, 'swap'),
          (h) => h.some((r) => r.result === 'replaced'),
        );
        const replaced = swap.find((r) => r.result === 'replaced')!;
        t.match(replaced.reason, /^replaced by run \d+$/);
        assertContiguous(t, covered(swap), 3000, 'swap');
        await until(
          "the replaced run's task stopped, one run at a time",
          () => tasksOf(d, 'swap'),
          (ts) =>
            ts.some((x) => x.jobIteration === replaced.iteration && x.status.state === 'shutdown') &&
            new Set(ts.filter((x) => x.desiredState === 'running').map((x) => x.jobIteration)).size <= 1,
        );

        // history 2: older runs (and their tasks) are pruned
        const short = await until(
          'short pruned to its last two runs',
          () => history(d, 'short'),
          (h) => (runsOf(h)[0]?.iteration ?? 0) >= 4 && runsOf(h).length === 2,
        );
        t.same(
          runsOf(short).map((r) => r.iteration),
          [runsOf(short)[0]!.iteration, runsOf(short)[0]!.iteration! - 1],
          'the two newest runs are kept',
        );
        await until(
          'the tasks of pruned runs are gone',
          () => tasksOf(d, 'short'),
          (ts) => ts.every((x) => x.jobIteration! >= runsOf(short)[1]!.iteration! - 1),
        );

        const table = await d.cli(['job', 'ls']);
        t.match(
          table.stdout,
          /^NAME\s+MODE\s+SCHEDULE\s+RUN\s+STATUS\s+PROGRESS\s+OK\/FAILED\/SKIPPED\s+NEXT\n/,
        );
        t.match(table.stdout, /\ntick\s+replicated-job\s+\*\/2 \* \* \* \* \* \(UTC\)\s+\d+\s/);
        for (const s of ['tick', 'slow', 'swap', 'pile', 'short'])
          t.equal((await d.cli(['service', 'rm', s])).code, 0);
        const gone = await d.cli(['job', 'history', 'tick']);
        t.match(gone.stderr, /no such service: tick/);
      },
    );

    await t.test(
      'bad schedules are refused with a clear message (a stack file’s with its line)',
      async (t) => {
        const bad: Array<[string[], RegExp]> = [
          [['--schedule', 'every minute'], /invalid cron expression "every minute": 5 fields/],
          [['--schedule', '61 * * * *'], /invalid cron expression "61 \* \* \* \*": minute/],
          [
            ['--schedule', '* * * * *', '--mode', 'replicated'],
            /a schedule can only be used with mode replicated-job or global-job/,
          ],
          [
            ['--schedule', '* * * * *', '--schedule-timezone', 'Mars/Olympus'],
            /unknown time zone "Mars\/Olympus"/,
          ],
          [['--schedule-history', '3'], /--schedule-history needs --schedule/],
          [['--schedule', '* * * * *', '--schedule-history', '0'], /history must be a whole number ≥ 1/],
        ];
        for (const [args, msg] of bad) {
          const r = await d.cli(['service', 'create', '--name', 'bad', ...args, 'busybox:test', 'true']);
          t.equal(r.code, 125, args.join(' '));
          t.match(r.stderr, msg);
        }
        // service update changes a schedule part by part, or removes it
        await create('later', ['--schedule', '0 0 1 1 *'], ['true']);
        const schedOf = async () =>
          JSON.parse((await d.cli(['service', 'inspect', 'later'])).stdout)[0].spec.schedule;
        t.equal(
          (await d.cli(['service', 'update', '--schedule-timezone', 'Europe/Berlin', 'later'])).code,
          0,
        );
        t.match(await schedOf(), { cron: '0 0 1 1 *', timezone: 'Europe/Berlin', concurrency: 'forbid' });
        const badTz = await d.cli(['service', 'update', '--schedule-timezone', 'Nowhere/X', 'later']);
        t.equal(badTz.code, 125);
        t.match(badTz.stderr, /unknown time zone "Nowhere\/X"/);
        const both = await d.cli(['service', 'update', '--no-schedule', '--schedule-history', '2', 'later']);
        t.match(both.stderr, /--no-schedule cannot be used with --schedule-history/);
        t.equal((await d.cli(['service', 'update', '--no-schedule', 'later'])).code, 0);
        t.equal(await schedOf(), undefined, 'the schedule is gone');
        const noSched = await d.cli(['service', 'update', '--schedule-history', '2', 'later']);
        t.match(noSched.stderr, /--schedule-history needs --schedule/);
        t.equal((await d.cli(['service', 'rm', 'later'])).code, 0);

        const dir = await mkdtemp(join(tmpdir(), `${d.prefix}-stack-`));
        t.teardown(() => rm(dir, { recursive: true, force: true }));
        const file = join(dir, 'stack.yml');
        const stacks: Array<[string, RegExp[]]> = [
          [
            "services:\n  nightly:\n    image: busybox:test\n    x-tsswarm:\n      schedule: '*/5 * * * 99'\n      timezone: Mars/Olympus\n",
            [
              /stack\.yml:5: services\.nightly\.x-tsswarm\.schedule: invalid cron expression "\*\/5 \* \* \* 99": dayOfWeek/,
              /stack\.yml:6: services\.nightly\.x-tsswarm\.timezone: unknown time zone "Mars\/Olympus"/,
            ],
          ],
          [
            "services:\n  web:\n    image: busybox:test\n    deploy:\n      mode: global\n    x-tsswarm:\n      schedule: '* * * * *'\n      concurrency: sometimes\n",
            [
              /stack\.yml:7: services\.web\.x-tsswarm\.schedule: a schedule needs deploy\.mode replicated-job or global-job \(this service is global\)/,
              /stack\.yml:8: services\.web\.x-tsswarm\.concurrency: must be one of "forbid", "allow", "replace"/,
            ],
          ],
        ];
        for (const [text, msgs] of stacks) {
          await writeFile(file, text);
          const r = await d.cli(['deploy', file, 'cron']);
          t.equal(r.code, 125, r.stderr);
          for (const m of msgs) t.match(r.stderr, m);
        }
        t.same(await cliJson(d, ['job', 'ls']), [], 'nothing was created');
      },
    );

    await t.test(
      'the manager down for a while: missed times become one run (run-once) or a skip (skip)',
      async (t) => {
        const dir = await mkdtemp(join(tmpdir(), `${d.prefix}-stack-`));
        t.teardown(() => rm(dir, { recursive: true, force: true }));
        const file = join(dir, 'stack.yml');
        const job = (missed: string) =>
          `    image: busybox:test\n    command: ["true"]\n    x-tsswarm: {schedule: "*/2 * * * * *", missed: ${missed}, history: 100}\n`;
        await writeFile(file, `services:\n  once:\n${job('run-once')}  skip:\n${job('skip')}`);
        const deployed = await d.cli(['deploy', file, 'cron'], { timeoutMs: 60_000 });
        t.equal(deployed.code, 0, deployed.stderr);
        t.match(deployed.stderr, /cron_once scheduled/, 'deploy does not wait for a schedule');
        for (const s of ['cron_once', 'cron_skip'])
          await until(
            `${s} fired twice`,
            () => history(d, s),
            (h) => runsOf(h).length >= 2,
          );
        await d.kill('SIGKILL');
        await sleep(14_000); // more than ON_TIME_MS (10 s): these times are missed
        await d.restart();
        const recovered = await until(
          'runs after the restart',
          async () => [await history(d, 'cron_once'), await history(d, 'cron_skip')] as const,
          ([a, b]) =>
            a.some((r) => r.missed && r.iteration !== undefined) &&
            b.some(missedSkip) &&
            runsOf(b)[0]!.createdAt > Date.now() - 20_000,
          60_000,
        );
        const [once, skip] = recovered;
        const catchUp = once.find((r) => r.missed && r.iteration !== undefined)!;
        t.ok(catchUp.missed!.length >= 4, `one run stands for ${catchUp.missed!.length} missed times`);
        t.match(catchUp.reason, /scheduled times missed while no leader fired them \(missed: run-once\)/);
        assertContiguous(t, covered(once), 2000, 'run-once');
        const skipped = skip.find(missedSkip)!;
        t.match(
          skipped.reason,
          /^missed: \d+ scheduled times passed while no leader fired them \(missed: skip\)$/,
        );
        t.notOk(skipped.iteration, 'no run for them');
        assertContiguous(t, covered(skip), 2000, 'skip');
        t.equal((await d.cli(['stack', 'rm', 'cron'])).code, 0);
      },
    );
  },
);
