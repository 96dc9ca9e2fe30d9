import t from 'tap';
import type { ServiceRecord, TaskRecord } from '../src/api/cluster.js';
import { freePort } from './lib/etcd.js';
import { loadTestImages } from './lib/fixtures.js';
import { startTestDaemon, type TestDaemon } from './lib/harness.js';
import { until } from './lib/wait.js';

async function tasksOf(d: TestDaemon, service: string): Promise<TaskRecord[]> {
  const r = await d.cli(['service', 'ps', '--format', 'json', service]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as TaskRecord[];
}

const running = (ts: TaskRecord[]) =>
  ts.filter((x) => x.desiredState === 'running' && x.status.state === 'running');

t.test(
  'a single-node swarm: services become tasks that run as containers, scale, restart, survive a daemon restart',
  async (t) => {
    const d = await startTestDaemon(t);
    await loadTestImages(d);

    const notYet = await d.cli(['service', 'ls']);
    t.equal(notYet.code, 125);
    t.match(notYet.stderr, /not a swarm manager: run `tsswarm swarm init` first/);

    const [client, peer] = [await freePort(), await freePort()];
    const init = await d.cli([
      'swarm',
      'init',
      '--etcd-client-port',
      String(client),
      '--etcd-peer-port',
      String(peer),
      '--dispatcher-port',
      String(await freePort()),
    ]);
    t.equal(init.code, 0, init.stderr);
    t.match(init.stdout, /Swarm initialized: current node \([0-9a-f]+\) is now a manager/);
    const again = await d.cli(['swarm', 'init', '--etcd-client-port', String(client)]);
    t.not(again.code, 0);
    t.match(again.stderr, /already part of a swarm/);
    const nodes = JSON.parse((await d.cli(['node', 'ls', '--format', 'json'])).stdout);
    t.equal(nodes.length, 1);
    t.match(nodes[0], { role: 'manager', status: 'ready', availability: 'active' });

    const create = await d.cli([
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--restart-delay',
      '100',
      '--limit-memory',
      '32m',
      'busybox:test',
      'sleep',
      '300',
    ]);
    t.equal(create.code, 0, create.stderr);
    let tasks = await until(
      '3 running tasks',
      () => tasksOf(d, 'web'),
      (ts) => running(ts).length === 3,
    );
    t.same(
      running(tasks)
        .map((x) => x.slot)
        .sort(),
      [1, 2, 3],
      'slots 1..3',
    );
    const containers = JSON.parse((await d.cli(['container', 'ps', '--format', 'json'])).stdout) as Array<{
      Id: string;
      Name: string;
      Config: { labels: Record<string, string>; limits: { memory?: number } };
    }>;
    t.equal(containers.length, 3, 'each task is a container on the engine');
    for (const c of containers) {
      t.match(c.Name, /^web\.[123]\.[0-9a-f]{12}$/);
      t.equal(c.Config.limits.memory, 32 * 1024 * 1024, 'the service limits reach the container');
    }
    const ls = JSON.parse((await d.cli(['service', 'ls', '--format', 'json'])).stdout) as Array<
      ServiceRecord & { running: number }
    >;
    t.match(ls[0], { running: 3, spec: { name: 'web', replicas: 3 } });

    await t.test('scale down stops the highest slots', async (t) => {
      t.equal((await d.cli(['service', 'scale', 'web=1'])).code, 0);
      tasks = await until(
        'one running task',
        () => tasksOf(d, 'web'),
        (ts) => running(ts).length === 1 && ts.filter((x) => x.status.state === 'shutdown').length === 2,
        40_000,
      );
      t.same(
        running(tasks).map((x) => x.slot),
        [1],
        'slot 1 is kept',
      );
      const ps = JSON.parse((await d.cli(['container', 'ps', '--format', 'json'])).stdout) as unknown[];
      t.equal(ps.length, 1, 'one container runs');
    });

    await t.test('a task whose container dies is replaced, following the restart policy', async (t) => {
      const victim = running(tasks)[0]!;
      t.equal((await d.cli(['container', 'kill', victim.containerId!])).code, 0);
      tasks = await until(
        'a replacement',
        () => tasksOf(d, 'web'),
        (ts) => running(ts).length === 1 && running(ts)[0]!.id !== victim.id,
      );
      const old = tasks.find((x) => x.id === victim.id)!;
      t.equal(old.status.state, 'failed');
      t.equal(old.status.exitCode, 137);
      t.equal(running(tasks)[0]!.slot, 1, 'the replacement takes the same slot');
    });

    await t.test('a restarted daemon rejoins its swarm and keeps its tasks', async (t) => {
      const before = running(tasks)[0]!;
      await d.kill('SIGKILL');
      await d.restart();
      const after = await until(
        'the swarm back',
        () => tasksOf(d, 'web').catch(() => [] as TaskRecord[]),
        (ts) => running(ts).length === 1,
      );
      t.equal(running(after)[0]!.id, before.id, 'the same task');
      t.equal(running(after)[0]!.containerId, before.containerId, 'in the same container, re-adopted');
    });

    await t.test('bad service specs are refused and change nothing', async (t) => {
      const cases: Array<[string[], RegExp]> = [
        [['service', 'create', 'busybox:test'], /required option '--name <name>' not specified/],
        [['service', 'create', '--name', 'bad name', 'busybox:test'], /invalid service name "bad name"/],
        [['service', 'create', '--name', 'web', 'busybox:test'], /a service named "web" already exists/],
        [
          ['service', 'create', '--name', 'c', '--constraint', 'node.labels.zone=b', 'busybox:test'],
          /invalid constraint "node.labels.zone=b": expected == or !=/,
        ],
        [['service', 'scale', 'ghost=2'], /no such service: ghost/],
        [['service', 'scale', 'web=lots'], /invalid scale "web=lots"/],
      ];
      for (const [args, msg] of cases) {
        const r = await d.cli(args);
        t.not(r.code, 0, args.join(' '));
        t.match(r.stderr, msg);
      }
      const names = (
        JSON.parse((await d.cli(['service', 'ls', '--format', 'json'])).stdout) as ServiceRecord[]
      ).map((s) => s.spec.name);
      t.same(names, ['web']);
    });

    await t.test('removing the service stops and removes its containers', async (t) => {
      t.equal((await d.cli(['service', 'rm', 'web'])).code, 0);
      await until(
        'no containers',
        async () =>
          JSON.parse((await d.cli(['container', 'ps', '-a', '--format', 'json'])).stdout) as unknown[],
        (cs) => cs.length === 0,
        40_000,
      );
      const left = await until(
        'no tasks',
        async () => JSON.parse((await d.cli(['service', 'ls', '--format', 'json'])).stdout) as unknown[],
        (s) => s.length === 0,
      );
      t.same(left, []);
    });
  },
);

t.test('rolling updates follow update_config; a failing update rolls back', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  const init = await d.cli([
    'swarm',
    'init',
    '--etcd-client-port',
    String(await freePort()),
    '--etcd-peer-port',
    String(await freePort()),
    '--dispatcher-port',
    String(await freePort()),
  ]);
  t.equal(init.code, 0, init.stderr);
  const loop = 'trap "exit 0" TERM; while true; do sleep 0.1; done';
  const create = await d.cli([
    'service',
    'create',
    '--name',
    'app',
    '--replicas',
    '3',
    '-e',
    'VERSION=1',
    'busybox:test',
    'sh',
    '-c',
    loop,
  ]);
  t.equal(create.code, 0, create.stderr);
  await until(
    '3 running',
    () => tasksOf(d, 'app'),
    (ts) => running(ts).length === 3,
  );
  const svc = async () => JSON.parse((await d.cli(['service', 'inspect', 'app'])).stdout)[0] as ServiceRecord;

  const same = await d.cli(['service', 'update', 'app']);
  t.equal(same.code, 0);
  t.equal((await svc()).version, 1, 'an update that changes nothing keeps the version');

  const up = await d.cli([
    'service',
    'update',
    '--env-add',
    'VERSION=2',
    '--update-parallelism',
    '1',
    '--update-monitor',
    '300',
    'app',
  ]);
  t.equal(up.code, 0, up.stderr);
  const after = await until(
    'every slot on version 2',
    () => tasksOf(d, 'app'),
    (ts) => running(ts).length === 3 && running(ts).every((x) => x.specVersion === 2),
    60_000,
  );
  t.same(
    running(after)
      .map((x) => x.slot)
      .sort(),
    [1, 2, 3],
  );
  const env = await d.cli([
    'container',
    'exec',
    running(after)[0]!.containerId!,
    'sh',
    '-c',
    'echo $VERSION',
  ]);
  t.equal(env.stdout, '2\n', 'the new tasks run the new spec');
  t.equal((await until('completed', svc, (s) => s.updateStatus?.status === 'completed')).version, 2);

  const bad = await d.cli([
    'service',
    'update',
    '--args',
    "sh -c 'exit 3'",
    '--update-failure-action',
    'rollback',
    '--update-monitor',
    '2000',
    'app',
  ]);
  t.equal(bad.code, 0, bad.stderr);
  const rolled = await until(
    'rolled back',
    svc,
    (s) => s.updateStatus?.status === 'rollback_completed',
    60_000,
  );
  t.equal(rolled.spec.container.env.includes('VERSION=2'), true);
  t.same(rolled.spec.container.args, ['sh', '-c', loop], 'the previous command is back');
  const final = await until(
    'all running the rolled-back version',
    () => tasksOf(d, 'app'),
    (ts) => running(ts).length === 3 && running(ts).every((x) => x.specVersion === rolled.version),
    60_000,
  );
  t.equal(running(final).length, 3);
});
