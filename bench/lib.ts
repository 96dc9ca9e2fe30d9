/**
 * What the benchmarks share: a unique `tsswarm-bench-<hex>` prefix, a daemon started on it,
 * the busybox test image loaded into it, machine facts, statistics, and a cleanup list that runs
 * once — at the end, on an error, or on Ctrl-C/SIGTERM — and ends with cleanupPrefix.
 *
 * Benchmarks print numbers; they assert nothing about timing.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, promises as fs, mkdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../src/api/client.js';
import { cleanupPrefix, TEST_PREFIX } from '../src/engine/cleanup.js';
import type { HostDaemon } from '../test/lib/hosts.js';
import { buildTestImages, type TestImage } from '../test/lib/images.js';

/** Root of the package (dist/bench -> repo). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');
export const BENCH_PREFIX = 'tsswarm-bench-';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function uniquePrefix(): string {
  return `${BENCH_PREFIX}${randomBytes(4).toString('hex')}`;
}

/** `--name N` from argv (a positive whole number), else the default. */
export function intArg(name: string, def: number): number {
  const argv = process.argv.slice(2);
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return def;
  const a = argv[i]!;
  const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1];
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} needs a whole number ≥ 1, not "${v}"`);
    process.exit(2);
  }
  return n;
}

function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return `unavailable (${(e as Error).message.split('\n')[0]})`;
  }
}

/** The exact command and the machine facts, printed at the top of every benchmark. */
export function printHeader(title: string, prefix: string): void {
  // `crun --version` creates its default state dir /run/crun: point it at one of ours instead
  const crunRoot = join('/tmp', prefix, 'crun-state');
  mkdirSync(crunRoot, { recursive: true });
  const cmd = [
    'node',
    ...process.argv.slice(1).map((a) => (a.startsWith(REPO) ? a.slice(REPO.length + 1) : a)),
  ];
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  console.log(`# ${title}`);
  console.log(`command:  ${cmd.join(' ')}   (cwd ${process.cwd()})`);
  console.log(`date:     ${new Date().toISOString()}`);
  console.log(
    `nproc:    ${tryRun('nproc', [])}   cpu: ${cpu}   memory: ${Math.round(os.totalmem() / 2 ** 20)} MiB`,
  );
  console.log(`kernel:   ${tryRun('uname', ['-srm'])}`);
  console.log(`os:       ${osRelease()}`);
  console.log(`node:     ${process.version}`);
  console.log(`runc:     ${tryRun('runc', ['--version']).split('\n')[0]}`);
  console.log(`crun:     ${tryRun('crun', ['--root', crunRoot, '--version']).split('\n')[0]}`);
  console.log(`cgroups:  ${cgroupLayout()}`);
  console.log('');
}

function osRelease(): string {
  try {
    const text = execFileSync('cat', ['/etc/os-release'], { encoding: 'utf8' });
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(text)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** 'v1 hybrid (v1: cpu,… ; cgroup2 at /sys/fs/cgroup/unified with: hugetlb)' and the like. */
export function cgroupLayout(): string {
  const mounts = tryRun('cat', ['/proc/self/mounts'])
    .split('\n')
    .map((l) => l.split(' '));
  const v1 = mounts.filter((f) => f[2] === 'cgroup').map((f) => f[1]!.split('/').pop());
  const v2 = mounts.find((f) => f[2] === 'cgroup2');
  if (!v2) return `v1 (${v1.join(',')})`;
  const ctl = tryRun('cat', [join(v2[1]!, 'cgroup.controllers')]) || '(none)';
  if (v1.length === 0) return `v2 at ${v2[1]} (controllers: ${ctl})`;
  return `v1 hybrid (v1: ${v1.join(',')}; cgroup2 at ${v2[1]} with: ${ctl})`;
}

// ---- statistics ----

export interface Summary {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(values: number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length / 2;
  const median =
    s.length === 0 ? Number.NaN : s.length % 2 ? s[Math.floor(mid)]! : (s[mid - 1]! + s[mid]!) / 2;
  return {
    n: s.length,
    median,
    p90: percentile(s, 90),
    min: s[0] ?? Number.NaN,
    max: s.at(-1) ?? Number.NaN,
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
  };
}

/** Renders rows as text columns: the first (and any in `left`) left-aligned, the others right-aligned. */
export function table(header: string[], rows: string[][], left: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 || left.includes(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// ---- cleanup that runs exactly once, whatever happens ----

type Step = { label: string; fn: () => unknown; phase: number };

/** When a cleanup step runs: normal steps first (last registered first), then the sweep, then layout restores. */
export const Phase = { normal: 0, sweep: 1, restore: 2 } as const;

/**
 * Cleanup steps run by phase, and within a phase in reverse order of registration, each on its
 * own (a failing step is reported and the rest still run). `run()` is idempotent; SIGINT,
 * SIGTERM and SIGHUP run it and exit.
 */
export class Cleanup {
  private readonly steps: Step[] = [];
  private running: Promise<void> | undefined;
  /** Set when a signal arrived: loops should stop starting new work. */
  interrupted = false;

  constructor() {
    const onSignal = (sig: NodeJS.Signals) => {
      if (this.interrupted) return;
      this.interrupted = true;
      console.error(`\n${sig}: cleaning up…`);
      void this.run().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
  }

  add(label: string, fn: () => unknown, phase: number = Phase.normal): void {
    this.steps.push({ label, fn, phase });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length) {
        // the lowest phase, latest registered
        let pick = 0;
        for (let i = 0; i < this.steps.length; i++)
          if (this.steps[i]!.phase <= this.steps[pick]!.phase) pick = i;
        const [s] = this.steps.splice(pick, 1);
        try {
          await s!.fn();
        } catch (e) {
          console.error(`cleanup: ${s!.label}: ${(e as Error).message}`);
        }
      }
    })();
    return this.running;
  }
}

/** Children this process started and has not seen exit; killed by PID at cleanup. */
export const liveChildren = new Set<ChildProcess>();

export function killLiveChildren(): void {
  for (const c of liveChildren) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {}
    }
  }
}

// ---- the daemon under test ----

export interface BenchDaemon {
  prefix: string;
  dir: string;
  dataRoot: string;
  socket: string;
  client: Client;
  pid: number;
  /** What the daemon printed (for error messages). */
  log(): string;
}

/**
 * Starts `tsswarm daemon` with data root, socket and cgroup parent named with the prefix, in its
 * own process group (so a Ctrl-C reaches the benchmark, which removes the containers first),
 * and registers its end: remove every container, kill the daemon by PID, cleanupPrefix.
 */
export async function startBenchDaemon(prefix: string, cleanup: Cleanup): Promise<BenchDaemon> {
  const dir = join('/tmp', prefix);
  const dataRoot = join(dir, 'root');
  const socket = join(dir, 'd.sock');
  await fs.mkdir(dir, { recursive: true });
  let log = '';
  const child = spawn(
    process.execPath,
    [CLI, 'daemon', '--data-root', dataRoot, '--socket', socket, '--cgroup-parent', prefix, '--no-datapath'],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const client = new Client({ url: `unix://${socket}`, socketPath: socket });
  cleanup.add('daemon', async () => {
    if (child.exitCode === null && child.signalCode === null) {
      await removeAllContainers(client).catch((e: Error) =>
        console.error(`cleanup: removing containers: ${e.message}`),
      );
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(child.pid!, 'SIGTERM');
      } catch {}
      await Promise.race([exited, sleep(3000)]);
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid!, 'SIGKILL');
        } catch {}
        await Promise.race([exited, sleep(2000)]);
      }
    }
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`the daemon exited early (${child.exitCode}): ${log}`);
    if (
      existsSync(socket) &&
      (await client.request('GET', '/_ping').then(
        () => true,
        () => false,
      ))
    )
      break;
    if (i > 400) throw new Error(`the daemon did not come up within 20 s: ${log}`);
    await sleep(50);
  }
  return { prefix, dir, dataRoot, socket, client, pid: child.pid!, log: () => log };
}

interface ContainerView {
  Id: string;
  Name: string;
  State: { Status: string; Pid: number };
}

/** Force-removes every container of the daemon (running ones are killed first). */
export async function removeAllContainers(client: Client): Promise<number> {
  const all = await client.request<ContainerView[]>('GET', '/containers/json', { query: { all: 1 } });
  // a few at a time: each force-remove waits for its container's exit
  let n = 0;
  for (let i = 0; i < all.length; i += 8) {
    await Promise.all(
      all.slice(i, i + 8).map((c) =>
        client.request('DELETE', `/containers/${c.Id}`, { query: { force: 1 } }).then(
          () => n++,
          (e: Error) => console.error(`cleanup: rm ${c.Name}: ${e.message}`),
        ),
      ),
    );
  }
  return n;
}

/**
 * The final sweep: whatever still carries the prefix (processes, mounts, cgroups, netns, /tmp
 * dirs). The parent cgroups (the daemon's --cgroup-parent, the runtimes' cgroupsPath parent) are
 * expected here; a process, a mount, a netns or a container's own cgroup is a leftover and is
 * reported as such.
 */
export function registerSweep(prefix: string, cleanup: Cleanup): void {
  cleanup.add(
    'sweep',
    async () => {
      killLiveChildren();
      const r = await cleanupPrefix(prefix);
      const children = r.cgroups.filter(
        (c) => c.includes(`/${prefix}`) && /\/tsswarm-bench-[^/]+\/./.test(c),
      );
      const leftovers = {
        ...(r.processes.length ? { processes: r.processes } : {}),
        ...(r.mounts.length ? { mounts: r.mounts } : {}),
        ...(r.netns.length ? { netns: r.netns } : {}),
        ...(r.loopDevices.length ? { loopDevices: r.loopDevices } : {}),
        ...(children.length ? { cgroups: children } : {}),
      };
      if (Object.keys(leftovers).length) {
        console.error(`cleanup: LEFTOVERS removed by the final sweep: ${JSON.stringify(leftovers)}`);
      }
      console.log(
        `cleanup: final sweep (cleanupPrefix ${prefix}): ${r.processes.length} processes, ${r.mounts.length} mounts, ` +
          `${r.netns.length} netns, ${children.length} container cgroups; ${r.cgroups.length - children.length} parent cgroup dirs ` +
          `and ${r.dirs.length} /tmp dir removed`,
      );
    },
    Phase.sweep,
  );
}

// ---- the image ----

export interface LoadedImage {
  id: string;
  image: TestImage;
  /** Directory of the image's (single) unpacked layer in the daemon's data root. */
  layerDir: string;
}

/** Builds the busybox base test image (from /bin/busybox), unless given, and loads it into the daemon. */
export async function loadBusybox(d: BenchDaemon, prebuilt?: TestImage): Promise<LoadedImage> {
  const base = prebuilt ?? (await buildTestImages(join(d.dir, 'images'))).base;
  const loaded = await d.client.request<Array<{ Id: string; RepoTags: string[] }>>('POST', '/images/load', {
    upload: createReadStream(base.ociArchive),
  });
  const id = loaded[0]?.Id;
  if (!id) throw new Error('image load returned no image');
  const rec = await d.client.request<{ layers: string[] }>('GET', '/images/inspect', { query: { ref: id } });
  if (rec.layers.length !== 1) throw new Error(`expected a one-layer image, got ${rec.layers.length} layers`);
  const layerDir = join(d.dataRoot, 'images', 'layers', rec.layers[0]!.replace(/^sha256:/, ''));
  if (!existsSync(layerDir)) throw new Error(`layer directory ${layerDir} not found`);
  return { id, image: base, layerDir };
}

export interface MemKb {
  /** Private_Clean + Private_Dirty */
  private: number;
  privateClean: number;
  privateDirty: number;
  rss: number;
  pss: number;
}

/** A process's memory in KiB from /proc/PID/smaps_rollup; private = Private_Clean + Private_Dirty. */
export async function memKb(pid: number): Promise<MemKb> {
  const text = await fs.readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}/smaps_rollup has no ${k}`);
    return Number(m[1]);
  };
  const privateClean = field('Private_Clean');
  const privateDirty = field('Private_Dirty');
  return {
    private: privateClean + privateDirty,
    privateClean,
    privateDirty,
    rss: field('Rss'),
    pss: field('Pss'),
  };
}

// ---- benchmarks on simulated hosts (test/lib/hosts.ts) ----

/**
 * The setting of a benchmark on simulated hosts: a `tsswarm-test-<kind>-<hex>` prefix (hosts.ts
 * requires the test prefix), a final sweep that removes and reports whatever still carries it
 * after the hosts' own teardown, and a tap-like `t` whose teardown callbacks run as cleanup steps
 * (last registered first, once: at the end, on an error, or on SIGINT/SIGTERM/SIGHUP).
 */
export function hostsBench(
  cleanup: Cleanup,
  kind: string,
): { prefix: string; t: { teardown(fn: () => unknown): void } } {
  const prefix = `${TEST_PREFIX}${kind}-${randomBytes(4).toString('hex')}`;
  cleanup.add(
    'sweep',
    async () => {
      const r = await cleanupPrefix(prefix);
      const left = {
        ...(r.processes.length ? { processes: r.processes } : {}),
        ...(r.mounts.length ? { mounts: r.mounts } : {}),
        ...(r.netns.length ? { netns: r.netns } : {}),
        ...(r.cgroups.length ? { cgroups: r.cgroups } : {}),
        ...(r.loopDevices.length ? { loopDevices: r.loopDevices } : {}),
      };
      console.log(
        Object.keys(left).length
          ? `cleanup: LEFTOVERS removed by the final sweep: ${JSON.stringify(left)}`
          : `cleanup: everything named ${prefix} is gone (final sweep found no process, mount, netns or cgroup)`,
      );
    },
    Phase.sweep,
  );
  return { prefix, t: { teardown: (fn) => cleanup.add('hosts', fn) } };
}

/** Runs a benchmark with its cleanup (always run) and exits with its code (1 on an error). */
export function runBench(bench: (cleanup: Cleanup) => Promise<number>): void {
  const cleanup = new Cleanup();
  bench(cleanup)
    .finally(() => cleanup.run())
    .then(
      (code) => process.exit(code),
      (e: Error) => {
        console.error(e.stack ?? e.message);
        process.exit(1);
      },
    );
}

/** A CLI command on a simulated host's daemon; its stdout, or an error with its stderr. */
export async function hostCli(d: HostDaemon, args: string[]): Promise<string> {
  const r = await d.cli(args, { timeoutMs: 120_000 });
  if (r.code !== 0)
    throw new Error(`host ${d.index}: tsswarm ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Polls get() every 50 ms until ok(value), for at most limitMs; throws with the last value. */
export async function waitFor<T>(
  what: string,
  get: () => Promise<T>,
  ok: (v: T) => boolean,
  limitMs = 90_000,
) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await get().catch(() => undefined);
    if (v !== undefined && ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)?.slice(0, 500)}`);
    await sleep(50);
  }
}
