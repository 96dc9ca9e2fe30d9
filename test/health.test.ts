import t from 'tap';
import type { TaskRecord } from '../src/api/cluster.js';
import { loadTestImages } from './lib/fixtures.js';
import { startTestDaemon, type TestDaemon } from './lib/harness.js';
import { cliJson, initSwarm } from './lib/swarm.js';
import { until } from './lib/wait.js';

interface Inspected {
  State: {
    Status: string;
    Health?: { Status: string; FailingStreak: number; Log: Array<{ ExitCode: number; Output: string }> };
  };
}
const inspect = async (d: TestDaemon, name: string) =>
  JSON.parse((await d.cli(['container', 'inspect', name])).stdout)[0] as Inspected;

t.test(
  'healthchecks: run in the container, healthy then unhealthy; a task runs once healthy and is replaced when unhealthy',
  async (t) => {
    const d = await startTestDaemon(t);
    await loadTestImages(d);

    await t.test('a container: starting → healthy → unhealthy, with the probes’ output', async (t) => {
      const r = await d.cli([
        'container',
        'run',
        '-d',
        '--name',
        'hc',
        '--health-cmd',
        'test -f /tmp/ok && echo fine',
        '--health-interval',
        '200ms',
        '--health-retries',
        '2',
        'busybox:test',
        'sh',
        '-c',
        'touch /tmp/ok; sleep 5; rm /tmp/ok; sleep 60',
      ]);
      t.equal(r.code, 0, r.stderr);
      const healthy = await until(
        'healthy',
        () => inspect(d, 'hc'),
        (x) => x.State.Health?.Status === 'healthy',
        10_000,
      );
      t.match(healthy.State.Health!.Log.at(-1), { ExitCode: 0, Output: 'fine\n' });
      const ps = await d.cli(['container', 'ps']);
      t.match(ps.stdout, /Up since \S+ \(healthy\)/);
      const sick = await until(
        'unhealthy',
        () => inspect(d, 'hc'),
        (x) => x.State.Health?.Status === 'unhealthy',
        10_000,
      );
      t.ok(sick.State.Health!.FailingStreak >= 2);
      t.equal(sick.State.Health!.Log.at(-1)!.ExitCode, 1);
      t.equal(sick.State.Status, 'running', 'an unhealthy container keeps running (Docker does too)');

      const slow = await d.cli([
        'container',
        'run',
        '-d',
        '--name',
        'slow',
        '--health-cmd',
        'sleep 5',
        '--health-timeout',
        '300ms',
        '--health-interval',
        '200ms',
        '--health-retries',
        '1',
        'busybox:test',
        'sleep',
        '60',
      ]);
      t.equal(slow.code, 0, slow.stderr);
      const timedOut = await until(
        'a probe timed out',
        () => inspect(d, 'slow'),
        (x) => x.State.Health?.Status === 'unhealthy',
        15_000,
      );
      t.match(timedOut.State.Health!.Log.at(-1), { ExitCode: -1, Output: /exceeded timeout \(300ms\)/ });

      t.equal((await d.cli(['container', 'rm', '-f', 'hc', 'slow'])).code, 0);
      for (const [args, msg] of [
        [['--health-interval', 'soon'], /--health-interval must be a duration/],
        [['--health-retries', '0'], /--health-retries must be a whole number ≥ 1/],
        [
          ['--no-healthcheck', '--health-cmd', 'true'],
          /--no-healthcheck conflicts with the --health-\* options/,
        ],
      ] as const) {
        const bad = await d.cli(['container', 'run', '-d', ...args, 'busybox:test', 'true']);
        t.equal(bad.code, 125, args.join(' '));
        t.match(bad.stderr, msg);
      }
    });

    await t.test('a service: its task runs once healthy; unhealthy, it fails and is replaced', async (t) => {
      await initSwarm(t, d);
      const create = await d.cli([
        'service',
        'create',
        '--name',
        'flaky',
        '--restart-delay',
        '100',
        '--health-cmd',
        'test -f /tmp/ok',
        '--health-interval',
        '200ms',
        '--health-retries',
        '2',
        '--health-start-period',
        '5s',
        '--health-start-interval',
        '200ms',
        'busybox:test',
        'sh',
        '-c',
        'sleep 1; touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 300',
      ]);
      t.equal(create.code, 0, create.stderr);
      const starting = await until(
        'the first task started, waiting for its healthcheck',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'flaky']),
        (ts) => ts.some((x) => x.status.state === 'starting' && x.containerId !== undefined),
        20_000,
      );
      t.match(starting.find((x) => x.status.state === 'starting')!.status, {
        message: 'waiting for the healthcheck',
      });
      await until(
        'running once healthy',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'flaky']),
        (ts) => ts.some((x) => x.status.state === 'running'),
        20_000,
      );
      const replaced = await until(
        'the unhealthy task failed and a new one started',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'flaky']),
        (ts) =>
          ts.some((x) => x.status.state === 'failed') &&
          ts.some((x) => x.desiredState === 'running' && x.status.state !== 'failed'),
        30_000,
      );
      const failed = replaced.find((x) => x.status.state === 'failed')!;
      t.match(failed.status, { err: /^unhealthy container/, message: 'unhealthy' });
      const first = await until(
        'its container stopped',
        async () =>
          JSON.parse((await d.cli(['container', 'inspect', failed.containerId!])).stdout)[0] as Inspected,
        (x) => x.State.Status === 'exited',
        20_000,
      );
      t.equal(first.State.Health, undefined, 'no health once stopped');

      // never healthy: never running
      const never = await d.cli([
        'service',
        'create',
        '--name',
        'never',
        '--restart-delay',
        '100',
        '--restart-max-attempts',
        '1',
        '--health-cmd',
        'false',
        '--health-interval',
        '200ms',
        '--health-retries',
        '1',
        'busybox:test',
        'sleep',
        '300',
      ]);
      t.equal(never.code, 0, never.stderr);
      const ts = await until(
        'both attempts failed unhealthy',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'never']),
        (x) => x.filter((y) => y.status.state === 'failed').length === 2,
        30_000,
      );
      t.notOk(
        ts.some((x) => x.status.state === 'running'),
        'no task ever counted as running',
      );
      t.match(
        ts.map((x) => x.status.err),
        [/^unhealthy container/, /^unhealthy container/],
      );
      t.equal((await d.cli(['service', 'update', '--health-retries', '5', 'never'])).code, 0);
      const spec = JSON.parse((await d.cli(['service', 'inspect', 'never'])).stdout)[0].spec;
      t.match(
        spec.container.healthcheck,
        { test: ['CMD-SHELL', 'false'], retries: 5, intervalMs: 200 },
        'update changes one part',
      );
      t.equal((await d.cli(['service', 'update', '--no-healthcheck', 'never'])).code, 0);
      const off = JSON.parse((await d.cli(['service', 'inspect', 'never'])).stdout)[0].spec;
      t.same(off.container.healthcheck, { test: ['NONE'] });
      t.equal((await d.cli(['service', 'rm', 'flaky', 'never'])).code, 0);
    });
  },
);
