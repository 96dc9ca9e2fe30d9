import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { NodeRecord, TaskRecord } from '../src/api/cluster.js';
import { loadImagesOn, startHosts } from './lib/hosts.js';
import { cliJson, joinArgs, runningTasks } from './lib/swarm.js';
import { until } from './lib/wait.js';

const json = cliJson;
const running = runningTasks;
const perNode = (ts: TaskRecord[]) => {
  const m: Record<string, number> = {};
  for (const x of running(ts)) m[x.nodeId!] = (m[x.nodeId!] ?? 0) + 1;
  return m;
};

t.test(
  'four hosts (a manager, three workers): workers join over TLS, tasks spread, a dead host is replaced, its return leaves no duplicates',
  async (t) => {
    const hosts = await startHosts(t, { count: 4 });
    const [m, w2, w3, w4] = await Promise.all([1, 2, 3, 4].map((i) => hosts.startDaemon(i)));
    await Promise.all([m!, w2!, w3!, w4!].map((h) => loadImagesOn(h)));

    const init = await m!.cli(['swarm', 'init', '--advertise-addr', hosts.address(1)]);
    t.equal(init.code, 0, init.stderr);
    const token = (await m!.cli(['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
    t.match(token, /^SWMTKN-1-[0-9a-z]+-[0-9a-z]+$/);

    const wrong = await w2!.cli([
      'swarm',
      'join',
      '--token',
      `${token.slice(0, -4)}zzzz`,
      `${hosts.address(1)}:2377`,
    ]);
    t.not(wrong.code, 0, 'a bad token is refused');
    t.match(wrong.stderr, /not valid for this cluster/);

    for (const [i, w] of [
      [2, w2!],
      [3, w3!],
      [4, w4!],
    ] as const) {
      const j = await w.cli(joinArgs(hosts, i, token));
      t.equal(j.code, 0, j.stderr);
    }
    const nodes = await until(
      '4 ready nodes',
      () => json<NodeRecord[]>(m!, ['node', 'ls']),
      (n) => n.filter((x) => x.status === 'ready').length === 4,
    );
    t.same(nodes.map((n) => n.role).sort(), ['manager', 'worker', 'worker', 'worker']);
    const ids = Object.fromEntries(nodes.map((n) => [n.address, n.id]));
    const workerRefused = await w2!.cli(['service', 'ls']);
    t.match(workerRefused.stderr, /this node is a worker/, 'workers have no cluster API');

    t.equal(
      (
        await m!.cli([
          'service',
          'create',
          '--name',
          'web',
          '--replicas',
          '6',
          'busybox:test',
          'sleep',
          '600',
        ])
      ).code,
      0,
    );
    let tasks = await until(
      '6 running',
      () => json<TaskRecord[]>(m!, ['service', 'ps', 'web']),
      (ts) => running(ts).length === 6,
      60_000,
    );
    t.same(
      Object.values(perNode(tasks)).sort(),
      [1, 1, 2, 2],
      'spread: six tasks over four nodes, one or two each',
    );

    t.equal(
      (
        await m!.cli([
          'service',
          'create',
          '--name',
          'only-workers',
          '--replicas',
          '2',
          '--constraint',
          'node.role==worker',
          'busybox:test',
          'sleep',
          '600',
        ])
      ).code,
      0,
    );
    const constrained = await until(
      '2 running',
      () => json<TaskRecord[]>(m!, ['service', 'ps', 'only-workers']),
      (ts) => running(ts).length === 2,
      60_000,
    );
    t.notOk(
      running(constrained).some((x) => x.nodeId === ids[hosts.address(1)]),
      'the constraint keeps tasks off the manager',
    );

    await t.test('a dead host is marked down and its replicas run elsewhere', async (t) => {
      const dead = ids[hosts.address(3)]!;
      const t0 = Date.now();
      await hosts.killHost(3);
      tasks = await until(
        'replicas off the dead host',
        () => json<TaskRecord[]>(m!, ['service', 'ps', 'web']),
        (ts) => running(ts).length === 6 && !running(ts).some((x) => x.nodeId === dead),
        60_000,
      );
      t.comment(`host 3 killed → its replicas running elsewhere after ${Date.now() - t0} ms`);
      const n = await json<NodeRecord[]>(m!, ['node', 'ls']);
      t.equal(n.find((x) => x.id === dead)?.status, 'down');
      t.same(Object.values(perNode(tasks)).sort(), [2, 2, 2], 'the six replicas over the three live nodes');
    });

    await t.test('when the host comes back, its stale tasks are shut down: no duplicates', async (t) => {
      const back = ids[hosts.address(3)]!;
      await w3!.restart();
      await until(
        'host 3 ready',
        () => json<NodeRecord[]>(m!, ['node', 'ls']),
        (n) => n.find((x) => x.id === back)?.status === 'ready',
        60_000,
      );
      const containersOn3 = async () =>
        JSON.parse((await w3!.cli(['container', 'ps', '--format', 'json'])).stdout) as Array<{
          Name: string;
        }>;
      await until(
        'no web container left on host 3',
        containersOn3,
        (cs) => !cs.some((c) => c.Name.startsWith('web.')),
        60_000,
      );
      tasks = await json<TaskRecord[]>(m!, ['service', 'ps', 'web']);
      t.equal(running(tasks).length, 6, 'still exactly six');
      let total = 0;
      for (const h of [m!, w2!, w3!, w4!]) {
        const cs = JSON.parse((await h.cli(['container', 'ps', '--format', 'json'])).stdout) as Array<{
          Name: string;
        }>;
        total += cs.filter((c) => c.Name.startsWith('web.')).length;
      }
      t.equal(total, 6, 'six web containers across the hosts');
    });

    await t.test('labels steer placement; drain moves tasks away; bad updates are refused', async (t) => {
      const n2 = ids[hosts.address(2)]!;
      t.equal((await m!.cli(['node', 'update', '--label-add', 'zone=a', n2])).code, 0);
      t.equal(
        (
          await m!.cli([
            'service',
            'create',
            '--name',
            'zoned',
            '--replicas',
            '2',
            '--constraint',
            'node.labels.zone==a',
            'busybox:test',
            'sleep',
            '600',
          ])
        ).code,
        0,
      );
      let zoned = await until(
        'zoned on host 2',
        () => json<TaskRecord[]>(m!, ['service', 'ps', 'zoned']),
        (ts) => running(ts).length === 2,
        60_000,
      );
      t.ok(
        running(zoned).every((x) => x.nodeId === n2),
        'both on the labelled node',
      );

      t.equal((await m!.cli(['node', 'update', '--availability', 'drain', n2])).code, 0);
      tasks = await until(
        'web off the drained node',
        () => json<TaskRecord[]>(m!, ['service', 'ps', 'web']),
        (ts) => running(ts).length === 6 && !running(ts).some((x) => x.nodeId === n2),
        60_000,
      );
      t.pass('web replicas left the drained node');
      zoned = await until(
        'zoned pending with a reason',
        () => json<TaskRecord[]>(m!, ['service', 'ps', 'zoned']),
        (ts) =>
          ts.some((x) => x.status.state === 'pending' && /no suitable node/.test(x.status.message ?? '')),
        60_000,
      );
      t.match(
        zoned.find((x) => x.status.state === 'pending')!.status.message,
        /scheduling constraints not satisfied on \d+ node/,
      );
      const table = await m!.cli(['service', 'ps', 'zoned']);
      t.match(table.stdout, /no suitable node/, 'service ps explains why a task is not placed');

      t.equal((await m!.cli(['node', 'update', '--availability', 'active', n2])).code, 0);
      await until(
        'zoned back',
        () => json<TaskRecord[]>(m!, ['service', 'ps', 'zoned']),
        (ts) => running(ts).length === 2,
        60_000,
      );
      const bad = await m!.cli(['node', 'update', '--label-rm', 'nope', n2]);
      t.match(bad.stderr, /has no label "nope"/);
      const ghost = await m!.cli(['node', 'update', '--availability', 'pause', 'ghost']);
      t.match(ghost.stderr, /no such node: ghost/);
      const self = await m!.cli(['node', 'rm', ids[hosts.address(1)]!]);
      t.match(self.stderr, /cannot remove itself/);
      t.equal((await m!.cli(['service', 'rm', 'zoned'])).code, 0);
    });

    await t.test('removing the services stops their containers on every host', async (t) => {
      t.equal((await m!.cli(['service', 'rm', 'web', 'only-workers'])).code, 0);
      for (const h of [m!, w2!, w3!, w4!]) {
        await until(
          'no containers',
          async () =>
            JSON.parse((await h.cli(['container', 'ps', '-a', '--format', 'json'])).stdout) as unknown[],
          (cs) => cs.length === 0,
          60_000,
        );
      }
      t.pass('every host is empty');
    });

    await t.test('service logs reads the tasks on every host; node APIs serve managers only', async (t) => {
      const create = await m!.cli([
        'service',
        'create',
        '--name',
        'chatty',
        '--mode',
        'global',
        'busybox:test',
        'sh',
        '-c',
        'echo hello-$HOSTNAME; sleep 0.2; echo oops >&2; while sleep 0.5; do echo tick-$HOSTNAME; done',
      ]);
      t.equal(create.code, 0, create.stderr);
      const chatty = running(
        await until(
          'a task on each host',
          () => json<TaskRecord[]>(m!, ['service', 'ps', 'chatty']),
          (ts) => running(ts).length === 4,
          60_000,
        ),
      );
      const lines = (s: string) => s.split('\n').filter(Boolean);
      const logs = await until(
        'every task logged',
        () => m!.cli(['service', 'logs', 'chatty']),
        (r) =>
          r.code === 0 &&
          lines(r.stdout).filter((l) => l.includes('| hello-')).length === 4 &&
          lines(r.stderr).length === 4,
        30_000,
      );
      for (const i of [1, 2, 3, 4]) {
        const x = chatty.find((y) => y.nodeId === ids[hosts.address(i)])!;
        const name = `chatty.${x.nodeId}.${x.id.slice(0, 12)}@`;
        // the hostnames are the same machine's: the task id and the container's $HOSTNAME tell them apart
        t.ok(
          lines(logs.stdout).some(
            (l) => l.startsWith(name) && l.endsWith(`| hello-${x.containerId!.slice(0, 12)}`),
          ),
          `the line of the task on host ${i}`,
        );
        t.ok(
          lines(logs.stderr).some((l) => l.startsWith(name) && l.endsWith('| oops')),
          `the stderr line of the task on host ${i}, on stderr`,
        );
      }
      // -f relays what the tasks write from now on, from every host, until the command is stopped
      const follow = await m!.cli(['service', 'logs', '-f', '--tail', '0', 'chatty'], { timeoutMs: 6000 });
      for (const i of [1, 2, 3, 4]) {
        const x = chatty.find((y) => y.nodeId === ids[hosts.address(i)])!;
        t.ok(
          lines(follow.stdout).some(
            (l) =>
              l.startsWith(`chatty.${x.nodeId}.${x.id.slice(0, 12)}@`) &&
              l.endsWith(`| tick-${x.containerId!.slice(0, 12)}`),
          ),
          `-f streams the new lines of the task on host ${i}`,
        );
      }
      t.notMatch(follow.stdout, /hello-/, '--tail 0: none of the earlier lines');

      // the node API of host 3, called from host 2 with curl
      const pem = async (i: number) => {
        const c = JSON.parse(await fs.readFile(join(hosts.host(i).dataRoot, 'swarm-creds.json'), 'utf8')) as {
          caCertPem: string;
          certPem: string;
          keyPem: string;
        };
        const dir = join(hosts.host(2).dir, `pem${i}`);
        await fs.mkdir(dir, { recursive: true });
        await fs.writeFile(join(dir, 'ca.pem'), c.caCertPem);
        await fs.writeFile(join(dir, 'cert.pem'), c.certPem);
        await fs.writeFile(join(dir, 'key.pem'), c.keyPem);
        return dir;
      };
      const [workerPem, managerPem] = [await pem(2), await pem(1)];
      const on3 = chatty.find((y) => y.nodeId === ids[hosts.address(3)])!;
      const curl = async (dir: string, withCert: boolean) => {
        const r = await hosts.exec(2, [
          'curl',
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '--cacert',
          join(dir, 'ca.pem'),
          ...(withCert ? ['--cert', join(dir, 'cert.pem'), '--key', join(dir, 'key.pem')] : []),
          `https://${hosts.address(3)}:2378/tasks/${on3.id}/logs?tail=1`,
        ]);
        return `${r.stdout}${r.stderr}`;
      };
      t.equal(await curl(workerPem, true), '403', "a worker's certificate is refused");
      t.equal(await curl(workerPem, false), '403', 'no certificate is refused');
      t.equal(await curl(managerPem, true), '200', "a manager's certificate is served");

      // the store: the manager's etcd takes only certificates of its own etcd CA, which workers never get
      const etcdRange = async (args: string[]) =>
        hosts.exec(2, [
          'curl',
          '-sS',
          '-k',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '-X',
          'POST',
          '-d',
          '{"key":"Lw=="}',
          ...args,
        ]);
      const range = `https://${hosts.address(1)}:2379/v3/kv/range`;
      const withWorker = await etcdRange([
        '--cert',
        join(workerPem, 'cert.pem'),
        '--key',
        join(workerPem, 'key.pem'),
        range,
      ]);
      t.not(
        withWorker.stdout,
        '200',
        `a worker's node certificate opens no etcd (${withWorker.stderr.trim()})`,
      );
      t.not((await etcdRange([range])).stdout, '200', 'nor does no certificate');
      t.not(
        (await etcdRange([`http://${hosts.address(1)}:2379/v3/kv/range`])).stdout,
        '200',
        'nor plain HTTP',
      );
      const etcdTls = join(hosts.host(1).dataRoot, 'etcd-tls');
      const asManager = await hosts.exec(2, [
        'curl',
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-X',
        'POST',
        '-d',
        '{"key":"Lw=="}',
        '--cacert',
        join(etcdTls, 'ca.pem'),
        '--cert',
        join(etcdTls, 'cert.pem'),
        '--key',
        join(etcdTls, 'key.pem'),
        range,
      ]);
      t.equal(asManager.stdout, '200', `a manager's etcd certificate does (${asManager.stderr.trim()})`);

      t.equal((await m!.cli(['service', 'rm', 'chatty'])).code, 0);
    });
  },
);
