import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { NetworkRecord, ServiceRecord, TaskRecord } from '../src/api/cluster.js';
import type { Instance } from '../src/discovery/instances.js';
import type { NetworkDetails } from '../src/manager/networks.js';
import { loadTestImages } from './lib/fixtures.js';
import { startTestDaemon } from './lib/harness.js';
import { cliJson, initSwarm, runningTasks } from './lib/swarm.js';
import { until } from './lib/wait.js';

t.test('networks: pools, subnets and gateways; task and VIP addresses; stacks; bad specs', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  const badPool = await d.cli(['swarm', 'init', '--default-addr-pool', '10.77.0.5/22']);
  t.equal(badPool.code, 125);
  t.match(badPool.stderr, /invalid subnet "10\.77\.0\.5\/22": did you mean 10\.77\.0\.0\/22\?/);
  await initSwarm(t, d, ['--default-addr-pool', '10.77.0.0/22', '--default-addr-pool-mask-length', '24']);
  const net = async (args: string[]) => d.cli(['network', 'create', ...args]);
  const inspect = async (name: string) =>
    (await cliJsonRaw<NetworkDetails[]>(['network', 'inspect', name]))[0]!;
  const cliJsonRaw = async <T>(args: string[]) => {
    const r = await d.cli(args);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as T;
  };

  await t.test('subnets come from the pool in order; bad and overlapping specs are refused', async (t) => {
    t.equal((await net(['front'])).code, 0);
    t.equal((await net(['--label', 'tier=back', 'back'])).code, 0);
    t.match(await inspect('front'), {
      driver: 'overlay',
      scope: 'swarm',
      subnet: '10.77.0.0/24',
      gateway: '10.77.0.1',
      vni: 4097,
    });
    t.match(await inspect('back'), { subnet: '10.77.1.0/24', vni: 4098, labels: { tier: 'back' } });
    t.equal((await net(['--driver', 'bridge', 'local'])).code, 0);
    t.match(await inspect('local'), { driver: 'bridge', scope: 'local', subnet: /^(172|192\.168)\./ });
    t.equal(
      (await net(['--subnet', '10.99.0.0/29', '--gateway', '10.99.0.1', '--internal', 'tiny'])).code,
      0,
    );
    t.match(await inspect('tiny'), { subnet: '10.99.0.0/29', gateway: '10.99.0.1', internal: true });
    const bad: Array<[string[], RegExp]> = [
      [['front'], /network with name front already exists/],
      [['ingress'], /the name ingress is the routing mesh's network/],
      [
        ['--subnet', '10.77.1.128/25', 'x1'],
        /subnet 10\.77\.1\.128\/25 overlaps network back \(10\.77\.1\.0\/24\)/,
      ],
      [
        ['--subnet', '127.0.0.0/24', 'x2'],
        /subnet 127\.0\.0\.0\/24 overlaps an address of this host on lo \(127\.0\.0\.1\/32\)/,
      ],
      [
        ['--subnet', '10.98.0.7/24', 'x3'],
        /invalid subnet "10\.98\.0\.7\/24": did you mean 10\.98\.0\.0\/24\?/,
      ],
      [
        ['--subnet', '10.98.0.0/24', '--gateway', '10.97.0.1', 'x4'],
        /gateway 10\.97\.0\.1 is not inside subnet 10\.98\.0\.0\/24/,
      ],
      [['--gateway', '10.98.0.1', 'x5'], /--gateway needs --subnet/],
      [['bad name'], /invalid network name "bad name"/],
      [['--driver', 'macvlan', 'x6'], /Allowed choices are overlay, bridge/],
    ];
    for (const [args, msg] of bad) {
      const r = await net(args);
      t.equal(r.code, 125, args.join(' '));
      t.match(r.stderr, msg);
    }
    t.equal((await net(['third'])).code, 0);
    t.equal((await net(['fourth'])).code, 0);
    const full = await net(['fifth']);
    t.equal(full.code, 125);
    t.match(full.stderr, /the address pools are exhausted: no free \/24 in 10\.77\.0\.0\/22/);
    t.equal((await d.cli(['network', 'rm', 'third', 'fourth'])).code, 0);
    const ls = await cliJson<NetworkRecord[]>(d, ['network', 'ls']);
    t.same(
      ls.map((n) => n.name),
      ['back', 'front', 'local', 'tiny'],
    );
  });

  await t.test(
    'tasks get an address on each network of their service, the service a VIP; a full subnet is a clear error',
    async (t) => {
      const c = await d.cli([
        'service',
        'create',
        '--name',
        'web',
        '--replicas',
        '3',
        '--network',
        'front',
        '--network',
        'name=back,alias=api',
        'busybox:test',
        'sleep',
        '300',
      ]);
      t.equal(c.code, 0, c.stderr);
      const tasks = await until(
        '3 running',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'web']),
        (x) => runningTasks(x).length === 3,
      );
      const on = (n: string) => tasks.map((x) => x.attachments?.find((a) => a.network === n)?.address);
      t.ok(
        on('front').every((a) => a?.startsWith('10.77.0.') && a.endsWith('/24')),
        'one address on front each',
      );
      t.ok(
        on('back').every((a) => a?.startsWith('10.77.1.')),
        'one on back each',
      );
      t.equal(new Set(on('front')).size, 3, 'distinct');
      t.notOk(on('front').includes('10.77.0.1/24'), 'never the gateway');
      const found = await cliJson<Instance[]>(d, ['lookup', 'web']);
      t.same(
        found.map((i) => `${i.address}/24`).sort(),
        on('front').sort(),
        'lookup: the healthy instances at their first network address',
      );
      t.ok(found.every((i) => i.healthy && i.network === 'front'));
      const svc = (await cliJsonRaw<ServiceRecord[]>(['service', 'inspect', 'web']))[0]!;
      t.same(svc.spec.networks, [{ target: 'front' }, { target: 'back', aliases: ['api'] }]);
      const vips = await until(
        'a VIP on each network',
        async () => (await cliJsonRaw<ServiceRecord[]>(['service', 'inspect', 'web']))[0]!.virtualIps ?? [],
        (v) => v.length === 2,
      );
      t.same(
        vips.map((v) => v.network),
        ['front', 'back'],
      );
      const front = await inspect('front');
      t.same(front.services, [{ name: 'web', vip: vips[0]!.address }]);
      t.equal(front.tasks.length, 3);
      const inUse = await d.cli(['network', 'rm', 'front']);
      t.equal(inUse.code, 125);
      t.match(inUse.stderr, /network front is in use by service web/);
      const missing = await d.cli([
        'service',
        'create',
        '--name',
        'lost',
        '--network',
        'nowhere',
        'busybox:test',
        'true',
      ]);
      t.match(missing.stderr, /network nowhere not found/);

      // 10.99.0.0/29 has 6 addresses: the gateway, the VIP and four tasks
      t.equal(
        (
          await d.cli([
            'service',
            'create',
            '--name',
            'crowd',
            '--replicas',
            '5',
            '--network',
            'tiny',
            'busybox:test',
            'sleep',
            '300',
          ])
        ).code,
        0,
      );
      const crowd = await until(
        'one task placed, one waiting for an address',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'crowd']),
        (x) =>
          runningTasks(x).length === 4 &&
          x.some(
            (y) =>
              y.status.state === 'pending' &&
              y.status.message === 'no free address left in subnet 10.99.0.0/29 of network tiny',
          ),
      );
      t.equal(crowd.length, 5, 'no task churns');
      t.same(
        runningTasks(crowd)
          .map((x) => x.attachments![0]!.address)
          .sort(),
        ['10.99.0.3/29', '10.99.0.4/29', '10.99.0.5/29', '10.99.0.6/29'],
      );
      t.equal((await d.cli(['service', 'rm', 'web', 'crowd'])).code, 0);
      t.equal((await d.cli(['network', 'rm', 'front', 'back', 'local', 'tiny'])).code, 0);
    },
  );

  await t.test(
    'a stack: its default and declared networks are created, external ones must exist, rm removes its own',
    async (t) => {
      const dir = await mkdtemp(join(tmpdir(), `${d.prefix}-stack-`));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      const file = join(dir, 'stack.yml');
      await writeFile(
        file,
        [
          'services:',
          '  web:',
          '    image: busybox:test',
          '    command: ["sleep", "300"]',
          '    networks: [front, shared]',
          '  worker:',
          '    image: busybox:test',
          '    command: ["sleep", "300"]',
          'networks:',
          '  front:',
          '    ipam: {config: [{subnet: 10.66.0.0/24}]}',
          '  shared:',
          '    external: true',
          '',
        ].join('\n'),
      );
      const noShared = await d.cli(['deploy', file, 'app']);
      t.equal(noShared.code, 125);
      t.match(noShared.stderr, /network "shared" is declared as external, but could not be found/);
      t.same(await cliJson<NetworkRecord[]>(d, ['network', 'ls']), [], 'nothing was created');
      t.equal((await net(['shared'])).code, 0);
      const ok = await d.cli(['deploy', file, 'app'], { timeoutMs: 120_000 });
      t.equal(ok.code, 0, ok.stderr);
      t.match(ok.stdout, /Creating network app_front\nCreating network app_default\n/);
      t.match(await inspect('app_front'), {
        subnet: '10.66.0.0/24',
        labels: { 'org.tsswarm.stack.namespace': 'app' },
      });
      const worker = await until(
        'worker on app_default',
        () => cliJson<TaskRecord[]>(d, ['service', 'ps', 'app_worker']),
        (x) => runningTasks(x).length === 1,
      );
      t.equal(worker[0]!.attachments?.[0]?.network, 'app_default');
      t.equal((await d.cli(['stack', 'rm', 'app'])).code, 0);
      t.same(
        (await cliJson<NetworkRecord[]>(d, ['network', 'ls'])).map((n) => n.name),
        ['shared'],
        'the external network stays',
      );
      t.equal((await d.cli(['network', 'rm', 'shared'])).code, 0);
    },
  );
});
