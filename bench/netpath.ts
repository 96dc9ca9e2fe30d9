/**
 * The network datapath end to end on simulated hosts (test/lib/hosts.ts): host 1 runs the
 * manager (no task), host 2 a client task, host 3 the services, host 4 no daemon (a client from
 * outside the swarm). All on one overlay network; `web` (busybox httpd) publishes 8080.
 *
 *  1. name propagation, `--runs` times (default 20): `service scale reg=k+1` (reg pinned to
 *     host 3); the time from the new task's `running` status (stamped by host 3's agent) to the
 *     first answer of the embedded DNS on host 2, asked from inside the client task's network
 *     namespace for `tasks.net_reg` (polled every 5 ms), that holds its address.
 *  2. request latency, `--requests` times (default 300) each, in 10 rounds where the paths take
 *     turns, a new TCP connection per HTTP
 *     request (Node's http client): from the client task to web's task address (direct, the
 *     peer), to web's VIP (DNAT in the client's namespace), and from host 4 to port 8080 of
 *     host 3 (ingress, the task is local) and of host 1 (ingress, forwarded over the ingress
 *     network to host 3 and back). The ratios to the direct path are printed.
 *
 *   node dist/bench/netpath.js [--runs 20] [--requests 300]
 *
 * Target (the issue): name answering ≤ 1 s after running (median). Everything is named
 * tsswarm-test-net-<hex> and removed at the end, pass or fail or Ctrl-C. Prints numbers;
 * asserts nothing (exit 1 only when a phase could not complete).
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { NodeRecord, ServiceRecord, TaskRecord } from '../src/api/cluster.js';
import { loadImagesOn, startHosts, type TestHosts } from '../test/lib/hosts.js';
import { joinArgs } from '../test/lib/swarm.js';
import {
  type Cleanup,
  hostCli,
  hostsBench,
  intArg,
  printHeader,
  REPO,
  runBench,
  summarize,
  table,
  waitFor,
} from './lib.js';

const RUNS = intArg('runs', 20);
const REQUESTS = intArg('requests', 300);
const TARGET_MS = 1000;
const ROUNDS = 10;

const STACK = `services:
  cli:
    image: busybox:test
    command: ["sleep", "3600"]
    networks: [front]
    deploy:
      placement:
        constraints: [node.labels.role==client]
  web:
    image: busybox:test
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www"]
    networks: [front]
    ports:
      - target: 80
        published: 8080
    deploy:
      placement:
        constraints: [node.labels.role==server]
  reg:
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    networks: [front]
    deploy:
      replicas: 1
      placement:
        constraints: [node.labels.role==server]
networks:
  front: {}
`;

const running = (ts: TaskRecord[]) =>
  ts.filter((x) => x.desiredState === 'running' && x.status.state === 'running');
const bare = (t: TaskRecord) => t.attachments![0]!.address.split('/')[0]!;
const ms = (v: number) => `${v.toFixed(2)} ms`;

/** Runs `node -e script args…` inside a network namespace (cwd: the repository); its stdout. */
function nodeIn(
  netns: string,
  script: string,
  args: string[],
  onLine?: (l: string) => void,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let buf = '';
    child.stdout.on('data', (d) => {
      out += d;
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        onLine?.(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
      }
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`))));
    nodeChildren.add(child);
    child.on('exit', () => nodeChildren.delete(child));
  });
}
const nodeChildren = new Set<ReturnType<typeof spawn>>();

/** Polls a name at the embedded DNS every 5 ms; prints `{at, addrs}` each time the answer changes. */
const WATCH_DNS = `
const { Resolver } = require('node:dns').promises;
const r = new Resolver({ timeout: 500, tries: 1 });
r.setServers([process.argv[1]]);
let last = '';
(async () => {
  for (;;) {
    const addrs = await r.resolve4(process.argv[2]).catch(() => []);
    const key = addrs.sort().join(',');
    if (key !== last) { last = key; console.log(JSON.stringify({ at: Date.now(), addrs })); }
    await new Promise((res) => setTimeout(res, 5));
  }
})();`;

/** N sequential HTTP GETs, each on a new connection; prints the latencies (ms) as JSON. */
const PROBE = `
const http = require('node:http');
const [url, n] = [process.argv[1], Number(process.argv[2])];
const one = () => new Promise((res, rej) => {
  const t0 = process.hrtime.bigint();
  http.get(url, { agent: false }, (r) => { r.resume(); r.on('end', () => res(Number(process.hrtime.bigint() - t0) / 1e6)); }).on('error', rej);
});
(async () => {
  for (let i = 0; i < 5; i++) await one();
  const out = [];
  for (let i = 0; i < n; i++) out.push(await one());
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e.message); process.exit(1); });`;

async function bench(cleanup: Cleanup): Promise<number> {
  const { prefix, t } = hostsBench(cleanup, 'net');
  printHeader(
    `network datapath: name propagation (${RUNS} runs) and request latency (${REQUESTS} requests per path)`,
    prefix,
  );
  cleanup.add('probes', async () => {
    for (const c of nodeChildren) c.kill('SIGKILL');
  });
  const hosts: TestHosts = await startHosts(t, { count: 4, prefix });
  const d = await Promise.all([1, 2, 3].map((i) => hosts.startDaemon(i)));
  await Promise.all(d.map((x) => loadImagesOn(x)));
  const m = d[0]!;
  await hostCli(m, ['swarm', 'init', '--advertise-addr', hosts.address(1)]);
  const token = (await hostCli(m, ['swarm', 'join-token', '-q', 'worker'])).trim();
  for (const i of [2, 3]) await hostCli(d[i - 1]!, joinArgs(hosts, i, token));
  const nodes = await waitFor(
    'three ready nodes',
    () => m.client.request<NodeRecord[]>('GET', '/nodes'),
    (n) => n.filter((x) => x.status === 'ready').length === 3,
  );
  const nodeOf = (i: number) => nodes.find((n) => n.address === hosts.address(i))!.id;
  await hostCli(m, ['node', 'update', '--label-add', 'role=client', nodeOf(2)]);
  await hostCli(m, ['node', 'update', '--label-add', 'role=server', nodeOf(3)]);
  const stackFile = join(hosts.dir, 'net.yml');
  await fs.writeFile(stackFile, STACK);
  await hostCli(m, ['stack', 'deploy', '-c', stackFile, 'net']);
  const tasksOf = (service: string) =>
    m.client.request<TaskRecord[]>('GET', '/tasks', { query: { service } });
  const [client] = await waitFor(
    'the client task',
    async () => running(await tasksOf('net_cli')),
    (r) => r.length === 1,
  );
  const [web] = await waitFor(
    'the web task',
    async () => running(await tasksOf('net_web')),
    (r) => r.length === 1,
  );
  const clientNs = `${hosts.host(2).cgroupParent}-${client!.id.slice(0, 12)}`;
  const gateway = (await m.client.request<Array<{ gateway: string; name: string }>>('GET', '/networks')).find(
    (n) => n.name === 'net_front',
  )!.gateway;
  console.log(
    `cluster:  3 hosts on ${hosts.subnet} (host 1 manager, host 2 client task, host 3 services); host 4 outside`,
  );
  console.log('');

  // 1: name propagation
  const answers: Array<{ at: number; addrs: string[] }> = [];
  void nodeIn(clientNs, WATCH_DNS, [gateway, 'tasks.net_reg'], (l) => answers.push(JSON.parse(l))).catch(
    () => {},
  );
  const propagation: number[] = [];
  let replicas = 1;
  await waitFor(
    'reg answers',
    async () => answers.at(-1)?.addrs.length ?? 0,
    (n) => n === 1,
  );
  for (let run = 1; run <= RUNS && !cleanup.interrupted; run++) {
    const known = new Set((await tasksOf('net_reg')).map((x) => x.id));
    const scaledAt = Date.now();
    await hostCli(m, ['service', 'scale', `net_reg=${++replicas}`]);
    const task = await waitFor(
      'the new reg task running',
      async () => running(await tasksOf('net_reg')).find((x) => !known.has(x.id)),
      (x) => !!x,
    );
    const addr = bare(task!);
    const seen = await waitFor(
      'its name answering on host 2',
      async () => answers.find((a) => a.at >= scaledAt && a.addrs.includes(addr)),
      (a) => !!a,
      30_000,
    );
    propagation.push(seen!.at - task!.status.timestamp);
    await hostCli(m, ['service', 'scale', `net_reg=${--replicas}`]);
    await waitFor(
      'back to the replicas',
      async () => running(await tasksOf('net_reg')),
      (r) => r.length === replicas,
    );
  }

  // 2: request latency
  const svc = (await m.client.request<ServiceRecord[]>('GET', '/services')).find(
    (s) => s.spec.name === 'net_web',
  )!;
  const vip = svc.virtualIps![0]!.address.split('/')[0]!;
  const probe = async (netns: string, url: string, n: number) =>
    JSON.parse(await nodeIn(netns, PROBE, [url, String(n)])) as number[];
  const paths: Array<[string, string]> = [
    [clientNs, `http://${bare(web!)}/`],
    [clientNs, `http://${vip}/`],
    [hosts.host(4).netns, `http://${hosts.address(3)}:8080/`],
    [hosts.host(4).netns, `http://${hosts.address(1)}:8080/`],
  ];
  // the paths take turns, ROUNDS times, so that drift on the machine falls on all of them
  const results: number[][] = paths.map(() => []);
  for (let round = 0; round < ROUNDS && !cleanup.interrupted; round++)
    for (const [i, [netns, url]] of paths.entries())
      results[i]!.push(...(await probe(netns, url, Math.ceil(REQUESTS / ROUNDS))));
  const [direct, viaVip, local, forwarded] = results as [number[], number[], number[], number[]];

  const row = (name: string, v: number[], target?: number) => {
    const s = summarize(v);
    return [
      name,
      String(s.n),
      ms(s.median),
      ms(s.p90),
      ms(s.min),
      ms(s.max),
      target === undefined ? '' : s.median <= target ? `≤ ${target} ms: met` : `> ${target} ms: MISSED`,
    ];
  };
  console.log(
    table(
      ['measure', 'n', 'median', 'p90', 'min', 'max', 'target'],
      [
        row('running → tasks.NAME answers on another host', propagation, TARGET_MS),
        row('request, client task → task address (direct, peer)', direct),
        row('request, client task → VIP', viaVip),
        row('request, outside → ingress on the task’s host', local),
        row('request, outside → ingress on another host (forwarded)', forwarded),
      ],
      [0],
    ),
  );
  const base = summarize(direct).median;
  console.log('');
  console.log(
    `ratios:   VIP / direct = ${(summarize(viaVip).median / base).toFixed(2)}   ingress local / direct = ${(summarize(local).median / base).toFixed(2)}   ingress forwarded / direct = ${(summarize(forwarded).median / base).toFixed(2)}`,
  );
  return 0;
}

runBench(bench);
