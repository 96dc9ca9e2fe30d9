/**
 * ConsulRegistry and lookupConsul against one real Consul agent (a single server on loopback,
 * on free ports): registration with TTL checks and the ownership tag and meta, status flips,
 * replacement, deregistration, services of other nodes and by hand left alone, TTL expiry and
 * refresh(), and the errors of an agent that is not there or refuses a request.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { ConsulAgent } from '../src/discovery/consul/agent.js';
import {
  ConsulRegistry,
  type ConsulRegistryOptions,
  lookupConsul,
} from '../src/discovery/consul/registry.js';
import type { Registration } from '../src/discovery/registry.js';
import { freePort } from './lib/etcd.js';
import { uniquePrefix } from './lib/harness.js';
import { until } from './lib/wait.js';

interface CatalogEntry {
  ServiceID: string;
  ServiceAddress: string;
  ServicePort: number;
  ServiceTags: string[];
  ServiceMeta: Record<string, string>;
  Node: string;
}
interface AgentCheck {
  Name: string;
  Type: string;
  Status: string;
  Output: string;
  ServiceID: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The command line of pid, '' if there is no such process. */
const cmdline = (pid: number) => fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');

/** One call to the agent's HTTP API over its unix socket: the status and the parsed body. */
function agentApi<T>(socketPath: string, method: string, path: string, body?: unknown) {
  return new Promise<{ status: number; body: T }>((resolve, reject) => {
    const req = http.request({ socketPath, method, path, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : null) as T }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** What the test started, for the check that nothing of it is left. */
const created = { dir: '', pid: 0, prefix: '' };

t.test('ConsulRegistry and lookupConsul against a real Consul agent', async (t) => {
  const started = Date.now();
  const prefix = uniquePrefix();
  const dir = join('/tmp', prefix);
  const [httpPort, dns, serfLan, serfWan, server] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const agent = new ConsulAgent({
    nodeName: prefix,
    dataDir: join(dir, 'consul'),
    server: true,
    bootstrapExpect: 1,
    ports: { http: httpPort, dns, serfLan, serfWan, server },
    raftMultiplier: 1,
    waitForLeader: true,
    stopTimeoutMs: 5_000,
  });
  t.teardown(async () => {
    await agent.stop().catch(() => {});
    await fs.rm(dir, { recursive: true, force: true });
  });
  await agent.start();
  Object.assign(created, { dir, pid: agent.pid!, prefix });
  const socketPath = agent.httpSocket;
  const api = <T>(method: string, path: string, body?: unknown) =>
    agentApi<T>(socketPath, method, path, body);
  const registry = (nodeId: string, opts: Partial<ConsulRegistryOptions> = {}) => {
    const r = new ConsulRegistry({ socketPath, nodeId, ...opts });
    t.teardown(() => r.close());
    return r;
  };
  const nodeA = registry('node-a');
  const name = `${prefix}-web`;
  const lookup = (all = false) => lookupConsul({ socketPath }, name, { all });
  const ids = (list: { id: string }[]) => list.map((x) => x.id);
  const catalog = async () => (await api<CatalogEntry[]>('GET', `/v1/catalog/service/${name}`)).body;

  const web1: Registration = {
    id: `${name}-1`,
    name,
    address: '10.0.9.11',
    port: 8080,
    tags: ['v1'],
    meta: { stack: 'shop', slot: '1' },
    status: 'passing',
  };
  const web2: Registration = {
    id: `${name}-2`,
    name,
    address: '10.0.9.12',
    port: 8080,
    tags: ['v1'],
    meta: { stack: 'shop', slot: '2' },
    status: 'critical',
    note: 'starting',
  };

  await t.test('register: each task with its check in its status', async (t) => {
    await nodeA.register(web1);
    await nodeA.register(web2);
    t.same(await nodeA.registered(), [web1, web2], 'registered() returns both, as registered');
    const passing = await until(
      'only web1 passing',
      () => lookup(),
      (l) => l.length === 1,
    );
    t.same(
      passing,
      [
        {
          id: web1.id,
          service: name,
          address: '10.0.9.11',
          port: 8080,
          node: 'node-a',
          hostname: prefix,
          healthy: true,
          state: 'passing',
          meta: { stack: 'shop', slot: '1', tsswarm_node: 'node-a' },
        },
      ],
      'a lookup returns the passing instance only',
    );
    const all = await lookup(true);
    t.same(ids(all), [web1.id, web2.id], 'both with all');
    t.match(all[1], { healthy: false, state: 'critical' });

    const entries = await until('both in the catalog', catalog, (c) => c.length === 2);
    t.match(
      entries.find((e) => e.ServiceID === web1.id),
      {
        ServiceAddress: '10.0.9.11',
        ServicePort: 8080,
        ServiceTags: ['v1', 'tsswarm'],
        ServiceMeta: { stack: 'shop', slot: '1', tsswarm_node: 'node-a' },
        Node: prefix,
      },
    );
    const checks = (await api<Record<string, AgentCheck>>('GET', '/v1/agent/checks')).body;
    t.match(checks[`tsswarm:${web2.id}`], {
      Name: 'tsswarm task',
      Type: 'ttl',
      Status: 'critical',
      Output: 'starting',
      ServiceID: web2.id,
    });
  });

  await t.test('setStatus flips the checks; lookups follow', async (t) => {
    await nodeA.setStatus(web1.id, 'critical', 'healthcheck: exit 1');
    await nodeA.setStatus(web2.id, 'passing');
    t.same(
      (await nodeA.registered()).map((r) => [r.id, r.status, r.note]),
      [
        [web1.id, 'critical', 'healthcheck: exit 1'],
        [web2.id, 'passing', undefined],
      ],
    );
    t.same(
      ids(
        await until(
          'web2 passing only',
          () => lookup(),
          (l) => l[0]?.id === web2.id,
        ),
      ),
      [web2.id],
    );
    t.same(
      (await lookup(true)).map((i) => i.state),
      ['critical', 'passing'],
    );
    await t.rejects(nodeA.setStatus(`${name}-none`, 'passing'), {
      code: 'not_found',
      message: new RegExp(
        `^consul agent at unix:${socketPath}: set ${name}-none passing: HTTP 404: Unknown check`,
      ),
    });
  });

  await t.test('re-registering replaces the old registration', async (t) => {
    const { note: _starting, ...rest } = web2;
    const moved: Registration = { ...rest, address: '10.0.9.99', port: 9090, status: 'passing' };
    await nodeA.register(moved);
    t.same(
      (await nodeA.registered()).filter((r) => r.id === web2.id),
      [moved],
    );
    const entries = await until('the new address in the catalog', catalog, (c) =>
      c.some((e) => e.ServiceAddress === '10.0.9.99'),
    );
    t.same(
      entries.map((e) => [e.ServiceID, e.ServiceAddress, e.ServicePort]).sort(),
      [
        [web1.id, '10.0.9.11', 8080],
        [web2.id, '10.0.9.99', 9090],
      ],
      'no duplicate',
    );
    const passing = await until(
      'the moved task passing',
      () => lookup(),
      (l) => l.length === 1,
    );
    t.same(
      passing.map((i) => [i.id, i.address, i.port]),
      [[web2.id, '10.0.9.99', 9090]],
      'lookups see the new address',
    );
  });

  await t.test('deregister; services of other nodes and by hand are left alone', async (t) => {
    await nodeA.deregister(web1.id);
    t.same(ids(await nodeA.registered()), [web2.id]);
    t.same(
      ids(
        await until(
          'web1 gone',
          () => lookup(true),
          (l) => l.length === 1,
        ),
      ),
      [web2.id],
    );
    await nodeA.deregister(web1.id);
    t.pass('deregistering an unknown task is a no-op');

    const nodeB = registry('node-b');
    const other = { ...web1, id: `${name}-b1`, address: '10.0.9.21' };
    await nodeB.register(other);
    const byHand = { ID: `${name}-hand`, Name: name, Address: '10.0.9.31', Tags: ['tsswarm'] };
    t.equal((await api('PUT', '/v1/agent/service/register', byHand)).status, 200, 'registered by hand');
    t.same(ids(await nodeA.registered()), [web2.id], "node-a's registry sees its own only");
    t.same(ids(await nodeB.registered()), [other.id], "node-b's too");
    await nodeA.refresh();
    const services = (await api<Record<string, { Tags: string[] }>>('GET', '/v1/agent/services')).body;
    t.same(services[byHand.ID]?.Tags, ['tsswarm'], 'the service by hand is untouched');
    const checks = (await api<Record<string, AgentCheck>>('GET', '/v1/agent/checks')).body;
    t.notOk(`tsswarm:${byHand.ID}` in checks, 'and has no check');
    t.same(
      ids(await lookup(true)),
      [web2.id, other.id, byHand.ID],
      'lookups see every instance of the service',
    );
    await api('PUT', `/v1/agent/service/deregister/${byHand.ID}`);
    await nodeB.deregister(other.id);
    await nodeA.deregister(web2.id);
    t.same(await nodeA.registered(), []);
  });

  await t.test('a TTL check expires without refresh(), not with it', async (t) => {
    const ttlMs = 2000;
    const lazy = registry('node-lazy', { ttlMs });
    const kept = registry('node-kept', { ttlMs });
    await lazy.register({ ...web1, id: `${name}-lazy` });
    await kept.register({ ...web1, id: `${name}-kept` });
    const keptStatuses = new Set<string>();
    const until2Ttl = Date.now() + 2 * ttlMs + 500;
    while (Date.now() < until2Ttl) {
      await kept.refresh();
      for (const r of await kept.registered()) keptStatuses.add(r.status);
      await sleep(ttlMs / 3);
    }
    t.same([...keptStatuses], ['passing'], 'refreshed every TTL/3: passing throughout two TTLs');
    t.match(
      await lazy.registered(),
      [{ status: 'critical', note: /TTL expired/ }],
      'not refreshed: critical',
    );
    await lazy.refresh();
    t.match(await lazy.registered(), [{ status: 'passing' }], 'refresh() brings it back');

    await api('PUT', `/v1/agent/service/deregister/${name}-kept`);
    await kept.refresh();
    t.match(
      await kept.registered(),
      [{ id: `${name}-kept`, status: 'passing' }],
      'refresh() re-registers a lost task',
    );
    await lazy.deregister(`${name}-lazy`);
    await kept.deregister(`${name}-kept`);
  });

  await t.test('errors name the agent and the cause', async (t) => {
    const closed = await freePort();
    const nowhere = new ConsulRegistry({ nodeId: 'node-a', port: closed });
    t.teardown(() => nowhere.close());
    await t.rejects(nowhere.registered(), {
      code: 'daemon_unreachable',
      message: new RegExp(
        `^consul agent at 127\\.0\\.0\\.1:${closed}: list (services|checks): .*ECONNREFUSED`,
      ),
    });
    await t.rejects(nowhere.register(web1), { code: 'daemon_unreachable', message: /ECONNREFUSED/ });
    await t.rejects(lookupConsul({ port: closed }, name), {
      code: 'daemon_unreachable',
      message: new RegExp(`^consul agent at 127\\.0\\.0\\.1:${closed}: look up ${name}: .*ECONNREFUSED`),
    });
    const noSocket = join(dir, 'no.sock');
    await t.rejects(lookupConsul({ socketPath: noSocket }, name), {
      code: 'daemon_unreachable',
      message: new RegExp(`^consul agent at unix:${noSocket}: look up ${name}: .*ENOENT`),
    });
    await t.rejects(nodeA.register({ ...web1, meta: { 'bad key': 'x' } }), {
      code: 'invalid_argument',
      message: /^consul agent at unix:.*: register .*: HTTP 400: .*bad key/i,
    });
    t.throws(() => new ConsulRegistry({ nodeId: '' }), { code: 'invalid_argument' });
    t.throws(() => new ConsulRegistry({ nodeId: 'n', ttlMs: 10 }), { code: 'invalid_argument' });
  });

  await t.test(
    'a daemon that died left its agent running: the next start stops it by its PID file',
    async (t) => {
      const stale = agent.pid!;
      t.equal(
        (await fs.readFile(agent.pidPath, 'utf8')).trim(),
        String(stale),
        'the PID file names the agent',
      );
      // a new daemon: a new object for the same data dir, while the old agent still runs
      const again = new ConsulAgent({ ...agent.opts });
      t.teardown(() => again.stop().catch(() => {}));
      await again.start();
      t.notOk(
        (await cmdline(stale)).includes(agent.configPath),
        `the leftover agent (pid ${stale}) is stopped`,
      );
      t.not(again.pid, stale);
      t.equal(
        (await fs.readFile(agent.pidPath, 'utf8')).trim(),
        String(again.pid),
        'and the PID file names the new one',
      );
      t.equal((await api<string>('GET', '/v1/status/leader')).status, 200, 'which answers');
      created.pid = again.pid!;
      await again.stop();
      // a PID file naming some other process: that process is left alone
      await fs.writeFile(again.pidPath, `${process.pid}\n`);
      const third = new ConsulAgent({ ...agent.opts });
      t.teardown(() => third.stop().catch(() => {}));
      await third.start();
      t.pass('a PID file of another process is ignored (this test process still runs)');
      await third.stop();
    },
  );

  t.comment(`registry test took ${Date.now() - started} ms`);
});

t.test('nothing of the registry test is left behind', async (t) => {
  const { dir, pid, prefix } = created;
  t.ok(pid > 0, 'the registry test ran');
  t.notOk((await cmdline(pid)).includes(prefix), `consul (pid ${pid}) is gone`);
  t.notOk(await fs.stat(dir).catch(() => undefined), `${dir} is removed`);
});
