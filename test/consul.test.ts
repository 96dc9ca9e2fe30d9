/**
 * A real Consul cluster on simulated hosts: three servers (hosts 1-3) and a client agent
 * (host 4), each started by ConsulAgent inside its host's network namespace. Shows the
 * election and membership, registration through the client agent with a TTL check (catalog,
 * health and DNS follow the check), that names outside .consul are refused rather than
 * forwarded, that the cluster survives SIGKILL of its leader, and start()'s errors.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConsulAgent } from '../src/discovery/consul/agent.js';
import { consulAgentOn, consulClient, curlJson, type DnsAnswer, resolveA } from './lib/consul.js';
import { startHosts } from './lib/hosts.js';
import { until } from './lib/wait.js';

const SERVERS = [1, 2, 3];
const CLIENT = 4;

interface Member {
  Name: string;
  Addr: string;
  Status: number;
  Tags: Record<string, string>;
}
interface CatalogEntry {
  ServiceID: string;
  ServiceName: string;
  ServiceAddress: string;
  ServicePort: number;
  ServiceTags: string[];
  ServiceMeta: Record<string, string>;
  Node: string;
}
interface HealthEntry {
  Service: { ID: string };
  Checks: { CheckID: string; Status: string }[];
}

const SERF_ALIVE = 1;
const hasAddresses = (want: string[]) => (a: DnsAnswer) =>
  'addresses' in a && JSON.stringify(a.addresses) === JSON.stringify(want);
const noAnswer = (a: DnsAnswer) => 'error' in a && a.error === 'ENOTFOUND';
/** The command line of pid, '' if there is no such process (a reused PID shows another command). */
const cmdline = (pid: number) => fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');

/** What the cluster test created, for the check that nothing of it is left. */
const created = { prefix: '', pids: [] as number[] };

t.test('a 3-server Consul cluster and a client agent on simulated hosts', async (t) => {
  const started = Date.now();
  const hosts = await startHosts(t, { count: 4 });
  created.prefix = hosts.prefix;
  const addr = (i: number) => hosts.address(i);
  const servers = SERVERS.map((i) =>
    consulAgentOn(t, hosts, i, { server: true, bootstrapExpect: 3, join: SERVERS.filter((j) => j !== i) }),
  );
  await Promise.all(servers.map((s) => s.start()));
  const client = consulAgentOn(t, hosts, CLIENT, { join: SERVERS });
  await client.start();
  created.pids.push(...[...servers, client].map((a) => a.pid!));
  const consul = consulClient(client);
  t.teardown(() => consul.destroy());
  const prefix = hosts.prefix;
  const serviceAddress = hosts.subnet.replace(/\.0\/24$/, '.77');
  /** A server's HTTP API from inside the client's host, over the underlay. */
  const fromServer = <T>(i: number, path: string) =>
    curlJson<T>(hosts, CLIENT, `http://${addr(i)}:8500${path}`);
  const leaderOf = (i: number) => fromServer<string>(i, '/v1/status/leader');
  const dns = (name: string) => resolveA(hosts, CLIENT, client.dnsAddr, name);

  await t.test('each agent runs as its own PID inside its host namespace', async (t) => {
    for (const [n, agent] of [...servers, client].entries()) {
      const pid = agent.pid!;
      t.ok(pid > 0, `host ${n + 1}: pid ${pid}`);
      t.match(await fs.readlink(`/proc/${pid}/exe`), /\/consul$/, `host ${n + 1}: the pid is consul's own`);
      const [ns, own] = await Promise.all([
        fs.stat(`/proc/${pid}/ns/net`),
        fs.stat(`/run/netns/${hosts.host(n + 1).netns}`),
      ]);
      t.equal(ns.ino, own.ino, `host ${n + 1}: in its network namespace`);
      t.equal(agent.httpAddr, `${addr(n + 1)}:8500`);
      t.equal(agent.dnsAddr, `${addr(n + 1)}:8600`);
    }
  });

  await t.test('the servers elect a leader; all four agents are alive members', async (t) => {
    const leader = await until(
      'a leader',
      () => leaderOf(1),
      (l) => l !== '',
    );
    t.ok(
      SERVERS.some((i) => leader === `${addr(i)}:8300`),
      `leader ${leader} is a server`,
    );
    for (const i of SERVERS)
      t.equal(
        await until(
          `server ${i} agrees`,
          () => leaderOf(i),
          (l) => l === leader,
        ),
        leader,
      );
    const peers = await fromServer<string[]>(2, '/v1/status/peers');
    t.same([...peers].sort(), SERVERS.map((i) => `${addr(i)}:8300`).sort(), 'three raft peers');
    const members = await until(
      'four alive members',
      () => fromServer<Member[]>(1, '/v1/agent/members'),
      (m) => m.length === 4 && m.every((x) => x.Status === SERF_ALIVE),
    );
    const byName = new Map(members.map((m) => [m.Name, m]));
    for (const i of [...SERVERS, CLIENT]) {
      const m = byName.get(`${prefix}-h${i}`);
      t.equal(m?.Addr, addr(i), `host ${i} is a member at its address`);
      t.equal(m?.Tags.role, i === CLIENT ? 'node' : 'consul', `host ${i}'s role`);
    }
  });

  await t.test('a service registered on the client agent follows its TTL check', async (t) => {
    const name = `${prefix}-web`;
    const id = `${name}-1`;
    const checkId = `service:${id}`;
    await consul.agent.service.register({
      id,
      name,
      address: serviceAddress,
      port: 8080,
      tags: ['v1', 'blue'],
      meta: { task: 'task-1' },
      // the typings require timeout; a TTL check has none, and the client does not send it
      check: { name: 'ttl', ttl: '60s', timeout: '1s' },
    });
    const inCatalog = await until(
      'the service in a server catalog',
      () => fromServer<CatalogEntry[]>(2, `/v1/catalog/service/${name}`),
      (c) => c.length === 1,
    );
    t.match(inCatalog[0], {
      ServiceID: id,
      ServiceName: name,
      ServiceAddress: serviceAddress,
      ServicePort: 8080,
      ServiceTags: ['v1', 'blue'],
      ServiceMeta: { task: 'task-1' },
      Node: `${prefix}-h${CLIENT}`,
    });
    const passing = () => fromServer<HealthEntry[]>(3, `/v1/health/service/${name}?passing`);
    const all = await fromServer<HealthEntry[]>(3, `/v1/health/service/${name}`);
    t.same(
      all[0]?.Checks.find((c) => c.CheckID === checkId)?.Status,
      'critical',
      'a new TTL check starts critical',
    );
    t.same(await passing(), [], 'not in the passing list before its check passes');
    t.same(await dns(`${name}.service.consul`), { error: 'ENOTFOUND' }, 'no DNS answer before it passes');

    await consul.agent.check.pass(checkId);
    const healthy = await until('the service passing', passing, (p) => p.length === 1);
    t.equal(healthy[0]?.Service.ID, id);
    t.same(
      await until('a DNS answer', () => dns(`${name}.service.consul`), hasAddresses([serviceAddress])),
      { addresses: [serviceAddress] },
      'the client agent answers the registered address',
    );

    await consul.agent.check.fail(checkId);
    await until('the service out of the passing list', passing, (p) => p.length === 0);
    t.pass('critical: out of the passing list');
    await until('no DNS answer while critical', () => dns(`${name}.service.consul`), noAnswer);
    t.pass('critical: no DNS answer');

    await consul.agent.service.deregister(id);
    await until(
      'the service gone from the catalog',
      () => fromServer<CatalogEntry[]>(1, `/v1/catalog/service/${name}`),
      (c) => c.length === 0,
    );
    t.pass('deregistered: gone from the catalog');
  });

  await t.test('names outside .consul are refused, never forwarded', async (t) => {
    const self = await curlJson<{ DebugConfig: { DNSRecursors: string[] } }>(
      hosts,
      CLIENT,
      `http://${client.httpAddr}/v1/agent/self`,
    );
    t.same(self.DebugConfig.DNSRecursors, [], 'the agent has no recursor');
    for (const name of ['example.com', 'localhost', `${prefix}.internal`]) {
      const before = Date.now();
      t.same(await dns(name), { error: 'EREFUSED' }, `${name} refused`);
      t.ok(Date.now() - before < 2_000, 'at once, not after a forwarding timeout');
    }
  });

  await t.test('the cluster survives SIGKILL of its leader', async (t) => {
    const leader = await leaderOf(1);
    const dead = SERVERS.find((i) => leader === `${addr(i)}:8300`)!;
    const victim = servers[dead - 1]!;
    const pid = victim.pid!;
    await victim.kill();
    t.equal(victim.pid, undefined, `server ${dead} (pid ${pid}) killed`);
    t.notOk((await cmdline(pid)).includes(prefix), 'its process is gone');
    const survivors = SERVERS.filter((i) => i !== dead);
    const newLeader = await until(
      'a new leader',
      () => leaderOf(survivors[0]!),
      (l) => l !== '' && l !== leader,
    );
    t.ok(
      survivors.some((i) => newLeader === `${addr(i)}:8300`),
      `new leader ${newLeader} is one of the survivors`,
    );

    const name = `${prefix}-api`;
    const id = `${name}-1`;
    await consul.agent.service.register({
      id,
      name,
      address: serviceAddress,
      port: 9090,
      check: { name: 'ttl', ttl: '60s', timeout: '1s' },
    });
    await consul.agent.check.pass(`service:${id}`);
    const services = await until(
      'the catalog through the client agent',
      () => consul.catalog.service.list(),
      (s) => name in s,
    );
    t.ok('consul' in services, 'the catalog lists consul and the new service');
    const passing = await until(
      'the new service passing, read through the client agent',
      () => consul.health.service({ service: name, passing: true }),
      (p) => p.length === 1,
    );
    t.equal((passing[0] as HealthEntry).Service.ID, id);
    t.same(
      await until(
        'a DNS answer after failover',
        () => dns(`${name}.service.consul`),
        hasAddresses([serviceAddress]),
      ),
      { addresses: [serviceAddress] },
    );
    await consul.agent.service.deregister(id);
  });

  await t.test('start() fails clearly', async (t) => {
    const dir = join(hosts.dir, 'bad');
    const missing = join(dir, 'no-such-consul');
    const bogus = new ConsulAgent({ nodeName: `${prefix}-bogus`, dataDir: dir, bin: missing });
    await t.rejects(bogus.start(), {
      code: 'precondition',
      message: `consul binary not found at ${missing}: run scripts/setup.sh`,
    });
    t.equal(bogus.pid, undefined);
    const saved = process.env.TSSWARM_CONSUL_BIN;
    process.env.TSSWARM_CONSUL_BIN = `${missing}-from-env`;
    const fromEnv = new ConsulAgent({ nodeName: `${prefix}-bogus`, dataDir: dir }).start();
    await t.rejects(fromEnv, {
      code: 'precondition',
      message: `consul binary not found at ${missing}-from-env`,
    });
    if (saved === undefined) delete process.env.TSSWARM_CONSUL_BIN;
    else process.env.TSSWARM_CONSUL_BIN = saved;

    // a second agent on a running server's host: its ports are taken, it exits at once
    const busy = SERVERS.find((i) => servers[i - 1]!.pid !== undefined)!;
    const clash = consulAgentOn(t, hosts, busy, {
      join: [],
      dataDir: join(dir, 'clash'),
      nodeName: `${prefix}-clash`,
    });
    await t.rejects(clash.start(), {
      code: 'internal',
      message: /exited early[\s\S]*address already in use/,
    });
    t.equal(clash.pid, undefined, 'and nothing is left running');
  });

  t.comment(`cluster test took ${Date.now() - started} ms`);
});

t.test('nothing of the cluster test is left behind', async (t) => {
  const { prefix, pids } = created;
  t.ok(prefix && pids.length === 4, 'the cluster test ran');
  for (const pid of pids) t.notOk((await cmdline(pid)).includes(prefix), `pid ${pid} is gone`);
  const procs: string[] = [];
  for (const p of await fs.readdir('/proc')) {
    const cmd = /^\d+$/.test(p) ? await cmdline(Number(p)) : '';
    if (cmd.includes(prefix)) procs.push(`${p}: ${cmd.replaceAll('\0', ' ')}`);
  }
  t.same(procs, [], 'no process names the run');
  const netns = await fs.readdir('/run/netns').catch(() => [] as string[]);
  t.same(
    netns.filter((n) => n.startsWith(prefix)),
    [],
    'no network namespace',
  );
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
  t.notOk(mounts.includes(prefix), 'no mount');
  t.notOk(await fs.stat(join('/tmp', prefix)).catch(() => undefined), 'no directory');
});
