import t from 'tap';
import type { ServiceRecord, TaskRecord } from '../src/api/cluster.js';
import { freePort } from './lib/etcd.js';
import { loadTestImages } from './lib/fixtures.js';
import { startTestDaemon, type TestDaemon } from './lib/harness.js';
import { startSwarmDaemon } from './lib/swarm.js';
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
  const d = await startSwarmDaemon(t);
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

t.test(
  'jobs run to completion; placement preferences; host-mode ports keep tasks apart; task history is limited',
  async (t) => {
    const d = await startSwarmDaemon(t);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const inspect = async (name: string) =>
      JSON.parse((await d.cli(['service', 'inspect', name])).stdout)[0] as ServiceRecord;
    const lsRow = async (name: string) =>
      (await d.cli(['service', 'ls'])).stdout.split('\n').find((l) => l.split(/\s+/)[1] === name) ?? '';
    const complete = (ts: TaskRecord[]) => ts.filter((x) => x.status.state === 'complete');

    await t.test(
      'a replicated job runs its completions, max-concurrent at once, and none again',
      async (t) => {
        const r = await d.cli([
          'service',
          'create',
          '--name',
          'batch',
          '--mode',
          'replicated-job',
          '--replicas',
          '3',
          '--max-concurrent',
          '2',
          'busybox:test',
          'true',
        ]);
        t.equal(r.code, 0, r.stderr);
        await until(
          '3 completions',
          () => tasksOf(d, 'batch'),
          (ts) => complete(ts).length === 3,
          60_000,
        );
        await sleep(1500); // a restart, if there were one, would show by now
        const tasks = await tasksOf(d, 'batch');
        t.equal(tasks.length, 3, 'one task per completion: nothing was restarted');
        t.same(tasks.map((x) => x.slot).sort(), [1, 2, 3]);
        for (const x of tasks)
          t.match(x, { desiredState: 'running', status: { state: 'complete', exitCode: 0 } });
        const third = tasks.find((x) => x.slot === 3)!;
        const firstEnd = Math.min(...tasks.filter((x) => x.slot !== 3).map((x) => x.status.timestamp));
        t.ok(third.createdAt >= firstEnd, 'slot 3 started only once one of the first two had ended');
        t.match(await lsRow('batch'), /\sreplicated-job\s+0\/0 \(3\/3 completed\)\s/);
        const ls = JSON.parse((await d.cli(['service', 'ls', '--format', 'json'])).stdout) as Array<
          ServiceRecord & { completed?: number; total?: number }
        >;
        t.match(
          ls.find((s) => s.spec.name === 'batch'),
          { completed: 3, total: 3, running: 0, spec: { restartPolicy: { condition: 'on-failure' } } },
        );
        const scale = await d.cli(['service', 'scale', 'batch=5']);
        t.equal(scale.code, 125, 'a job does not scale');
        t.match(scale.stderr, /batch is replicated-job/);
      },
    );

    await t.test('a failing job follows the restart policy, then stops', async (t) => {
      const r = await d.cli([
        'service',
        'create',
        '--name',
        'failing',
        '--mode',
        'replicated-job',
        '--restart-delay',
        '100',
        '--restart-max-attempts',
        '2',
        'busybox:test',
        'sh',
        '-c',
        'exit 3',
      ]);
      t.equal(r.code, 0, r.stderr);
      await until(
        '3 failures',
        () => tasksOf(d, 'failing'),
        (ts) => ts.filter((x) => x.status.state === 'failed').length === 3,
        60_000,
      );
      await sleep(1500);
      const tasks = await tasksOf(d, 'failing');
      t.equal(tasks.length, 3, 'the first run and 2 restarts (on-failure is the default for jobs)');
      t.ok(tasks.every((x) => x.status.state === 'failed' && x.status.exitCode === 3));
      t.equal(Math.max(...tasks.map((x) => x.restarts?.length ?? 0)), 2);
      t.match(await lsRow('failing'), /\s0\/0 \(0\/1 completed\)\s/);
    });

    await t.test('a global job runs once on every node', async (t) => {
      const r = await d.cli([
        'service',
        'create',
        '--name',
        'everywhere',
        '--mode',
        'global-job',
        'busybox:test',
        'true',
      ]);
      t.equal(r.code, 0, r.stderr);
      await until(
        'a completion',
        () => tasksOf(d, 'everywhere'),
        (ts) => complete(ts).length === 1,
      );
      await sleep(1000);
      const tasks = await tasksOf(d, 'everywhere');
      t.equal(tasks.length, 1, 'one node, one run, not restarted');
      const [node] = JSON.parse((await d.cli(['node', 'ls', '--format', 'json'])).stdout) as Array<{
        id: string;
      }>;
      t.equal(tasks[0]!.nodeId, node!.id);
      t.match(await lsRow('everywhere'), /\sglobal-job\s+0\/0 \(1\/1 completed\)\s/);
      t.equal((await d.cli(['service', 'scale', 'everywhere=2'])).code, 125);
    });

    await t.test('placement preferences: set, added, removed', async (t) => {
      const r = await d.cli([
        'service',
        'create',
        '--name',
        'spread',
        '--replicas',
        '2',
        '--placement-pref',
        'spread=node.labels.zone',
        'busybox:test',
        'sleep',
        '300',
      ]);
      t.equal(r.code, 0, r.stderr);
      t.same((await inspect('spread')).spec.preferences, [{ spread: 'node.labels.zone' }]);
      await until(
        '2 running',
        () => tasksOf(d, 'spread'),
        (ts) => running(ts).length === 2,
      );
      const u = await d.cli([
        'service',
        'update',
        '--placement-pref-add',
        'spread=node.labels.rack',
        '--placement-pref-rm',
        'spread=node.labels.zone',
        'spread',
      ]);
      t.equal(u.code, 0, u.stderr);
      t.same((await inspect('spread')).spec.preferences, [{ spread: 'node.labels.rack' }]);
      const bad = await d.cli(['service', 'update', '--placement-pref-add', 'node.labels.rack', 'spread']);
      t.equal(bad.code, 125);
      t.match(
        bad.stderr,
        /invalid placement preference "node.labels.rack": expected spread=node.labels.<name>/,
      );
      t.equal((await d.cli(['service', 'rm', 'spread'])).code, 0);
    });

    await t.test('host-mode published ports: a second task on the port stays pending', async (t) => {
      const loop = ['busybox:test', 'sleep', '300'];
      let r = await d.cli([
        'service',
        'create',
        '--name',
        'web1',
        '--publish',
        'published=18080,target=80,mode=host',
        ...loop,
      ]);
      t.equal(r.code, 0, r.stderr);
      await until(
        'web1 running',
        () => tasksOf(d, 'web1'),
        (ts) => running(ts).length === 1,
      );
      const web1 = await inspect('web1');
      t.same(web1.spec.endpoint, {
        ports: [{ target: 80, published: 18080, protocol: 'tcp', mode: 'host' }],
      });
      t.same((await tasksOf(d, 'web1'))[0]!.endpoint, web1.spec.endpoint, 'the task records its ports');
      t.match(await lsRow('web1'), /18080->80\/tcp \(host\)/);

      r = await d.cli([
        'service',
        'create',
        '--name',
        'web2',
        '-p',
        'mode=host,published=18080,target=8080',
        ...loop,
      ]);
      t.equal(r.code, 0, r.stderr);
      r = await d.cli([
        'service',
        'create',
        '--name',
        'web3',
        '-p',
        'published=18080,target=80,protocol=udp,mode=host',
        '-p',
        '18081:80',
        ...loop,
      ]);
      t.equal(r.code, 0, r.stderr);
      await until(
        'web3 (udp, and an ingress port) running',
        () => tasksOf(d, 'web3'),
        (ts) => running(ts).length === 1,
      );
      const pending = await until(
        "web2 pending with the scheduler's reason",
        () => tasksOf(d, 'web2'),
        (ts) => ts.length === 1 && /host-mode port already in use/.test(ts[0]!.status.message ?? ''),
      );
      t.equal(pending[0]!.status.state, 'pending');
      t.equal(pending[0]!.status.message, 'no suitable node (host-mode port already in use on 1 node)');
      const ps = await d.cli(['service', 'ps', 'web2']);
      t.match(ps.stdout, /pending .*no suitable node \(host-mode port already in use on 1 node\)/);

      // web1 stops publishing the port: web2 gets it
      r = await d.cli(['service', 'update', '--publish-rm', '80', 'web1']);
      t.equal(r.code, 0, r.stderr);
      t.equal((await inspect('web1')).spec.endpoint, undefined);
      await until(
        'web2 running',
        () => tasksOf(d, 'web2'),
        (ts) => running(ts).length === 1,
        60_000,
      );
      r = await d.cli(['service', 'update', '--publish-add', 'published=18080,target=80,mode=host', 'web1']);
      t.equal(r.code, 0, r.stderr);
      const back = await until(
        'web1 waiting for the port again',
        () => tasksOf(d, 'web1'),
        (ts) =>
          ts.some((x) => x.specVersion === 3 && /host-mode port already in use/.test(x.status.message ?? '')),
        60_000,
      );
      t.ok(back.length > 0);
      t.equal((await d.cli(['service', 'rm', 'web1', 'web2', 'web3'])).code, 0);
    });

    await t.test('bad input is refused (invalid_argument) and changes nothing', async (t) => {
      const before = (await d.cli(['service', 'ls', '--format', 'json'])).stdout;
      const cases: Array<[string[], RegExp]> = [
        [['--publish', 'abc'], /invalid publish "abc": the target port must be a number/],
        [['--publish', '0:80'], /invalid publish "0:80": the published port must be a number .*1 and 65535/],
        [['--publish', '70000:80'], /the published port must be a number .*1 and 65535/],
        [['--publish', '8080:80/xyz'], /protocol must be tcp, udp or sctp/],
        [['--publish', 'published=8080,target=80,mode=bridge'], /mode must be ingress or host/],
        [['--publish', '8080:80', '--publish', '8080:81'], /port 8080\/tcp is published twice/],
        [['--placement-pref', 'spread=zone'], /invalid spread "zone": expected node.labels.<name>/],
        [['--max-concurrent', '2'], /max concurrent can only be used with mode replicated-job/],
        [
          ['--mode', 'global-job', '--restart-condition', 'any'],
          /restart condition "any" cannot be used with mode global-job/,
        ],
      ];
      for (const [args, msg] of cases) {
        const r = await d.cli(['service', 'create', '--name', 'bad', ...args, 'busybox:test']);
        t.equal(r.code, 125, args.join(' '));
        t.match(r.stderr, msg, args.join(' '));
      }
      // the API refuses what the CLI would have caught, with the same code
      const api = await d.client
        .request('POST', '/services', {
          body: { name: 'bad', image: 'busybox:test', endpoint: { ports: [{ target: 80, published: 0 }] } },
        })
        .then(
          () => undefined,
          (e: { code?: string; message?: string }) => e,
        );
      t.match(api, { code: 'invalid_argument', message: /invalid published port 0: expected 1-65535/ });
      t.equal((await d.cli(['service', 'ls', '--format', 'json'])).stdout, before, 'nothing changed');
    });

    await t.test('a slot keeps at most 5 ended tasks (the default history limit)', async (t) => {
      const r = await d.cli([
        'service',
        'create',
        '--name',
        'crashy',
        '--restart-delay',
        '50',
        '--restart-max-attempts',
        '8',
        'busybox:test',
        'sh',
        '-c',
        'exit 1',
      ]);
      t.equal(r.code, 0, r.stderr);
      let most = 0;
      const final = await until(
        'the restart policy given up after 8 restarts',
        async () => {
          const ts = await tasksOf(d, 'crashy');
          most = Math.max(most, ts.filter((x) => x.status.state === 'failed').length);
          return ts;
        },
        (ts) => ts.length === 5 && ts.some((x) => x.status.state === 'failed' && x.restarts?.length === 8),
        90_000,
      );
      t.ok(
        final.every((x) => x.slot === 1 && x.status.state === 'failed'),
        '5 ended tasks of slot 1 kept',
      );
      t.ok(most <= 6, `never more than the limit and the one just ended (saw ${most})`);
      await sleep(1000);
      t.equal((await tasksOf(d, 'crashy')).length, 5, '9 runs, the oldest 4 deleted');
      const containers = await until(
        "the deleted tasks' containers removed from the node",
        async () =>
          (
            JSON.parse((await d.cli(['container', 'ps', '-a', '--format', 'json'])).stdout) as Array<{
              Name: string;
            }>
          ).filter((c) => c.Name.startsWith('crashy.')),
        (cs) => cs.length === 5,
      );
      t.equal(containers.length, 5);
    });

    await t.test('every listing answers --format json', async (t) => {
      for (const args of [
        ['node', 'ls'],
        ['service', 'ls'],
        ['service', 'ps', 'batch'],
        ['stack', 'ls'],
        ['container', 'ps', '-a'],
        ['container', 'ls'],
        ['image', 'ls'],
        ['container', 'stats', '--no-stream'],
      ]) {
        const r = await d.cli([...args, '--format', 'json']);
        t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        t.ok(Array.isArray(JSON.parse(r.stdout)), `${args.join(' ')} prints a JSON array`);
      }
    });
  },
);

t.test(
  "service logs: every task's lines with their prefix, stderr on stderr, --tail, --raw, --no-task-ids, -t, -f",
  async (t) => {
    const d = await startSwarmDaemon(t);
    const lines = (s: string) => s.split('\n').filter(Boolean);
    const create = await d.cli([
      'service',
      'create',
      '--name',
      'talk',
      '--replicas',
      '2',
      'busybox:test',
      'sh',
      '-c',
      // the pause keeps the two records in this order (stdout and stderr are separate pipes)
      'echo hello-$HOSTNAME; sleep 0.2; echo oops >&2; sleep 600',
    ]);
    t.equal(create.code, 0, create.stderr);
    const tasks = running(
      await until(
        '2 running',
        () => tasksOf(d, 'talk'),
        (ts) => running(ts).length === 2,
      ),
    );
    const [node] = JSON.parse((await d.cli(['node', 'ls', '--format', 'json'])).stdout) as Array<{
      hostname: string;
    }>;
    const prefix = (x: TaskRecord, ids = true) =>
      `talk.${x.slot}${ids ? `.${x.id.slice(0, 12)}` : ''}@${node!.hostname}    | `;

    const all = await until(
      'both tasks logged',
      () => d.cli(['service', 'logs', 'talk']),
      (r) => r.code === 0 && lines(r.stdout).length === 2 && lines(r.stderr).length === 2,
    );
    for (const x of tasks) {
      // a container's hostname (and $HOSTNAME) is its id's first 12 characters
      t.ok(
        lines(all.stdout).includes(`${prefix(x)}hello-${x.containerId!.slice(0, 12)}`),
        `stdout has slot ${x.slot}'s line with its prefix`,
      );
      t.ok(lines(all.stderr).includes(`${prefix(x)}oops`), `stderr has slot ${x.slot}'s error line`);
    }
    t.notMatch(all.stdout, /oops/, 'stderr lines are not on stdout');

    const tail = await d.cli(['service', 'logs', '--tail', '1', 'talk']);
    t.equal(tail.code, 0, tail.stderr);
    t.equal(tail.stdout, '', '--tail 1: the last line of each task only');
    t.same(lines(tail.stderr).sort(), tasks.map((x) => `${prefix(x)}oops`).sort());

    const raw = await d.cli(['service', 'logs', '--raw', 'talk']);
    t.same(lines(raw.stdout).sort(), tasks.map((x) => `hello-${x.containerId!.slice(0, 12)}`).sort());
    t.equal(raw.stderr, 'oops\noops\n', '--raw: no prefix');

    const noIds = await d.cli(['service', 'logs', '--no-task-ids', 'talk']);
    t.same(lines(noIds.stderr).sort(), tasks.map((x) => `${prefix(x, false)}oops`).sort());

    const ts = await d.cli(['service', 'logs', '-t', 'talk']);
    for (const l of [...lines(ts.stdout), ...lines(ts.stderr)])
      t.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z talk\.[12]\.[0-9a-f]{12}@\S+ {4}\| /);

    const one = await d.cli(['service', 'logs', tasks[0]!.id]);
    t.equal(one.code, 0, one.stderr);
    t.equal(one.stderr, `${prefix(tasks[0]!)}oops\n`, 'a task id: that task only');

    const future = await d.cli([
      'service',
      'logs',
      '--since',
      String(Math.floor(Date.now() / 1000) + 3600),
      'talk',
    ]);
    t.equal(future.stdout + future.stderr, '', '--since a later time: nothing');

    const ghost = await d.cli(['service', 'logs', 'ghost']);
    t.equal(ghost.code, 125);
    t.match(ghost.stderr, /no such service or task: ghost/);

    const help = await d.cli(['service', 'logs', '--help']);
    t.match(help.stdout, /--follow/);

    await t.test('-f streams the lines written later', async (t) => {
      const r = await d.cli([
        'service',
        'create',
        '--name',
        'ticker',
        'busybox:test',
        'sh',
        '-c',
        'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.5; done',
      ]);
      t.equal(r.code, 0, r.stderr);
      const ticks = (s: string) => lines(s).map((l) => Number(/tick-(\d+)$/.exec(l)?.[1] ?? 0));
      const before = await until(
        'a first tick',
        () => d.cli(['service', 'logs', '--raw', 'ticker']),
        (x) => ticks(x.stdout).length > 0,
      );
      const seen = Math.max(...ticks(before.stdout));
      // follow for 4 s, then the CLI is killed (as Ctrl-C would end it)
      const follow = await d.cli(['service', 'logs', '-f', 'ticker'], { timeoutMs: 4000 });
      const got = ticks(follow.stdout);
      t.ok(got.length > 0 && got.every((n) => n > 0), 'every line is a prefixed tick');
      t.ok(
        Math.max(...got) >= seen + 3,
        `lines written while following arrived (${seen} → ${Math.max(...got)})`,
      );
      t.match(follow.stdout, /^ticker\.1\.[0-9a-f]{12}@\S+ {4}\| tick-1$/m);
      t.equal((await d.cli(['service', 'ls'])).code, 0, 'the daemon is fine after the follower went away');
    });
  },
);
