/**
 * Service discovery in Consul, end to end on simulated hosts (test/lib/hosts.ts): host 1 runs
 * `swarm init --consul` (a Consul server), hosts 2 and 3 join as workers (a Consul client each).
 * A service `reg` is pinned to host 2; every lookup below is made on host 3 (another host).
 *
 *  1. registration, `--runs` times (default 20): `service scale reg=k+1`; the time from the new
 *     task's `running` status (stamped by host 2's agent) to the first answer of host 3's Consul
 *     agent (/v1/health/service?passing, polled every 10 ms) that lists it.
 *  2. removal, `--runs` times: `service scale reg=k-1`; the time from the scale request to the
 *     last answer that still listed the removed task, and its container's stop (its `shutdown`
 *     status) relative to that: negative when the task left discovery before it stopped.
 *  3. lookup latency, `--lookups` times (default 200) each, of a service of 5 instances:
 *     `tsswarm lookup` (the CLI: a process per call), the manager's API (GET
 *     /services/:ref/instances, through Consul), Consul's own HTTP API on the same agent (the
 *     peer: what the API adds is the ratio), and Consul DNS (A query to the agent's DNS port,
 *     from a resolver inside host 3).
 *
 *   node dist/bench/discovery.js [--runs 20] [--lookups 200]
 *
 * Targets (the issue): registration and removal ≤ 1 s (medians). Everything is named
 * tsswarm-test-disc-<hex> and removed at the end, pass or fail or Ctrl-C. Prints numbers;
 * asserts nothing (exit 1 only when a phase could not complete).
 */
import { join } from 'node:path';
import Consul from 'consul';
import type { NodeRecord, TaskRecord } from '../src/api/cluster.js';
import { type HostDaemon, loadImagesOn, startHosts, type TestHosts } from '../test/lib/hosts.js';
import { joinArgs } from '../test/lib/swarm.js';
import {
  type Cleanup,
  hostCli,
  hostsBench,
  intArg,
  nowMs,
  printHeader,
  runBench,
  sleep,
  summarize,
  table,
  waitFor,
} from './lib.js';

const RUNS = intArg('runs', 20);
const LOOKUPS = intArg('lookups', 200);
const TARGET_MS = 1000;
const POLL_MS = 10;

const ms = (v: number) => `${v.toFixed(1)} ms`;

interface HealthEntry {
  Service: { ID: string };
}

const tasksOf = (m: HostDaemon, service: string) =>
  m.client.request<TaskRecord[]>('GET', '/tasks', { query: { service } });
const running = (ts: TaskRecord[]) =>
  ts.filter((x) => x.desiredState === 'running' && x.status.state === 'running');

function summaryRow(name: string, values: number[], target?: number): string[] {
  const s = summarize(values);
  return [
    name,
    String(s.n),
    ms(s.median),
    ms(s.p90),
    ms(s.min),
    ms(s.max),
    target === undefined ? '' : s.median <= target ? `≤ ${target} ms: met` : `> ${target} ms: MISSED`,
  ];
}

async function bench(cleanup: Cleanup): Promise<number> {
  const { prefix, t } = hostsBench(cleanup, 'disc');
  printHeader(`discovery in Consul: registration, removal and lookups across hosts (${RUNS} runs)`, prefix);

  const hosts: TestHosts = await startHosts(t, { count: 3, prefix });
  const d = await Promise.all([1, 2, 3].map((i) => hosts.startDaemon(i)));
  await Promise.all(d.map((x) => loadImagesOn(x)));
  const m = d[0]!;
  await hostCli(m, ['swarm', 'init', '--consul', '--advertise-addr', hosts.address(1)]);
  const token = (await hostCli(m, ['swarm', 'join-token', '-q', 'worker'])).trim();
  for (const i of [2, 3]) await hostCli(d[i - 1]!, joinArgs(hosts, i, token));
  const nodes = await waitFor(
    'three ready nodes',
    () => m.client.request<NodeRecord[]>('GET', '/nodes'),
    (n) => n.filter((x) => x.status === 'ready').length === 3,
  );
  const node2 = nodes.find((n) => n.address === hosts.address(2))!.id;
  const consul3 = new Consul({
    baseUrl: 'http://consul/v1',
    socketPath: join(hosts.host(3).dataRoot, 'consul', 'http.sock'),
  } as ConstructorParameters<typeof Consul>[0]);
  cleanup.add('consul client', () => consul3.destroy());
  const passing = async (name: string) =>
    ((await consul3.health.service({ service: name, passing: true })) as HealthEntry[]).map(
      (e) => e.Service.ID,
    );
  await waitFor(
    'host 3’s agent answers',
    () => passing('consul'),
    (x) => x.length === 1,
  );

  console.log(
    `cluster:  3 hosts on ${hosts.subnet}; host 1 manager + Consul server, hosts 2, 3 workers + Consul clients`,
  );
  console.log('');

  // 1 and 2: one task more, one task less, on host 2; looked up on host 3
  await hostCli(m, [
    'service',
    'create',
    '--name',
    'reg',
    '--replicas',
    '1',
    '--constraint',
    `node.id==${node2}`,
    'busybox:test',
    'sh',
    '-c',
    'trap "exit 0" TERM; sleep 3600 & wait', // stops at once on SIGTERM
  ]);
  await waitFor(
    'reg registered',
    () => passing('reg'),
    (x) => x.length === 1,
  );
  const registration: number[] = [];
  const removal: number[] = [];
  const beforeStop: number[] = [];
  let replicas = 1;
  for (let run = 1; run <= RUNS && !cleanup.interrupted; run++) {
    const known = new Set((await tasksOf(m, 'reg')).map((x) => x.id));
    await hostCli(m, ['service', 'scale', `reg=${++replicas}`]);
    let seenAt = 0;
    let newId = '';
    const deadline = Date.now() + 30_000;
    while (!seenAt && Date.now() < deadline) {
      const ids = await passing('reg');
      const fresh = ids.find((id) => !known.has(id));
      if (fresh) {
        seenAt = Date.now();
        newId = fresh;
      } else await sleep(POLL_MS);
    }
    if (!seenAt) throw new Error(`run ${run}: the new task was never listed on host 3`);
    const task = (await tasksOf(m, 'reg')).find((x) => x.id === newId)!;
    if (task.status.state !== 'running') throw new Error(`run ${run}: listed while ${task.status.state}`);
    registration.push(seenAt - task.status.timestamp);

    const before = new Set(await passing('reg'));
    const scaledAt = Date.now();
    await hostCli(m, ['service', 'scale', `reg=${--replicas}`]);
    let goneAt = 0;
    let goneId = '';
    while (!goneAt && Date.now() < scaledAt + 30_000) {
      const ids = new Set(await passing('reg'));
      const gone = [...before].find((id) => !ids.has(id));
      if (gone) {
        goneAt = Date.now();
        goneId = gone;
      } else await sleep(POLL_MS);
    }
    if (!goneAt) throw new Error(`run ${run}: no task left discovery after the scale-down`);
    removal.push(goneAt - scaledAt);
    const stopped = await waitFor(
      'the removed task stopped',
      async () => (await tasksOf(m, 'reg')).find((x) => x.id === goneId)!,
      (x) => x.status.state === 'shutdown',
    );
    beforeStop.push(goneAt - stopped.status.timestamp);
    await waitFor(
      'back to the replicas',
      async () => running(await tasksOf(m, 'reg')),
      (x) => x.length === replicas,
    );
  }

  // 3: lookups of a service of 5
  await hostCli(m, [
    'service',
    'create',
    '--name',
    'five',
    '--replicas',
    '5',
    'busybox:test',
    'sleep',
    '3600',
  ]);
  await waitFor(
    'five registered',
    () => passing('five'),
    (x) => x.length === 5,
  );
  const lookups = { cli: [] as number[], api: [] as number[], consul: [] as number[], dns: [] as number[] };
  for (let i = 0; i < Math.min(LOOKUPS, 50) && !cleanup.interrupted; i++) {
    const t0 = nowMs();
    await hostCli(m, ['lookup', 'five']);
    lookups.cli.push(nowMs() - t0);
  }
  for (let i = 0; i < LOOKUPS && !cleanup.interrupted; i++) {
    let t0 = nowMs();
    await m.client.request('GET', '/services/five/instances');
    lookups.api.push(nowMs() - t0);
    t0 = nowMs();
    await consul3.health.service({ service: 'five', passing: true });
    lookups.consul.push(nowMs() - t0);
  }
  // DNS: one resolver process inside host 3, timing each A query to its agent's DNS port
  const script = `
const { Resolver } = require('node:dns').promises;
const [server, n] = process.argv.slice(1);
(async () => {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([server]);
  const out = [];
  for (let i = 0; i < Number(n); i++) {
    const t0 = process.hrtime.bigint();
    await r.resolve4('five.service.consul');
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  console.log(JSON.stringify(out));
})();`;
  const r = await hosts.exec(
    3,
    [process.execPath, '-e', script, `${hosts.address(3)}:8600`, String(LOOKUPS)],
    {
      timeoutMs: 120_000,
    },
  );
  if (r.code !== 0) throw new Error(`DNS lookups: ${r.stderr}`);
  lookups.dns = JSON.parse(r.stdout) as number[];

  console.log(
    table(
      ['measure', 'n', 'median', 'p90', 'min', 'max', 'target'],
      [
        summaryRow('running → listed passing on another host', registration, TARGET_MS),
        summaryRow('scale-down request → gone from lookups on another host', removal, TARGET_MS),
        summaryRow('gone from lookups, relative to the container’s stop', beforeStop),
      ],
      [6],
    ),
  );
  console.log('');
  const api = summarize(lookups.api).median;
  const peer = summarize(lookups.consul).median;
  console.log(
    table(
      ['lookup of 5 instances', 'n', 'median', 'p90', 'min', 'max'],
      [
        summaryRow('tsswarm lookup (CLI: a node process per call)', lookups.cli).slice(0, 6),
        summaryRow('manager API GET /services/five/instances', lookups.api).slice(0, 6),
        summaryRow('peer: Consul HTTP /v1/health/service (same cluster)', lookups.consul).slice(0, 6),
        summaryRow('Consul DNS five.service.consul (A, UDP)', lookups.dns).slice(0, 6),
      ],
    ),
  );
  console.log('');
  console.log(`ratio:    manager API / Consul's own API = ${(api / peer).toFixed(2)}`);
  console.log(
    'negative "relative to the stop" values: the task left discovery before its container stopped (deregistered when its desired state went down)',
  );
  return 0;
}

runBench(bench);
