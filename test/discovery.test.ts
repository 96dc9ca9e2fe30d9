/**
 * Service discovery on real Consul agents run by the swarm (`swarm init --consul`), on hosts
 * that are network namespaces: three managers (each a Consul server) and a worker (a Consul
 * client), and beside them a one-node swarm on the embedded backend. Both backends pass the
 * same contract; then the Consul swarm is put through what discovery must survive.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import Consul from 'consul';
import t, { type Test } from 'tap';
import type { NodeRecord, TaskRecord } from '../src/api/cluster.js';
import type { Instance } from '../src/discovery/instances.js';
import { resolveA } from './lib/consul.js';
import { type HostDaemon, loadImagesOn, startHosts, type TestHosts } from './lib/hosts.js';
import { cliJson, joinArgs, runningTasks } from './lib/swarm.js';
import { until } from './lib/wait.js';

type Tap = Test;

const STACK = `services:
  web:
    image: busybox:test
    command: ["sleep", "600"]
    ports:
      - target: 80
        published: 8080
    deploy:
      replicas: 3
  checked:
    image: busybox:test
    command: ["sh", "-c", "touch /tmp/ok; exec sleep 600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 300ms
      retries: 2
      start_period: 10s
      start_interval: 200ms
    stop_grace_period: 3s
    deploy:
      replicas: 1
      restart_policy:
        delay: 100ms
`;

/** One swarm under test, as the contract sees it. */
interface Swarm {
  name: string;
  manager: HostDaemon;
  /** The daemon of the host a node runs on. */
  daemonOf(nodeId: string): HostDaemon;
}

/** Runs a CLI command that must succeed (its stderr is the message when it does not). */
async function succeeds(t: Tap, d: HostDaemon, args: string[]): Promise<void> {
  const r = await d.cli(args);
  t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
}

const lookup = async (d: HostDaemon, service: string, all = false) =>
  cliJson<Instance[]>(d, ['lookup', service, ...(all ? ['--all'] : [])]);
const tasksOf = (d: HostDaemon, service: string) => cliJson<TaskRecord[]>(d, ['service', 'ps', service]);
const ids = (xs: { id: string }[]) => xs.map((x) => x.id).sort();

/** What every backend must do: the running tasks, each once, healthy, where they are; scale; unhealthy. */
async function contract(t: Tap, s: Swarm): Promise<void> {
  const m = s.manager;
  await t.test(`${s.name}: the running tasks, each once, at their network address and port`, async (t) => {
    const tasks = await until(
      'three running web tasks',
      () => tasksOf(m, 'demo_web'),
      (ts) => runningTasks(ts).length === 3,
      60_000,
    );
    const running = runningTasks(tasks);
    const found = await until(
      'lookup lists them',
      () => lookup(m, 'demo_web'),
      (l) => JSON.stringify(ids(l)) === JSON.stringify(ids(running)),
      15_000,
    );
    for (const task of running) {
      const i = found.find((x) => x.id === task.id)!;
      t.match(
        i,
        {
          service: 'demo_web',
          address: task.attachments![0]!.address.split('/')[0],
          network: 'demo_default',
          port: 80,
          node: task.nodeId,
          healthy: true,
          meta: { stack: 'demo', service: 'demo_web', node: task.nodeId, version: String(task.specVersion) },
        },
        `task ${task.id.slice(0, 12)} as it runs`,
      );
    }
    const api = await m.cli(['lookup', 'demo_web']);
    t.equal(api.code, 0, api.stderr);
    t.match(api.stdout, /TASK\s+ADDRESS\s+PORT\s+NETWORK\s+NODE\s+HEALTHY\s+STATE/);
    const missing = await m.cli(['lookup', 'nope']);
    t.not(missing.code, 0, 'an unknown service is an error');
    t.match(missing.stderr, /nope/);
  });

  await t.test(`${s.name}: scaling up and down, the lookup follows`, async (t) => {
    for (const n of [5, 1]) {
      await succeeds(t, m, ['service', 'scale', `demo_web=${n}`]);
      const running = await until(
        `${n} running`,
        async () => runningTasks(await tasksOf(m, 'demo_web')),
        (r) => r.length === n,
        60_000,
      );
      await until(
        `lookup lists the ${n}`,
        () => lookup(m, 'demo_web'),
        (l) => JSON.stringify(ids(l)) === JSON.stringify(ids(running)),
        15_000,
      );
    }
    t.pass('followed 3 → 5 → 1');
  });

  await t.test(`${s.name}: a task that turns unhealthy leaves the lookup and is replaced`, async (t) => {
    const [sick] = await until(
      'checked runs (healthy)',
      async () => runningTasks(await tasksOf(m, 'demo_checked')),
      (r) => r.length === 1,
      60_000,
    );
    await until(
      'lookup lists it',
      () => lookup(m, 'demo_checked'),
      (l) => l.length === 1 && l[0]!.id === sick!.id && l[0]!.healthy,
      15_000,
    );
    const rm = await s
      .daemonOf(sick!.nodeId!)
      .cli(['container', 'exec', sick!.containerId!, 'rm', '/tmp/ok']);
    t.equal(rm.code, 0, rm.stderr);
    const next = await until(
      'a replacement is found, the sick task is not',
      () => lookup(m, 'demo_checked'),
      (l) => l.length === 1 && l[0]!.id !== sick!.id && l[0]!.healthy,
      60_000,
    );
    const failed = (await tasksOf(m, 'demo_checked')).find((x) => x.id === sick!.id)!;
    t.equal(failed.status.state, 'failed', 'the sick task failed');
    t.match(failed.status.err, /^unhealthy container/);
    t.not(next[0]!.id, sick!.id);
  });
}

/** The consul npm client on host i's own agent (its HTTP socket in the data root). */
function consulOf(hosts: TestHosts, i: number): Consul {
  const socketPath = join(hosts.host(i).dataRoot, 'consul', 'http.sock');
  return new Consul({ baseUrl: 'http://consul/v1', socketPath } as ConstructorParameters<typeof Consul>[0]);
}

interface HealthEntry {
  Node: { Node: string };
  Service: { ID: string; Service: string; Address: string; Port: number; Meta: Record<string, string> };
  Checks: { CheckID: string; Status: string; Output: string }[];
}
/** Every registration of a Consul service, passing or not, as host i's agent sees the catalog. */
const catalog = (c: Consul, name: string) => c.health.service({ service: name }) as Promise<HealthEntry[]>;
const taskCheck = (e: HealthEntry) => e.Checks.find((x) => x.CheckID.startsWith('tsswarm:'));

t.test(
  'discovery: the embedded backend and Consul pass one contract; Consul follows every task',
  async (t) => {
    const hosts = await startHosts(t, { count: 6 });
    const d = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => hosts.startDaemon(i)));
    const h = (i: number) => d[i - 1]!;
    await Promise.all(d.map((x) => loadImagesOn(x)));
    const stackFile = join(hosts.dir, 'demo.yml');
    await fs.writeFile(stackFile, STACK);

    // the Consul swarm: three managers (three Consul servers), one worker (a client agent)
    const bad = await h(1).cli(['swarm', 'init', '--consul', '--consul-addr', '127.0.0.1:8500']);
    t.not(bad.code, 0, '--consul and --consul-addr together are refused');
    t.match(bad.stderr, /give one of them/);
    const badAddr = await h(1).cli(['swarm', 'init', '--consul-addr', 'nowhere']);
    t.match(badAddr.stderr, /bad --consul-addr "nowhere": give the HOST:PORT/);
    const init = await h(1).cli(['swarm', 'init', '--consul', '--advertise-addr', hosts.address(1)]);
    t.equal(init.code, 0, init.stderr);
    const mtoken = (await h(1).cli(['swarm', 'join-token', '-q', 'manager'])).stdout.trim();
    const wtoken = (await h(1).cli(['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
    for (const i of [2, 3, 4]) {
      const token = i === 4 ? wtoken : mtoken;
      const j = await h(i).cli(joinArgs(hosts, i, token));
      t.equal(j.code, 0, j.stderr);
    }
    const nodes = await until(
      'four ready nodes',
      () => cliJson<NodeRecord[]>(h(1), ['node', 'ls']),
      (n) => n.filter((x) => x.status === 'ready').length === 4,
      60_000,
    );
    const hostOfNode = (id: string) =>
      [1, 2, 3, 4].find((i) => nodes.find((n) => n.id === id)?.address === hosts.address(i))!;
    const c1 = consulOf(hosts, 1);
    t.teardown(() => c1.destroy());
    await until(
      'three Consul servers, all voters, and a client: four alive members',
      async () => ({
        voters: ((await c1.status.peers()) as string[]).length,
        alive: ((await c1.agent.members()) as { Status: number }[]).filter((m) => m.Status === 1).length,
      }),
      (x) => x.voters === 3 && x.alive === 4,
      60_000,
    );
    const info = JSON.parse((await h(1).cli(['swarm', 'inspect'])).stdout) as {
      Discovery: Record<string, string>;
    };
    t.match(info.Discovery, { Backend: 'consul', Mode: 'managed', Dns: `${hosts.address(1)}:8600` });

    // the embedded swarm: one node, no Consul
    await succeeds(t, h(5), ['swarm', 'init', '--advertise-addr', hosts.address(5)]);
    const embeddedInfo = JSON.parse((await h(5).cli(['swarm', 'inspect'])).stdout) as { Discovery: unknown };
    t.same(embeddedInfo.Discovery, { Backend: 'embedded' });

    for (const i of [1, 5]) {
      const dep = await h(i).cli(['deploy', '-c', stackFile, 'demo']);
      t.equal(dep.code, 0, dep.stderr);
    }
    await contract(t, { name: 'embedded', manager: h(5), daemonOf: () => h(5) });
    await contract(t, { name: 'consul', manager: h(1), daemonOf: (id) => h(hostOfNode(id)) });

    await t.test(
      'consul: the catalog has every running task, its address, port, meta and a passing check',
      async (t) => {
        await succeeds(t, h(1), ['service', 'scale', 'demo_web=4']);
        const running = await until(
          'four running',
          async () => runningTasks(await tasksOf(h(1), 'demo_web')),
          (r) => r.length === 4,
          60_000,
        );
        const c4 = consulOf(hosts, 4);
        t.teardown(() => c4.destroy());
        const entries = await until(
          'the catalog, read through the worker’s client agent, has the four passing',
          () => catalog(c4, 'demo-web'),
          (e) =>
            JSON.stringify(e.map((x) => x.Service.ID).sort()) === JSON.stringify(ids(running)) &&
            e.every((x) => taskCheck(x)?.Status === 'passing'),
          15_000,
        );
        for (const task of running) {
          const e = entries.find((x) => x.Service.ID === task.id)!;
          t.match(e.Service, {
            Service: 'demo-web',
            Address: task.attachments![0]!.address.split('/')[0],
            Port: 80,
            Meta: {
              stack: 'demo',
              service: 'demo_web',
              node: task.nodeId,
              version: String(task.specVersion),
            },
          });
          t.match(
            e.Node.Node,
            new RegExp(`-${task.nodeId!.slice(0, 8)}$`),
            'registered on the agent of its own node',
          );
        }
        // Consul answers at most 3 A records over UDP (udp_answer_limit), a random 3 each time
        const addresses = running.map((x) => x.attachments![0]!.address.split('/')[0]!);
        const seen = new Set<string>();
        await until(
          'Consul DNS answers demo-web.service.consul with every address, a few at a time',
          async () => {
            const a = await resolveA(hosts, 4, `${hosts.address(1)}:8600`, 'demo-web.service.consul');
            if (!('addresses' in a)) throw new Error(a.error);
            if (a.addresses.some((x) => !addresses.includes(x))) throw new Error(`not ours: ${a.addresses}`);
            for (const x of a.addresses) seen.add(x);
            return [...seen];
          },
          (x) => x.length === 4,
          30_000,
        );
        t.pass('every address answered, no other');
        t.same(
          await resolveA(hosts, 4, `${hosts.address(1)}:8600`, 'example.com'),
          { error: 'EREFUSED' },
          'a name outside .consul is refused, never forwarded (no recursors)',
        );
      },
    );

    await t.test(
      'an existing Consul (--consul-addr): a swarm that runs no agent registers there',
      async (t) => {
        const consulHttp = `${hosts.address(1)}:8500`;
        await succeeds(t, h(6), [
          'swarm',
          'init',
          '--consul-addr',
          consulHttp,
          '--advertise-addr',
          hosts.address(6),
        ]);
        const info = JSON.parse((await h(6).cli(['swarm', 'inspect'])).stdout) as {
          Discovery: Record<string, string>;
        };
        t.match(info.Discovery, { Backend: 'consul', Mode: 'external', Addr: consulHttp });
        t.notOk(
          await fs.stat(join(hosts.host(6).dataRoot, 'consul')).catch(() => undefined),
          'no Consul agent of its own',
        );
        await succeeds(t, h(6), [
          'service',
          'create',
          '--name',
          'outside',
          '--replicas',
          '2',
          'busybox:test',
          'sleep',
          '600',
        ]);
        const running = await until(
          'two running',
          async () => runningTasks(await tasksOf(h(6), 'outside')),
          (r) => r.length === 2,
          60_000,
        );
        await until(
          'both in the existing Consul, passing',
          () => catalog(c1, 'outside'),
          (e) =>
            JSON.stringify(e.map((x) => x.Service.ID).sort()) === JSON.stringify(ids(running)) &&
            e.every((x) => taskCheck(x)?.Status === 'passing'),
          15_000,
        );
        const found = await lookup(h(6), 'outside');
        t.same(ids(found), ids(running), 'and its lookups read them from there');
        await succeeds(t, h(6), ['service', 'rm', 'outside']);
        await until(
          'removed from Consul with the service',
          () => catalog(c1, 'outside'),
          (e) => e.length === 0,
          15_000,
        );
      },
    );

    await t.test(
      'consul: a task rescheduled to another host is registered there at its new address',
      async (t) => {
        const before = runningTasks(await tasksOf(h(1), 'demo_web'));
        const onWorker = before.filter((x) => hostOfNode(x.nodeId!) === 4);
        const target = onWorker[0] ?? before[0]!;
        const host = hostOfNode(target.nodeId!);
        await succeeds(t, h(1), ['node', 'update', '--availability', 'drain', target.nodeId!]);
        const after = await until(
          'four running, none on the drained node',
          async () => runningTasks(await tasksOf(h(1), 'demo_web')),
          (r) => r.length === 4 && !r.some((x) => x.nodeId === target.nodeId),
          60_000,
        );
        await until(
          'the catalog has the new tasks and not the moved ones',
          () => catalog(c1, 'demo-web'),
          (e) => JSON.stringify(e.map((x) => x.Service.ID).sort()) === JSON.stringify(ids(after)),
          15_000,
        );
        t.notOk(
          (await catalog(c1, 'demo-web')).some((e) => e.Service.ID === target.id),
          `${target.id.slice(0, 12)} is gone from host ${host}`,
        );
        await succeeds(t, h(1), ['node', 'update', '--availability', 'active', target.nodeId!]);
      },
    );

    await t.test('consul: an unhealthy task is critical in Consul before it goes', async (t) => {
      const [task] = await until(
        'checked runs',
        async () => runningTasks(await tasksOf(h(1), 'demo_checked')),
        (r) => r.length === 1,
        60_000,
      );
      await until(
        'registered passing',
        () => catalog(c1, 'demo-checked'),
        (e) => e.some((x) => x.Service.ID === task!.id && taskCheck(x)?.Status === 'passing'),
        15_000,
      );
      const rm = await h(hostOfNode(task!.nodeId!)).cli([
        'container',
        'exec',
        task!.containerId!,
        'rm',
        '/tmp/ok',
      ]);
      t.equal(rm.code, 0, rm.stderr);
      const critical = await until(
        'its check is critical, with the probe’s verdict',
        () => catalog(c1, 'demo-checked'),
        (e) => e.some((x) => x.Service.ID === task!.id && taskCheck(x)?.Status === 'critical'),
        15_000,
      );
      t.match(taskCheck(critical.find((x) => x.Service.ID === task!.id)!)!.Output, /unhealthy/);
      await until(
        'then deregistered, and its replacement passing',
        () => catalog(c1, 'demo-checked'),
        (e) => e.length === 1 && e[0]!.Service.ID !== task!.id && taskCheck(e[0]!)?.Status === 'passing',
        60_000,
      );
    });

    await t.test(
      'consul: Consul unreachable at deploy time: the registration is retried, not lost',
      async (t) => {
        const pid = Number(
          (await fs.readFile(join(hosts.host(4).dataRoot, 'consul', 'consul.pid'), 'utf8')).trim(),
        );
        process.kill(pid, 'SIGSTOP');
        let resumed = false;
        t.teardown(() => {
          if (!resumed) process.kill(pid, 'SIGCONT');
        });
        const g = await h(1).cli([
          'service',
          'create',
          '--name',
          'everywhere',
          '--mode',
          'global',
          'busybox:test',
          'sleep',
          '600',
        ]);
        t.equal(g.code, 0, g.stderr);
        const onWorker = await until(
          'a task runs on the worker whose agent is stopped',
          async () =>
            runningTasks(await tasksOf(h(1), 'everywhere')).filter((x) => hostOfNode(x.nodeId!) === 4),
          (r) => r.length === 1,
          60_000,
        );
        // longer than a call to the agent may take (5 s): the sync fails and is retried
        await new Promise((r) => setTimeout(r, 7_000));
        t.notOk(
          (await catalog(c1, 'everywhere')).some((e) => e.Service.ID === onWorker[0]!.id),
          'not registered while its agent is unreachable',
        );
        process.kill(pid, 'SIGCONT');
        resumed = true;
        t.match(
          await fs.readFile(join(hosts.host(4).dir, 'daemon.log'), 'utf8'),
          /consul: sync failed, retrying every 1000 ms: consul agent at unix:\S+: list services: /,
          'the worker said why, and retries',
        );
        await until(
          'registered once the agent answers again',
          () => catalog(c1, 'everywhere'),
          (e) => e.some((x) => x.Service.ID === onWorker[0]!.id && taskCheck(x)?.Status === 'passing'),
          30_000,
        );
        await succeeds(t, h(1), ['service', 'rm', 'everywhere']);
        await until(
          'a removed service leaves nothing',
          () => catalog(c1, 'everywhere'),
          (e) => e.length === 0,
          15_000,
        );
      },
    );

    await t.test('consul: a worker killed and restarted leaves no stale registration', async (t) => {
      await succeeds(t, h(1), ['service', 'scale', 'demo_web=6']);
      const withWorker = await until(
        'six running, some on the worker',
        async () => runningTasks(await tasksOf(h(1), 'demo_web')),
        (r) => r.length === 6 && r.some((x) => hostOfNode(x.nodeId!) === 4),
        60_000,
      );
      await until(
        'all six registered',
        () => catalog(c1, 'demo-web'),
        (e) => e.length === 6,
        15_000,
      );
      const killed = withWorker.filter((x) => hostOfNode(x.nodeId!) === 4).map((x) => x.id);
      await hosts.killHost(4);
      const moved = await until(
        'six running on the managers',
        async () => runningTasks(await tasksOf(h(1), 'demo_web')),
        (r) => r.length === 6 && !r.some((x) => hostOfNode(x.nodeId!) === 4),
        60_000,
      );
      await until(
        'lookups list the six that run',
        () => lookup(h(1), 'demo_web'),
        (l) => JSON.stringify(ids(l)) === JSON.stringify(ids(moved)),
        30_000,
      );
      d[3] = await hosts.startDaemon(4);
      await until(
        'the worker is back',
        () => cliJson<NodeRecord[]>(h(1), ['node', 'ls']),
        (n) => n.filter((x) => x.status === 'ready').length === 4,
        60_000,
      );
      const entries = await until(
        'its client agent is back, and the catalog holds exactly the running tasks',
        async () => ({
          e: await catalog(c1, 'demo-web'),
          alive: ((await c1.agent.members()) as { Status: number }[]).filter((m) => m.Status === 1).length,
        }),
        (x) =>
          x.alive === 4 && JSON.stringify(x.e.map((y) => y.Service.ID).sort()) === JSON.stringify(ids(moved)),
        60_000,
      );
      t.notOk(
        entries.e.some((x) => killed.includes(x.Service.ID)),
        'none of the killed worker’s tasks is registered',
      );
    });

    await t.test(
      'consul: a worker promoted runs a Consul server, demoted a client again; its tasks stay registered',
      async (t) => {
        const id4 = nodes.find((n) => n.address === hosts.address(4))!.id;
        const roleOf4 = async () =>
          (
            (await c1.agent.members()) as { Addr: string; Status: number; Tags: Record<string, string> }[]
          ).find((m) => m.Addr === hosts.address(4) && m.Status === 1)?.Tags.role;
        const registered4 = async () => {
          const on4 = runningTasks(await tasksOf(h(1), 'demo_web')).filter((x) => x.nodeId === id4);
          const e = await catalog(c1, 'demo-web');
          return (
            on4.length > 0 &&
            on4.every((x) => e.some((y) => y.Service.ID === x.id && taskCheck(y)?.Status === 'passing'))
          );
        };
        await succeeds(t, h(1), ['service', 'scale', 'demo_web=8']); // the new tasks go to host 4, which has none
        await until('host 4 runs tasks, registered', registered4, (x) => x, 60_000);
        await succeeds(t, h(1), ['node', 'promote', id4]);
        await until('host 4 runs a Consul server', roleOf4, (r) => r === 'consul', 60_000);
        await until('its tasks registered through its new agent', registered4, (x) => x, 30_000);
        await succeeds(t, h(1), ['node', 'demote', id4]);
        await until('host 4 runs a Consul client again', roleOf4, (r) => r === 'node', 60_000);
        await until('its tasks registered again', registered4, (x) => x, 30_000);
        t.pass('registered throughout the role changes, through the agent of its role');
      },
    );

    await t.test('consul: one Consul server of three killed, lookups go on', async (t) => {
      const running = runningTasks(await tasksOf(h(1), 'demo_web'));
      await hosts.killHost(3);
      const alive = running.filter((x) => hostOfNode(x.nodeId!) !== 3);
      const seen = await until(
        'lookups through the first manager still answer',
        () => lookup(h(1), 'demo_web'),
        (l) => alive.every((a) => l.some((x) => x.id === a.id)),
        30_000,
      );
      t.ok(seen.length >= alive.length);
      const dns = await resolveA(hosts, 2, `${hosts.address(2)}:8600`, 'demo-web.service.consul');
      t.ok('addresses' in dns && dns.addresses.length > 0, 'and Consul DNS on the second manager');
    });
  },
);
