/**
 * A simulated multi-host cluster on one machine (DESIGN §7).
 *
 * Layout, for a run prefix P (tsswarm-test-<hex>) and a short link tag T (tst<6 hex>):
 *
 *   netns P-ul     the underlay: a bridge T"br" and one port T"p<i>" per host; no address,
 *                  no route, nothing else. The host's root namespace is never touched.
 *   netns P-h<i>   host i (1-based): lo up, T"e<i>" = 10.254.X.(10+i)/24, the other end of
 *                  the veth pair T"p<i>" that sits in P-ul on the bridge.
 *   /tmp/P/h<i>/   host i's data root (root/), daemon socket (d.sock) and daemon log.
 *   cgroup P-h<i>  host i's cgroup parent, in every hierarchy.
 *   cgroup P-x<i>  (one hierarchy) the commands exec() runs in host i.
 *
 * The veth pairs are created from inside P-ul with their peer put straight into P-h<i>, so no
 * link ever exists in the root namespace. The subnet is a 10.254.X.0/24 that overlaps no route
 * or address of the root namespace, and it only exists inside these namespaces: traffic goes
 * from one host namespace to another over the bridge, and nowhere else.
 *
 * Daemons run inside their host's network namespace through `nsenter --net=/run/netns/P-h<i>`
 * rather than `ip netns exec`: the latter also unshares the mount namespace and mounts a fresh
 * sysfs over /sys, which hides /sys/fs/cgroup (the daemon could make no cgroup) and the
 * daemon's overlay mounts from the rest of the machine. nsenter enters the network namespace
 * only and execs the command, so the spawned child's PID is the daemon's.
 *
 * At teardown, pass or fail: every daemon is SIGKILLed by PID, every remaining process of every
 * host (its cgroups, its network namespace, command lines naming its directory) is SIGKILLed by
 * PID, then cleanupPrefix(P, { linkPrefix: T }) removes the namespaces (and with them the veths
 * and the bridge), mounts, cgroups and /tmp/P.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '../../src/api/client.js';
import { cleanupPrefix, TEST_PREFIX } from '../../src/engine/cleanup.js';
import { loadTestImages } from './fixtures.js';
import { CLI, type CliResult, runCli, type TestDaemon, uniquePrefix } from './harness.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A daemon running inside one simulated host; usable wherever a TestDaemon is. */
export interface HostDaemon extends TestDaemon {
  /** 1-based host number. */
  index: number;
  /** The host's network namespace name (P-h<i>). */
  netns: string;
  /** The host's underlay address (no prefix length). */
  address: string;
  /** The host's cgroup parent (P-h<i>); also this daemon's `prefix`. */
  cgroupParent: string;
}

export interface SimHost {
  index: number;
  netns: string;
  /** Underlay address, e.g. 10.254.37.11. */
  address: string;
  /** Interface name inside the host namespace. */
  iface: string;
  /** Its peer on the underlay bridge (inside the underlay namespace). */
  port: string;
  /** /tmp/P/h<i> */
  dir: string;
  dataRoot: string;
  socket: string;
  cgroupParent: string;
  /**
   * The cgroup (P-x<i>, in one hierarchy) that exec() puts its commands in, so that a crashed
   * run's cleanupPrefix finds them too; undefined if none could be made.
   */
  execCgroup?: string;
  /** The running (or last started) daemon, if any. */
  daemon?: HostDaemon;
}

export interface TestHosts {
  prefix: string;
  /** Start of every link name of the run (tst + 6 hex). */
  linkPrefix: string;
  /** The underlay network namespace (P-ul). */
  underlayNetns: string;
  /** The underlay subnet, e.g. 10.254.37.0/24. */
  subnet: string;
  /** /tmp/P */
  dir: string;
  /** hosts[0] is host 1. */
  hosts: SimHost[];
  host(i: number): SimHost;
  /** Host i's underlay address. */
  address(i: number): string;
  /**
   * Starts a daemon inside host i's netns (data root, socket and cgroup parent of that host),
   * waits for its socket to answer and returns it.
   */
  startDaemon(i: number, extraArgs?: string[]): Promise<HostDaemon>;
  /** Runs cmd inside host i's network namespace (`ip netns exec`); never throws. */
  exec(i: number, cmd: string[], opts?: { timeoutMs?: number; input?: string }): Promise<CliResult>;
  /** True if host `from` gets an answer to one ping to `to` (a host number or an address). */
  ping(from: number, to: number | string, opts?: { timeoutSec?: number }): Promise<boolean>;
  /** Cuts host i off the underlay (its bridge port goes down: the host sees NO-CARRIER). */
  partition(i: number): Promise<void>;
  /** Puts host i back on the underlay. */
  heal(i: number): Promise<void>;
  /** Every live process of host i: its daemon, its cgroups' members, processes in its netns or naming its dir. */
  processes(i: number): Promise<number[]>;
  /** A dead machine: SIGKILLs host i's daemon and every other process of it, by PID; returns the PIDs killed. */
  killHost(i: number): Promise<number[]>;
  /** What teardown does; idempotent (also run by t.teardown). */
  teardown(): Promise<void>;
}

/** An Exec (argv → stdout) inside host i's network namespace; it throws with the command's stderr when it fails. */
export function execOn(hosts: TestHosts, i: number, timeoutMs = 60_000): (argv: string[]) => Promise<string> {
  return async (argv) => {
    const r = await hosts.exec(i, argv, { timeoutMs });
    if (r.code !== 0) throw new Error(`host ${i}: ${argv.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  };
}

/** Loads the test images (busybox:test, cow:test, entry:test, shellform:test) into a host's daemon. */
export async function loadImagesOn(host: HostDaemon | TestDaemon): Promise<void> {
  await loadTestImages(host);
}

// ---------------------------------------------------------------------------------------------
// subnet choice

function ipToInt(ip: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

function parseCidr(s: string): { base: number; len: number } | undefined {
  const [ip, lenText] = s.split('/');
  const n = ipToInt(ip ?? '');
  const len = lenText === undefined ? 32 : Number(lenText);
  if (n === undefined || !Number.isInteger(len) || len < 0 || len > 32) return undefined;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { base: (n & mask) >>> 0, len };
}

function overlaps(a: { base: number; len: number }, b: { base: number; len: number }): boolean {
  const len = Math.min(a.len, b.len);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

const ROUTE_TYPES = new Set([
  'unicast',
  'local',
  'broadcast',
  'multicast',
  'throw',
  'unreachable',
  'prohibit',
  'blackhole',
  'nat',
  'anycast',
]);

/** Every IPv4 destination (except the default route) and address of the root namespace. */
async function rootNetworks(): Promise<{ base: number; len: number }[]> {
  const out: { base: number; len: number }[] = [];
  const { stdout: routes } = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (const line of routes.split('\n')) {
    const words = line.trim().split(/\s+/);
    let dst = words[0];
    if (dst && ROUTE_TYPES.has(dst)) dst = words[1];
    if (!dst || dst === 'default') continue;
    const c = parseCidr(dst);
    if (c) out.push(c);
  }
  const { stdout: addrs } = await run('ip', ['-4', '-o', 'addr', 'show']);
  for (const m of addrs.matchAll(/\sinet\s+(\d+\.\d+\.\d+\.\d+\/\d+)/g)) {
    const c = parseCidr(m[1]!);
    if (c) out.push(c);
  }
  return out;
}

/** A 10.254.X.0/24 that collides with no route or address of the root namespace. */
async function chooseSubnet(): Promise<string> {
  const taken = await rootNetworks();
  for (let attempt = 0; attempt < 200; attempt++) {
    const x = randomInt(1, 255);
    const cand = parseCidr(`10.254.${x}.0/24`)!;
    if (!taken.some((t) => overlaps(t, cand))) return `10.254.${x}.0/24`;
  }
  throw new Error('no free 10.254.X.0/24 subnet: every candidate overlaps a route of this machine');
}

// ---------------------------------------------------------------------------------------------
// processes

async function cgroupRoots(): Promise<string[]> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => {
      const sep = f.indexOf('-');
      return sep > 0 && (f[sep + 1] === 'cgroup' || f[sep + 1] === 'cgroup2');
    })
    .map((f) => f[4]!);
}

/** PIDs in cgroup.procs of <root>/<name> and below, in every cgroup hierarchy. */
async function cgroupPids(name: string): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string) => {
    const text = await fs.readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const p of text.split('\n')) if (p) pids.add(Number(p));
    const kids = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const k of kids) if (k.isDirectory()) await walk(join(dir, k.name));
  };
  for (const root of await cgroupRoots()) await walk(join(root, name));
  return [...pids];
}

/** A process that exists and is not a zombie. */
async function isLive(pid: number): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (!stat) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/**
 * Live processes whose network namespace is the file nsPath, or whose command line contains
 * one of needles. This process and its parent are never included.
 */
async function processesOf(nsPath: string, needles: string[]): Promise<number[]> {
  const ns = await fs.stat(nsPath).catch(() => undefined);
  const out: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || pid === process.ppid) continue;
    let hit = false;
    if (ns) {
      const st = await fs.stat(`/proc/${pid}/ns/net`).catch(() => undefined);
      hit = !!st && st.ino === ns.ino && st.dev === ns.dev;
    }
    if (!hit && needles.length) {
      const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      hit = needles.some((n) => cmd.includes(n));
    }
    if (hit && (await isLive(pid))) out.push(pid);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

async function waitForSocket(path: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`daemon exited early (${child.exitCode ?? child.signalCode}): ${log()}`);
    if (existsSync(path)) {
      const c = new Client({ url: `unix://${path}`, socketPath: path });
      if (
        await c.request('GET', '/_ping').then(
          () => true,
          () => false,
        )
      )
        return;
    }
    await sleep(50);
  }
  throw new Error(`daemon did not come up: ${log()}`);
}

/**
 * Creates `count` hosts (network namespaces on one underlay bridge) with the run's unique
 * prefix; everything is removed at teardown, pass or fail. Hosts are numbered from 1.
 */
export async function startHosts(t: Teardown, opts: { count: number; prefix?: string }): Promise<TestHosts> {
  const count = opts.count;
  if (!Number.isInteger(count) || count < 1 || count > 99) throw new Error(`startHosts: bad count ${count}`);
  const prefix = opts.prefix ?? uniquePrefix();
  if (!prefix.startsWith(TEST_PREFIX) || prefix.length < TEST_PREFIX.length + 4)
    throw new Error(`startHosts: the prefix must be ${TEST_PREFIX}<unique>, got "${prefix}"`);
  const linkPrefix = `tst${randomBytes(3).toString('hex')}`;
  const dir = join('/tmp', prefix);
  const underlayNetns = `${prefix}-ul`;
  const bridge = `${linkPrefix}br`;

  const hosts: SimHost[] = [];
  const daemons = new Map<number, { child?: ChildProcess }>();
  let subnet = '';

  let tornDown: Promise<void> | undefined;
  const teardown = () => {
    tornDown ??= (async () => {
      // daemons first, by PID
      for (const d of daemons.values()) {
        const c = d.child;
        if (c && c.exitCode === null && c.signalCode === null) {
          const exited = new Promise((r) => c.once('exit', r));
          c.kill('SIGKILL');
          await Promise.race([exited, sleep(5_000)]);
        }
      }
      // then whatever else each host still runs, by PID
      for (const h of hosts) await killAll(h).catch(() => {});
      const keep = process.env.TSSWARM_TEST_LOGS;
      for (const h of keep ? hosts : [])
        await fs
          .copyFile(join(h.dataRoot, 'etcd', 'etcd.log'), join(keep!, `${h.netns}-etcd.log`))
          .catch(() => {});
      await cleanupPrefix(prefix, { linkPrefix });
    })();
    return tornDown;
  };
  t.teardown(teardown);

  const host = (i: number): SimHost => {
    const h = hosts[i - 1];
    if (!h || !Number.isInteger(i)) throw new Error(`no host ${i} (hosts are 1..${hosts.length})`);
    return h;
  };

  const processes = async (i: number): Promise<number[]> => {
    const h = host(i);
    const pids = new Set<number>();
    const c = daemons.get(i)?.child;
    if (c?.pid && c.exitCode === null && c.signalCode === null) pids.add(c.pid);
    for (const p of await cgroupPids(h.cgroupParent)) pids.add(p);
    for (const p of await cgroupPids(`${prefix}-x${i}`)) pids.add(p);
    for (const p of await processesOf(`/run/netns/${h.netns}`, [`${h.dir}/`])) pids.add(p);
    pids.delete(process.pid);
    pids.delete(process.ppid);
    const live: number[] = [];
    for (const p of pids) if (await isLive(p)) live.push(p);
    return live;
  };

  /** SIGKILLs every process of host h by PID, rounds until none is left (forks racing the kill). */
  async function killAll(h: SimHost): Promise<number[]> {
    const killed = new Set<number>();
    const c = daemons.get(h.index)?.child;
    if (c?.pid && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      killed.add(c.pid);
      await Promise.race([exited, sleep(5_000)]);
    }
    for (let round = 0; round < 50; round++) {
      const left = await processes(h.index);
      if (!left.length) return [...killed];
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
          killed.add(pid);
        } catch {}
      }
      await sleep(round < 5 ? 20 : 100);
    }
    const left = await processes(h.index);
    if (left.length) throw new Error(`host ${h.index}: processes survive SIGKILL: ${left.join(' ')}`);
    return [...killed];
  }

  const exec = (i: number, cmd: string[], o: { timeoutMs?: number; input?: string } = {}) =>
    new Promise<CliResult>((resolvePromise) => {
      const h = host(i);
      // join the exec cgroup first (race-free: before the command can fork), then exec into the netns
      const child = h.execCgroup
        ? spawn(
            'sh',
            [
              '-c',
              'cg=$1 ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" || exit 125; exec ip netns exec "$ns" "$@"',
              'sh',
              h.execCgroup,
              h.netns,
              ...cmd,
            ],
            { stdio: ['pipe', 'pipe', 'pipe'] },
          )
        : spawn('ip', ['netns', 'exec', h.netns, ...cmd], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
      child.on('error', (e) => (stderr += String(e)));
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolvePromise({ code: code ?? (signal ? 128 : 255), stdout, stderr });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(o.input ?? '');
    });

  const startDaemon = async (i: number, extraArgs: string[] = []): Promise<HostDaemon> => {
    const h = host(i);
    const old = daemons.get(i)?.child;
    if (old && old.exitCode === null && old.signalCode === null)
      throw new Error(`host ${i} already runs a daemon (pid ${old.pid})`);
    const slot: { child?: ChildProcess } = {};
    daemons.set(i, slot);
    let log = '';
    const logFile = join(h.dir, 'daemon.log');
    const startChild = async () => {
      const prev = slot.child;
      if (prev && prev.exitCode === null && prev.signalCode === null)
        throw new Error(`host ${i}: the daemon (pid ${prev.pid}) is still running`);
      log = '';
      await fs.rm(h.socket, { force: true });
      const child = spawn(
        'nsenter',
        [
          `--net=/run/netns/${h.netns}`,
          '--',
          process.execPath,
          CLI,
          'daemon',
          '--data-root',
          h.dataRoot,
          '--socket',
          h.socket,
          '--cgroup-parent',
          h.cgroupParent,
          // the containers' DNS forwards nothing: no query leaves the simulated hosts
          '--dns-upstream',
          'none',
          ...extraArgs,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      slot.child = child;
      const onData = (d: Buffer) => {
        log += d;
        fs.appendFile(logFile, d).catch(() => {});
        // TSSWARM_TEST_LOGS=DIR keeps every host's daemon log after the run, for debugging
        const keep = process.env.TSSWARM_TEST_LOGS;
        if (keep) fs.appendFile(join(keep, `${h.netns}.log`), d).catch(() => {});
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.on('error', (e) => (log += `spawn: ${e}\n`));
      await waitForSocket(h.socket, child, () => log);
    };
    await startChild();
    const url = `unix://${h.socket}`;
    const d: HostDaemon = {
      index: i,
      netns: h.netns,
      address: h.address,
      cgroupParent: h.cgroupParent,
      prefix: h.cgroupParent,
      dir: h.dir,
      dataRoot: h.dataRoot,
      socket: h.socket,
      client: new Client({ url, socketPath: h.socket }),
      get pid() {
        return slot.child?.pid ?? 0;
      },
      cli: (args, o) => runCli(['-H', url, ...args], o),
      async kill(signal = 'SIGKILL') {
        const c = slot.child;
        if (!c || c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill(signal);
        await exited;
      },
      restart: startChild,
      async leftovers() {
        const found: string[] = [];
        let containers: string[] = [];
        for (let n = 0; n < 40; n++) {
          containers = await fs.readdir(join(h.dataRoot, 'containers')).catch(() => [] as string[]);
          if (!containers.some((c) => c.startsWith('.trash-'))) break;
          await sleep(50);
        }
        for (const c of containers) found.push(`bundle ${c}`);
        for (const root of await cgroupRoots()) {
          const kids = await fs.readdir(join(root, h.cgroupParent), { withFileTypes: true }).catch(() => []);
          for (const k of kids) if (k.isDirectory()) found.push(`cgroup ${root}/${h.cgroupParent}/${k.name}`);
        }
        const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
        for (const l of mounts.split('\n')) {
          const m = l.split(' ')[4];
          if (m?.startsWith(`${h.dir}/`)) found.push(`mount ${m}`);
        }
        for (const p of await fs.readdir('/proc')) {
          if (!/^\d+$/.test(p) || Number(p) === slot.child?.pid) continue;
          const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
          if (cmd.includes(`${h.dir}/`) && cmd.includes('tsswarm-shim')) found.push(`process ${p}`);
        }
        return found;
      },
    };
    h.daemon = d;
    return d;
  };

  // --- build the underlay and the hosts ---
  await fs.mkdir(dir, { recursive: true });
  subnet = await chooseSubnet();
  const net = subnet.split('.').slice(0, 3).join('.');
  for (let i = 1; i <= count; i++) {
    const hdir = join(dir, `h${i}`);
    hosts.push({
      index: i,
      netns: `${prefix}-h${i}`,
      address: `${net}.${10 + i}`,
      iface: `${linkPrefix}e${i}`,
      port: `${linkPrefix}p${i}`,
      dir: hdir,
      dataRoot: join(hdir, 'root'),
      socket: join(hdir, 'd.sock'),
      cgroupParent: `${prefix}-h${i}`,
    });
  }
  const roots = await cgroupRoots();
  const execRoot =
    roots.find((r) => r.endsWith('/pids')) ?? roots.find((r) => r.endsWith('/unified')) ?? roots[0];
  for (const h of hosts) {
    if (!execRoot) break;
    const cg = join(execRoot, `${prefix}-x${h.index}`);
    if (
      await fs.mkdir(cg).then(
        () => true,
        () => false,
      )
    )
      h.execCgroup = cg;
  }
  await ip(['netns', 'add', underlayNetns]);
  const ul = ['-n', underlayNetns];
  await ip([...ul, 'link', 'set', 'lo', 'up']);
  await ip([...ul, 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await ip([...ul, 'link', 'set', bridge, 'up']);
  for (const h of hosts) {
    await fs.mkdir(h.dir, { recursive: true });
    await ip(['netns', 'add', h.netns]);
    const hn = ['-n', h.netns];
    await ip([...hn, 'link', 'set', 'lo', 'up']);
    // created inside the underlay, its peer put straight into the host: never in the root ns
    await ip([...ul, 'link', 'add', h.port, 'type', 'veth', 'peer', 'name', h.iface, 'netns', h.netns]);
    await ip([...ul, 'link', 'set', h.port, 'master', bridge]);
    await ip([...ul, 'link', 'set', h.port, 'up']);
    await ip([...hn, 'addr', 'add', `${h.address}/24`, 'dev', h.iface]);
    await ip([...hn, 'link', 'set', h.iface, 'up']);
  }

  const ping = async (from: number, to: number | string, o: { timeoutSec?: number } = {}) => {
    const addr = typeof to === 'number' ? host(to).address : to;
    const w = String(o.timeoutSec ?? 1);
    // busybox-static is a setup dependency; iputils ping may be absent
    const r = await exec(from, ['busybox', 'ping', '-c', '1', '-W', w, addr], {
      timeoutMs: (o.timeoutSec ?? 1) * 1000 + 5_000,
    });
    return r.code === 0;
  };

  return {
    prefix,
    linkPrefix,
    underlayNetns,
    subnet,
    dir,
    hosts,
    host,
    address: (i) => host(i).address,
    startDaemon,
    exec,
    ping,
    async partition(i) {
      await ip([...ul, 'link', 'set', host(i).port, 'down']);
    },
    async heal(i) {
      await ip([...ul, 'link', 'set', host(i).port, 'up']);
    },
    processes,
    killHost: (i) => killAll(host(i)),
    teardown,
  };
}
