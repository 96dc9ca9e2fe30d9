import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { JobRunRecord, NodeRecord, ServiceRecord, TaskRecord } from '../src/api/cluster.js';
import { type HostDaemon, loadImagesOn, startHosts } from './lib/hosts.js';
import { cliJson, cliJsonSettled, cliSettled, runningTasks } from './lib/swarm.js';
import { until } from './lib/wait.js';

type Node = NodeRecord & { managerStatus?: string };

const json = cliJson;
const running = runningTasks;
/** Slots with more than one running task: duplicates. */
const duplicateSlots = (ts: TaskRecord[]) => {
  const seen = new Map<number, number>();
  for (const x of running(ts)) seen.set(x.slot ?? -1, (seen.get(x.slot ?? -1) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([s]) => s);
};
const webContainers = async (h: HostDaemon) =>
  (
    JSON.parse((await h.cli(['container', 'ps', '--format', 'json'])).stdout) as Array<{ Name: string }>
  ).filter((c) => c.Name.startsWith('web.')).length;

t.test(
  'three managers on a three-member etcd and a worker: an etcd member stops, the leader dies, a worker is cut off',
  async (t) => {
    const hosts = await startHosts(t, { count: 4 });
    const d = await Promise.all([1, 2, 3, 4].map((i) => hosts.startDaemon(i)));
    const h = (i: number) => d[i - 1]!;
    await Promise.all(d.map((x) => loadImagesOn(x)));

    t.equal((await h(1).cli(['swarm', 'init', '--advertise-addr', hosts.address(1)])).code, 0);
    const mtoken = (await h(1).cli(['swarm', 'join-token', '-q', 'manager'])).stdout.trim();
    const wtoken = (await h(1).cli(['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
    const noAddr = await h(2).cli(['swarm', 'join', '--token', mtoken, `${hosts.address(1)}:2377`]);
    t.not(noAddr.code, 0, 'a manager must say where it is reachable');
    t.match(noAddr.stderr, /advertise-addr/);
    for (const i of [2, 3]) {
      const j = await h(i).cli([
        'swarm',
        'join',
        '--token',
        mtoken,
        '--advertise-addr',
        hosts.address(i),
        `${hosts.address(i - 1)}:2377`, // the third joins through the second manager
      ]);
      t.equal(j.code, 0, j.stderr);
      t.match(j.stdout, /as a manager/);
    }
    // a global service runs on every node, and on a node that joins later
    const g = await h(1).cli([
      'service',
      'create',
      '--name',
      'every',
      '--mode',
      'global',
      'busybox:test',
      'sleep',
      '600',
    ]);
    t.equal(g.code, 0, g.stderr);
    const gj = await h(1).cli([
      'service',
      'create',
      '--name',
      'once-each',
      '--mode',
      'global-job',
      'busybox:test',
      'true',
    ]);
    t.equal(gj.code, 0, gj.stderr);
    await until(
      'a global task on each of the three managers',
      () => json<TaskRecord[]>(h(1), ['service', 'ps', 'every']),
      (ts) => running(ts).length === 3,
      60_000,
    );
    const wj = await h(4).cli([
      'swarm',
      'join',
      '--token',
      wtoken,
      '--advertise-addr',
      hosts.address(4),
      `${hosts.address(1)}:2377`, // the first leader: its session has to move when that one dies
    ]);
    t.equal(wj.code, 0, wj.stderr);

    let nodes = await until(
      'four ready nodes, one leader',
      () => json<Node[]>(h(3), ['node', 'ls']),
      (n) =>
        n.filter((x) => x.status === 'ready').length === 4 &&
        n.filter((x) => x.managerStatus === 'leader').length === 1,
      60_000,
    );
    t.same(nodes.map((n) => n.role).sort(), ['manager', 'manager', 'manager', 'worker']);
    const idOf = (i: number) => nodes.find((n) => n.address === hosts.address(i))!.id;
    const indexOf = (id: string) => [1, 2, 3, 4].find((i) => idOf(i) === id)!;
    const every = await until(
      'the global service gains a task on the node that joined',
      () => json<TaskRecord[]>(h(1), ['service', 'ps', 'every']),
      (ts) => running(ts).length === 4,
      60_000,
    );
    t.same(new Set(running(every).map((x) => x.nodeId)).size, 4, 'one per node');
    const eachJob = await until(
      'the global job gains a run on the node that joined',
      () => json<TaskRecord[]>(h(1), ['job', 'ps', 'once-each']),
      (ts) => ts.filter((x) => x.status.state === 'complete' && x.status.exitCode === 0).length === 4,
      60_000,
    );
    t.ok(
      eachJob.some((x) => x.nodeId === idOf(4)),
      'one of them on the worker that joined after the job was created',
    );
    t.equal((await h(1).cli(['service', 'rm', 'every', 'once-each'])).code, 0);

    // placement preferences spread over a label's values; a constraint keeps tasks to one value
    for (const [i, zone] of [
      [1, 'a'],
      [2, 'a'],
      [3, 'b'],
      [4, 'b'],
    ] as const)
      t.equal((await h(1).cli(['node', 'update', '--label-add', `zone=${zone}`, idOf(i)])).code, 0);
    const zoneOf = (id: string) => ([1, 2].includes(indexOf(id)) ? 'a' : 'b');
    t.equal(
      (
        await h(1).cli([
          'service',
          'create',
          '--name',
          'spread',
          '--replicas',
          '6',
          '--placement-pref',
          'spread=node.labels.zone',
          'busybox:test',
          'sleep',
          '600',
        ])
      ).code,
      0,
    );
    t.equal(
      (
        await h(1).cli([
          'service',
          'create',
          '--name',
          'zoned',
          '--replicas',
          '3',
          '--constraint',
          'node.labels.zone==b',
          'busybox:test',
          'sleep',
          '600',
        ])
      ).code,
      0,
    );
    const spread = await until(
      'six spread tasks running',
      () => json<TaskRecord[]>(h(1), ['service', 'ps', 'spread']),
      (ts) => running(ts).length === 6,
      60_000,
    );
    const perZone = { a: 0, b: 0 };
    for (const x of running(spread)) perZone[zoneOf(x.nodeId!)]++;
    t.same(perZone, { a: 3, b: 3 }, 'three tasks in each zone');
    const zoned = await until(
      'three zoned tasks running',
      () => json<TaskRecord[]>(h(1), ['service', 'ps', 'zoned']),
      (ts) => running(ts).length === 3,
      60_000,
    );
    t.ok(
      running(zoned).every((x) => zoneOf(x.nodeId!) === 'b'),
      'all in zone b',
    );
    for (const name of ['spread', 'zoned']) t.equal((await h(1).cli(['service', 'rm', name])).code, 0);

    const swarm3 = JSON.parse((await h(3).cli(['swarm', 'inspect'])).stdout) as { Etcd: string[] };
    t.equal(swarm3.Etcd.length, 3, 'the third manager talks to three etcd members');

    t.equal(
      (
        await h(2).cli([
          'service',
          'create',
          '--name',
          'web',
          '--replicas',
          '8',
          'busybox:test',
          'sleep',
          '600',
        ])
      ).code,
      0,
      'any manager serves the API',
    );
    const p1 = await h(1).cli([
      'service',
      'create',
      '--name',
      'p1',
      '-p',
      '8080:80',
      'busybox:test',
      'sleep',
      '1',
    ]);
    t.equal(p1.code, 0, p1.stderr);
    const p2 = await h(3).cli([
      'service',
      'create',
      '--name',
      'p2',
      '-p',
      '8080:80',
      'busybox:test',
      'sleep',
      '1',
    ]);
    t.not(p2.code, 0, 'an ingress port is published by one service only');
    t.match(p2.stderr, /8080\/tcp is already published by service p1/);
    t.equal((await h(3).cli(['service', 'rm', 'p1'])).code, 0);
    await until(
      '8 running',
      () => json<TaskRecord[]>(h(1), ['service', 'ps', 'web']),
      (ts) => running(ts).length === 8,
      60_000,
    );

    await t.test('one etcd member keeps dying: the cluster goes on', async (t) => {
      const leader = nodes.find((n) => n.managerStatus === 'leader')!.id;
      const victim = [1, 2, 3].find((i) => idOf(i) !== leader)!;
      const other = [1, 2, 3].find((i) => i !== victim && idOf(i) !== leader)!;
      const pidFile = join(hosts.host(victim).dataRoot, 'etcd', 'etcd.pid');
      // SIGKILL the member each time its supervisor restarts it, for as long as the checks run
      let killing = true;
      let kills = 0;
      const killer = (async () => {
        while (killing) {
          const pid = Number(readFileSync(pidFile, 'utf8').trim() || 0);
          try {
            if (pid > 0) {
              process.kill(pid, 'SIGKILL');
              kills++;
            }
          } catch {}
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      try {
        await new Promise((r) => setTimeout(r, 1000));
        await cliSettled(h(other), ['service', 'scale', 'web=10']);
        const ts = await until(
          '10 running with an etcd member down',
          () => json<TaskRecord[]>(h(other), ['service', 'ps', 'web']),
          (x) => running(x).length === 10,
          60_000,
        );
        t.same(duplicateSlots(ts), []);
        const n = await cliJsonSettled<Node[]>(h(leader === idOf(1) ? 1 : other), ['node', 'ls']);
        t.equal(n.filter((x) => x.status === 'ready').length, 4, 'no node was lost meanwhile');
      } finally {
        killing = false;
        await killer;
      }
      t.ok(kills >= 1, `the member was killed ${kills} time(s)`);
      await until(
        'all nodes ready again',
        () => json<Node[]>(h(other), ['node', 'ls']),
        (n) => n.every((x) => x.status === 'ready'),
        30_000,
      );
    });

    await t.test('the leader dies: another manager leads, nothing is lost or duplicated', async (t) => {
      nodes = await until(
        'a leader',
        () => json<Node[]>(h(1), ['node', 'ls']),
        (n) => n.some((x) => x.managerStatus === 'leader'),
      );
      const leaderId = nodes.find((n) => n.managerStatus === 'leader')!.id;
      const dead = indexOf(leaderId);
      const survivor = [1, 2, 3].find((i) => i !== dead)!;
      // web's containers (those of services removed earlier may still be stopping)
      const onWorker = async () =>
        (
          JSON.parse((await h(4).cli(['container', 'ps', '--format', 'json'])).stdout) as Array<{
            Id: string;
            Config: { labels: Record<string, string> };
          }>
        ).filter((c) => c.Config.labels['org.tsswarm.service.name'] === 'web');
      const workerBefore = (await onWorker()).map((c) => c.Id).sort();
      // a schedule firing every 2 s goes on through the failover
      const beat = await h(survivor).cli([
        'service',
        'create',
        '--name',
        'beat',
        '--schedule',
        '*/2 * * * * *',
        '--schedule-history',
        '200',
        '--constraint',
        'node.role==worker', // the worker stays up: a run's task is never lost with the leader
        'busybox:test',
        'true',
      ]);
      t.equal(beat.code, 0, beat.stderr);
      await until(
        'beat fired twice',
        () => json<JobRunRecord[]>(h(survivor), ['job', 'history', 'beat']),
        (r) => r.filter((x) => x.result === 'succeeded').length >= 2,
        30_000,
      );
      const t0 = Date.now();
      await hosts.killHost(dead);
      const after = await until(
        'a new leader, the old one unreachable',
        () => json<Node[]>(h(survivor), ['node', 'ls']),
        (n) =>
          n.some((x) => x.managerStatus === 'leader' && x.id !== leaderId) &&
          n.find((x) => x.id === leaderId)?.status === 'down',
        60_000,
      );
      t.comment(`leader killed → new leader, old one down after ${Date.now() - t0} ms`);
      t.equal(after.find((x) => x.id === leaderId)?.managerStatus, 'unreachable');
      const ts = await until(
        'ten running off the dead leader',
        () => json<TaskRecord[]>(h(survivor), ['service', 'ps', 'web']),
        (x) => running(x).length === 10 && !running(x).some((y) => y.nodeId === leaderId),
        60_000,
      );
      t.comment(`its replicas running elsewhere after ${Date.now() - t0} ms`);
      t.same(duplicateSlots(ts), [], 'no slot runs twice');
      const workerAfter = (await onWorker()).map((c) => c.Id);
      t.ok(
        workerBefore.every((id) => workerAfter.includes(id)),
        "the worker's containers kept running while its session moved to another manager",
      );
      // the new leader acts (a call in the middle of etcd's own election may be refused: retried)
      const scaled = await until(
        'web scaled to 6 through a surviving manager',
        () => h(survivor).cli(['service', 'scale', 'web=6']),
        (r) => r.code === 0,
        30_000,
      );
      t.equal(scaled.code, 0, scaled.stderr);
      const failover = Date.now();
      const beats = await until(
        'beat fired three times more under the new leader',
        () => json<JobRunRecord[]>(h(survivor), ['job', 'history', 'beat']),
        (r) => r.filter((x) => x.iteration !== undefined && x.createdAt > failover).length >= 3,
        30_000,
      );
      const times = beats
        .flatMap((r) => [...(r.missed ?? []), ...(r.scheduledAt !== undefined ? [r.scheduledAt] : [])])
        .sort((a, b) => a - b);
      t.same(
        times
          .slice(1)
          .map((x, i) => x - times[i]!)
          .filter((gap) => gap !== 2000),
        [],
        `beat: ${times.length} scheduled times recorded, each once, none lost across the failover`,
      );
      const runs = beats.filter((r) => r.iteration !== undefined).map((r) => r.iteration!);
      t.equal(new Set(runs).size, runs.length, 'no run number twice');
      const beatTasks = await cliJsonSettled<TaskRecord[]>(h(survivor), ['job', 'ps', '--all', 'beat']);
      const perRun = new Map<number, number>();
      for (const x of beatTasks) perRun.set(x.jobIteration!, (perRun.get(x.jobIteration!) ?? 0) + 1);
      t.same(
        [...perRun].filter(([, n]) => n > 1),
        [],
        'one task per run (none started twice)',
      );
      await cliSettled(h(survivor), ['service', 'rm', 'beat'], /no such service/);
      t.notOk(
        (await cliJsonSettled<ServiceRecord[]>(h(survivor), ['service', 'ls'])).some(
          (x) => x.spec.name === 'beat',
        ),
        'beat is removed',
      );
      await until(
        'six running',
        () => json<TaskRecord[]>(h(survivor), ['service', 'ps', 'web']),
        (x) => running(x).length === 6,
        60_000,
      );

      // the dead manager comes back: it rejoins by itself and its stale tasks are shut down
      await h(dead).restart();
      await until(
        'the old leader is ready again',
        () => json<Node[]>(h(survivor), ['node', 'ls']),
        (n) => n.find((x) => x.id === leaderId)?.status === 'ready',
        60_000,
      );
      let total = 0;
      await until(
        'exactly six web containers on the four hosts',
        async () => {
          total = 0;
          for (const x of d) total += await webContainers(x);
          return total;
        },
        (n) => n === 6,
        60_000,
      );
      t.equal(total, 6);
    });

    await t.test('a worker cut off from the network is replaced; back, its stale tasks stop', async (t) => {
      const worker = idOf(4);
      // the scale-down to 6 may have taken every task off the worker: two more replicas go to
      // the nodes with the fewest, so the worker has some (back to 6 at the end)
      await cliSettled(h(1), ['service', 'scale', 'web=8']);
      const ts0 = await until(
        'eight running',
        () => json<TaskRecord[]>(h(1), ['service', 'ps', 'web']),
        (x) => running(x).length === 8,
        60_000,
      );
      const onWorker = running(ts0).filter((x) => x.nodeId === worker).length;
      t.ok(onWorker > 0, `the worker runs ${onWorker} task(s)`);
      await hosts.partition(4);
      try {
        await until(
          'the worker is down and its tasks run elsewhere',
          () => json<TaskRecord[]>(h(1), ['service', 'ps', 'web']),
          (x) => running(x).length === 8 && !running(x).some((y) => y.nodeId === worker),
          60_000,
        );
        t.equal((await webContainers(h(4))) > 0, true, 'meanwhile its containers still run, cut off');
      } finally {
        await hosts.heal(4);
      }
      await until(
        'the worker is ready again',
        () => json<Node[]>(h(1), ['node', 'ls']),
        (n) => n.find((x) => x.id === worker)?.status === 'ready',
        60_000,
      );
      await until(
        'its stale containers are stopped',
        () => webContainers(h(4)),
        (n) => n === 0,
        60_000,
      );
      const ts = await json<TaskRecord[]>(h(1), ['service', 'ps', 'web']);
      t.equal(running(ts).length, 8);
      t.same(duplicateSlots(ts), []);
      await cliSettled(h(1), ['service', 'scale', 'web=6']);
      await until(
        'six running',
        () => json<TaskRecord[]>(h(1), ['service', 'ps', 'web']),
        (x) => running(x).length === 6,
        60_000,
      );
    });

    await t.test('promote and demote; leave', async (t) => {
      const w = idOf(4);
      const pr = await h(1).cli(['node', 'promote', w]);
      t.equal(pr.code, 0, pr.stderr);
      await until(
        'the worker is a reachable manager',
        () => json<Node[]>(h(1), ['node', 'ls']),
        (n) => n.find((x) => x.id === w)?.managerStatus === 'reachable',
        60_000,
      );
      await until(
        'the promoted node serves the cluster API',
        () => h(4).cli(['service', 'ls']),
        (r) => r.code === 0,
        60_000,
      );
      const four = JSON.parse((await h(4).cli(['swarm', 'inspect'])).stdout) as { Etcd: string[] };
      t.equal(four.Etcd.length, 4, 'and has an etcd member of its own');

      await cliSettled(h(1), ['node', 'demote', idOf(3)]);
      await until(
        'host 3 is a worker again',
        () => h(3).cli(['service', 'ls']),
        (r) => r.code !== 0 && /worker/.test(r.stderr),
        60_000,
      );
      await until(
        'host 3 ready as a worker',
        () => json<Node[]>(h(1), ['node', 'ls']),
        (n) =>
          n.find((x) => x.id === idOf(3))?.role === 'worker' &&
          n.find((x) => x.id === idOf(3))?.status === 'ready',
        60_000,
      );

      const refused = await h(1).cli(['swarm', 'leave']);
      t.not(refused.code, 0, 'a manager does not leave without --force');
      t.match(refused.stderr, /--force/);
      const left = await h(3).cli(['swarm', 'leave']);
      t.equal(left.code, 0, left.stderr);
      t.equal(await webContainers(h(3)), 0, 'a leaving worker removes its task containers');
      await until(
        'the left node is down',
        () => json<Node[]>(h(1), ['node', 'ls']),
        (n) => n.find((x) => x.id === idOf(3))?.status === 'down',
        30_000,
      );
      await until(
        'six running without it',
        () => json<TaskRecord[]>(h(1), ['service', 'ps', 'web']),
        (x) => running(x).length === 6 && !running(x).some((y) => y.nodeId === idOf(3)),
        60_000,
      );
      t.not((await h(3).cli(['service', 'ls'])).code, 0);
      // a demoted node's heartbeats never told it it was a manager again (managers cache roles)
      const log3 = readFileSync(join(h(3).dir, 'daemon.log'), 'utf8');
      const afterDemotion = log3.slice(log3.lastIndexOf('this node was demoted'));
      t.match(afterDemotion, /^this node was demoted/, "host 3's log has its demotion");
      t.notMatch(afterDemotion, /this node was promoted/, 'and no promotion after it');
      const again = await h(3).cli(['swarm', 'init', '--advertise-addr', hosts.address(3)]);
      t.equal(again.code, 0, `a node that left can start a new swarm: ${again.stderr}`);
    });
  },
);
