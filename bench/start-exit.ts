/**
 * Container start→exit of `/bin/true`: the running tsswarm engine (create + start + wait + remove
 * through its API) side by side with Debian's `runc run` and `crun run` on the same rootfs (a
 * copy of the busybox base image's unpacked layer from the daemon's data root).
 *
 *   node dist/bench/start-exit.js [--runs 50] [--warmup 5] [--force-hugetlb]
 *
 * The three tools are interleaved run by run (round-robin, the first tool rotating each round)
 * so that machine noise hits them equally. Prints numbers only; asserts nothing.
 *
 * On a hybrid cgroup layout (v1 hierarchies + a cgroup2 mount holding hugetlb) crun refuses to
 * run ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"). The benchmark
 * then mounts hugetlb as a v1 hierarchy at /sys/fs/cgroup/hugetlb for its duration — possible
 * only while no cgroup2 subtree_control enables hugetlb — and restores the original layout at
 * the end (umount, rmdir, hugetlb back in cgroup2), also on an error or Ctrl-C. A tsswarm daemon
 * reads the layout once at its start, so the benchmark refuses to move hugetlb while other
 * tsswarm daemons run (tests, say) unless given --force-hugetlb, and at the restore it waits for
 * child cgroups it did not create to go (a v1 hierarchy unmounted with children stays alive,
 * hidden, and keeps hugetlb off cgroup2) — if they stay, it leaves the mount and says how to
 * restore it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildTestImages } from '../test/lib/images.js';
import {
  Cleanup,
  cgroupLayout,
  intArg,
  liveChildren,
  loadBusybox,
  nowMs,
  Phase,
  printHeader,
  registerSweep,
  sleep,
  startBenchDaemon,
  summarize,
  table,
  uniquePrefix,
} from './lib.js';

const run = promisify(execFile);

const RUNS = intArg('runs', 50);
const WARMUP = intArg('warmup', 5);
const HUGETLB_MNT = '/sys/fs/cgroup/hugetlb';

type Tool = 'tsswarm' | 'runc' | 'crun';
const TOOLS: Tool[] = ['tsswarm', 'runc', 'crun'];

interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

/** Spawns a process and times it from spawn to exit. */
function timed(cmd: string, args: string[]): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      reject(e);
      return;
    }
    liveChildren.add(child);
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', (e) => {
      liveChildren.delete(child);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      const ms = nowMs() - t0;
      liveChildren.delete(child);
      // stderr may still be draining; 'close' follows shortly
      child.on('close', () => resolve({ code, signal, stderr: stderr.trim(), ms }));
    });
  });
}

/** An OCI runtime (runc or crun) with its own state root under the benchmark's directory. */
class OciRuntime {
  private n = 0;
  constructor(
    readonly name: 'runc' | 'crun',
    private readonly stateRoot: string,
    private readonly bundle: string,
    readonly prefix: string,
  ) {}

  nextId(label = ''): string {
    return `${this.prefix}-${this.name}${label}-${++this.n}`;
  }

  /** `runc --root S run --bundle B ID`, spawn to exit; deletes anything the run left behind. */
  async runOnce(id = this.nextId()): Promise<ProcResult> {
    const r = await timed(this.name, ['--root', this.stateRoot, 'run', '--bundle', this.bundle, id]);
    if (existsSync(join(this.stateRoot, id))) await this.delete(id);
    return r;
  }

  async delete(id: string): Promise<void> {
    await run(this.name, ['--root', this.stateRoot, 'delete', '--force', id]).catch(() => {});
  }

  /** Deletes every container still listed in this runtime's state root. */
  async deleteAll(): Promise<void> {
    const ids = await fs.readdir(this.stateRoot).catch(() => [] as string[]);
    for (const id of ids) if (id.startsWith(this.prefix)) await this.delete(id);
  }
}

// ---- hugetlb on v1 for crun (hybrid layout) ----

/** The cgroup2 mountpoint, if any. */
async function unifiedRoot(): Promise<string | undefined> {
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
  return mounts
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2')?.[1];
}

/** Cgroup2 directories whose cgroup.subtree_control enables hugetlb. */
async function hugetlbEnabledIn(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number) => {
    const ctl = await fs.readFile(join(dir, 'cgroup.subtree_control'), 'utf8').catch(() => '');
    if (ctl.split(/\s+/).includes('hugetlb')) found.push(dir);
    if (depth > 8) return;
    for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name), depth + 1);
    }
  };
  await walk(root, 0);
  return found;
}

/** PIDs of running `tsswarm daemon` processes (the benchmark starts its own only later). */
async function otherDaemons(): Promise<number[]> {
  const out: number[] = [];
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const argv = (await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const i = argv.findIndex((a) => a.endsWith('cli/main.js') || a.endsWith('/tsswarm') || a === 'tsswarm');
    if (i >= 0 && argv[i + 1] === 'daemon') out.push(Number(p));
  }
  return out;
}

/** hugetlb's line of /proc/cgroups: its hierarchy id (0 = on cgroup2) and number of cgroups. */
async function hugetlbLine(): Promise<{ hierarchy: number; cgroups: number }> {
  const text = await fs.readFile('/proc/cgroups', 'utf8');
  const f =
    text
      .split('\n')
      .find((l) => l.startsWith('hugetlb\t'))
      ?.split('\t') ?? [];
  return { hierarchy: Number(f[1] ?? -1), cgroups: Number(f[2] ?? -1) };
}

/** Child cgroup directories under the v1 hugetlb mount, deepest first. */
async function hugetlbChildren(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      await walk(join(dir, e.name));
      out.push(join(dir, e.name));
    }
  };
  await walk(HUGETLB_MNT);
  return out;
}

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; ; await sleep(100)) {
    if (await check()) return true;
    if (Date.now() > end) return false;
  }
}

/**
 * Puts hugetlb back on cgroup2. A v1 hierarchy is only freed when it is unmounted with no child
 * cgroups left — and an rmdir'ed cgroup leaves its parent's list asynchronously — so: remove
 * our children, wait until the kernel counts only the root, umount, rmdir, and check that
 * hugetlb is back in cgroup.controllers. If it is not (a child was still there at umount), the
 * hidden hierarchy is mounted again and the sequence repeated.
 */
async function restoreHugetlb(prefix: string, unified: string, state: { dir: boolean; mounted: boolean }) {
  if (!state.mounted) {
    // the mount never happened: only the directory (if any) to remove
    if (state.dir) await fs.rmdir(HUGETLB_MNT);
    state.dir = false;
    return;
  }
  for (let attempt = 1; attempt <= 3; attempt++) {
    if (attempt > 1) {
      // mounting hugetlb again re-attaches the hidden hierarchy, so its children can be removed
      await fs.mkdir(HUGETLB_MNT);
      state.dir = true;
      await run('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', HUGETLB_MNT]);
      state.mounted = true;
    }
    for (const c of await hugetlbChildren()) {
      if (c.slice(HUGETLB_MNT.length + 1).startsWith(prefix)) await fs.rmdir(c).catch(() => {});
    }
    // Another daemon started meanwhile (tests?) may have cgroups here. Unmounting now would hide
    // them in a detached hierarchy its own cleanup can no longer see; better leave it mounted.
    const foreign = await hugetlbChildren();
    if (foreign.length)
      console.error(`waiting up to 60 s for child cgroups of others to go: ${foreign.join(', ')}`);
    if (!(await until(async () => (await hugetlbChildren()).length === 0, 60_000))) {
      throw new Error(
        `${HUGETLB_MNT} still has child cgroups this benchmark did not create: ${(await hugetlbChildren()).join(', ')}. ` +
          `Left mounted; once they are gone restore with: umount ${HUGETLB_MNT} && rmdir ${HUGETLB_MNT}`,
      );
    }
    await until(async () => (await hugetlbLine()).cgroups <= 1, 5_000);
    let err: Error | undefined;
    for (let i = 0; i < 20; i++) {
      err = await run('umount', [HUGETLB_MNT]).then(
        () => undefined,
        (e: Error) => e,
      );
      if (!err) break;
      await sleep(100);
    }
    if (err) throw new Error(`umount ${HUGETLB_MNT}: ${err.message}`);
    state.mounted = false;
    await fs.rmdir(HUGETLB_MNT);
    state.dir = false;
    const back = await until(async () => (await hugetlbLine()).hierarchy === 0, 5_000);
    const ctl = (await fs.readFile(join(unified, 'cgroup.controllers'), 'utf8')).trim();
    if (back && ctl.split(/\s+/).includes('hugetlb')) {
      console.log(`restored: ${HUGETLB_MNT} unmounted and removed; ${unified}/cgroup.controllers: ${ctl}`);
      return;
    }
    console.error(`hugetlb not yet back on cgroup2 after umount (attempt ${attempt}); retrying`);
  }
  throw new Error(`hugetlb did not return to cgroup2; check \`grep hugetlb /proc/cgroups\``);
}

/**
 * Makes crun work on this machine. When crun fails because of the hybrid layout, mounts hugetlb
 * as a v1 hierarchy (registering the restore first) and checks crun again.
 */
async function ensureCrunRuns(crun: OciRuntime, cleanup: Cleanup): Promise<string> {
  const probe = await crun.runOnce(crun.nextId('-probe'));
  if (probe.code === 0) return 'crun runs on the layout as it is; nothing mounted';
  if (!/hybrid mode not supported/.test(probe.stderr)) {
    throw new Error(`crun fails on this machine: ${probe.stderr || `exit ${probe.code}`}`);
  }
  const unified = await unifiedRoot();
  if (!unified)
    throw new Error(`crun reports a hybrid layout but no cgroup2 mount is visible: ${probe.stderr}`);
  const controllers = (await fs.readFile(join(unified, 'cgroup.controllers'), 'utf8')).trim().split(/\s+/);
  const others = controllers.filter((c) => c && c !== 'hugetlb');
  if (others.length) {
    throw new Error(
      `crun needs an empty cgroup2 controller list, and it holds ${others.join(',')} besides hugetlb: not changing that`,
    );
  }
  if (existsSync(HUGETLB_MNT)) {
    throw new Error(
      `${HUGETLB_MNT} already exists (another run's? check \`mount | grep hugetlb\`): not touching it`,
    );
  }
  // A tsswarm daemon reads the cgroup layout once, at its start: one started while hugetlb is on
  // v1 creates cgroups there, and fails to once it is restored. Do not change the layout under others.
  const daemons = await otherDaemons();
  if (daemons.length && !process.argv.includes('--force-hugetlb')) {
    throw new Error(
      `crun needs hugetlb moved to a v1 mount for this run, and other tsswarm daemons are running (pids ${daemons.join(', ')}; tests?): ` +
        'daemons started while it is moved would break when it is restored. Rerun when they are gone (or pass --force-hugetlb)',
    );
  }
  const enabled = await hugetlbEnabledIn(unified);
  if (enabled.length) {
    throw new Error(
      `hugetlb is enabled in cgroup2 subtree_control of ${enabled.join(', ')}: it cannot move to v1`,
    );
  }
  const state = { dir: false, mounted: false };
  cleanup.add('restore hugetlb', () => restoreHugetlb(crun.prefix, unified, state), Phase.restore);
  await fs.mkdir(HUGETLB_MNT);
  state.dir = true;
  await run('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', HUGETLB_MNT]);
  state.mounted = true;
  const again = await crun.runOnce(crun.nextId('-probe'));
  if (again.code !== 0) throw new Error(`crun still fails after mounting hugetlb on v1: ${again.stderr}`);
  return `crun refused the hybrid layout ("${probe.stderr}"); mounted hugetlb as v1 at ${HUGETLB_MNT} for the run (restored at the end)`;
}

// ---- tsswarm through the API ----

interface Split {
  create: number;
  start: number;
  wait: number;
  remove: number;
  total: number;
}

async function main(): Promise<void> {
  // cleanup order: daemon (containers removed) and runtimes' leftovers, then the sweep, then layout restores
  const cleanup = new Cleanup();
  const prefix = uniquePrefix();
  registerSweep(prefix, cleanup);
  printHeader('start→exit of /bin/true: tsswarm (running daemon, API) vs runc run vs crun run', prefix);
  console.log(`prefix:   ${prefix}   runs: ${RUNS} per tool after ${WARMUP} warm-up rounds`);
  let exitCode = 0;
  try {
    const dir = join('/tmp', prefix);
    const bundle = join(dir, 'bundle');
    const rootfs = join(bundle, 'rootfs');
    await fs.mkdir(rootfs, { recursive: true });
    const runtimes = {
      runc: new OciRuntime('runc', join(dir, 'runc-state'), bundle, prefix),
      crun: new OciRuntime('crun', join(dir, 'crun-state'), bundle, prefix),
    };
    cleanup.add('oci containers', async () => {
      await runtimes.runc.deleteAll();
      await runtimes.crun.deleteAll();
    });

    // The bundle: `runc spec` + /bin/true, no terminal, a cgroup path named with the prefix.
    await run('runc', ['spec', '--bundle', bundle]);
    const specPath = join(bundle, 'config.json');
    const spec = JSON.parse(await fs.readFile(specPath, 'utf8'));
    spec.process.args = ['/bin/true'];
    spec.process.terminal = false;
    spec.linux.cgroupsPath = `/${prefix}-oci/bench`;
    const peerNs: string[] = spec.linux.namespaces.map((n: { type: string }) => n.type);

    // The rootfs for crun's probe: the same layer tar the daemon loads, unpacked by GNU tar.
    // (Replaced below by a copy of the daemon's own unpacked layer.)
    const { base } = await buildTestImages(join(dir, 'images'));
    const layerTar = join(dir, 'layer.tar');
    await fs.writeFile(layerTar, base.layers[0]!.tar);
    await run('tar', ['-xf', layerTar, '-C', rootfs, '--numeric-owner', '-p']);
    await fs.writeFile(specPath, JSON.stringify(spec, null, 2));

    // crun on a hybrid layout: mount hugetlb on v1 before the daemon starts, so that all three
    // tools see the same cgroup hierarchies.
    const crunNote = await ensureCrunRuns(runtimes.crun, cleanup);
    console.log(`crun:     ${crunNote}`);
    const runcProbe = await runtimes.runc.runOnce(runtimes.runc.nextId('-probe'));
    if (runcProbe.code !== 0) throw new Error(`runc run fails: ${runcProbe.stderr}`);
    console.log(`layout:   ${cgroupLayout()}`);

    const d = await startBenchDaemon(prefix, cleanup);
    const img = await loadBusybox(d, base);
    await fs.rm(rootfs, { recursive: true, force: true });
    await run('cp', ['-a', img.layerDir, rootfs]);
    console.log(`rootfs:   ${rootfs} = cp -a ${img.layerDir} (the image's unpacked layer)`);

    const c = d.client;
    let seq = 0;
    const tsswarmOnce = async (): Promise<Split & { exit: number }> => {
      const name = `${prefix}-${++seq}`;
      const t0 = nowMs();
      const { Id } = await c.request<{ Id: string }>('POST', '/containers/create', {
        body: { image: img.id, name, cmd: ['/bin/true'] },
      });
      const t1 = nowMs();
      await c.request('POST', `/containers/${Id}/start`);
      const t2 = nowMs();
      const w = await c.request<{ StatusCode: number; Error: string }>('POST', `/containers/${Id}/wait`);
      const t3 = nowMs();
      await c.request('DELETE', `/containers/${Id}`);
      const t4 = nowMs();
      if (w.StatusCode !== 0) throw new Error(`tsswarm: /bin/true exited ${w.StatusCode} ${w.Error}`);
      return {
        create: t1 - t0,
        start: t2 - t1,
        wait: t3 - t2,
        remove: t4 - t3,
        total: t4 - t0,
        exit: w.StatusCode,
      };
    };

    // What our shim is asked to unshare: read from a real container's spec file (untimed).
    {
      const { Id } = await c.request<{ Id: string }>('POST', '/containers/create', {
        body: { image: img.id, name: `${prefix}-nsprobe`, cmd: ['/bin/sleep', '5'] },
      });
      await c.request('POST', `/containers/${Id}/start`);
      const shimSpec = await fs.readFile(join(d.dataRoot, 'containers', Id, 'spec'), 'utf8');
      await c.request('DELETE', `/containers/${Id}`, { query: { force: 1 } });
      const ours = shimSpec
        .split('\n')
        .filter((l) => l.startsWith('ns '))
        .map((l) => l.slice(3));
      console.log(`namespaces: tsswarm ${ours.join(',')}  |  runc/crun (runc spec) ${peerNs.join(',')}`);
      const norm = (n: string) => ({ mnt: 'mount', net: 'network' })[n] ?? n;
      const a = new Set(ours.map(norm));
      const b = new Set(peerNs);
      const onlyOurs = [...a].filter((n) => !b.has(n));
      const onlyPeers = [...b].filter((n) => !a.has(n));
      console.log(
        onlyOurs.length || onlyPeers.length
          ? `            differ: only tsswarm ${onlyOurs.join(',') || '-'}; only runc/crun ${onlyPeers.join(',') || '-'}`
          : `            the same set${a.has('cgroup') ? '' : ' (neither unshares the cgroup namespace)'}`,
      );
    }
    console.log(
      'other differences: tsswarm mounts an overlay (layer + fresh upper/work per container) and binds ' +
        '/etc/hostname,/etc/hosts, keeps state/log files and a supervising shim, and is driven over HTTP; ' +
        `runc/crun use the plain directory as root (readonly=${spec.root.readonly}), foreground run, no supervisor.`,
    );
    console.log('');

    const samples: Record<Tool, number[]> = { tsswarm: [], runc: [], crun: [] };
    const splits: Split[] = [];
    let failures = 0;
    const once = async (tool: Tool, record: boolean) => {
      if (tool === 'tsswarm') {
        const s = await tsswarmOnce();
        if (record) {
          samples.tsswarm.push(s.total);
          splits.push(s);
        }
        return;
      }
      const r = await runtimes[tool].runOnce();
      if (r.code !== 0) {
        failures++;
        console.error(`${tool} run failed (exit ${r.code ?? r.signal}): ${r.stderr}`);
        if (failures > 5) throw new Error('too many failed runs');
        return;
      }
      if (record) samples[tool].push(r.ms);
    };

    const rounds = WARMUP + RUNS;
    for (let round = 0; round < rounds && !cleanup.interrupted; round++) {
      const record = round >= WARMUP;
      for (let k = 0; k < TOOLS.length && !cleanup.interrupted; k++) {
        await once(TOOLS[(round + k) % TOOLS.length]!, record);
      }
      if (record && (round - WARMUP + 1) % 10 === 0)
        process.stderr.write(`  ${round - WARMUP + 1}/${RUNS} rounds\n`);
    }
    if (cleanup.interrupted) return;

    const st = {
      tsswarm: summarize(samples.tsswarm),
      runc: summarize(samples.runc),
      crun: summarize(samples.crun),
    };
    const f = (x: number) => x.toFixed(1);
    const ratio = (peer: Tool) =>
      peer === 'tsswarm' ? '1.00' : (st.tsswarm.median / st[peer].median).toFixed(2);
    console.log(
      table(
        ['tool', 'runs', 'median ms', 'p90 ms', 'min ms', 'max ms', 'tsswarm/peer (median)'],
        TOOLS.map((t) => [
          t === 'tsswarm' ? 'tsswarm (create+start+wait+rm)' : `${t} run`,
          String(st[t].n),
          f(st[t].median),
          f(st[t].p90),
          f(st[t].min),
          f(st[t].max),
          t === 'tsswarm' ? '-' : ratio(t),
        ]),
      ),
    );
    const part = (k: keyof Split) => summarize(splits.map((s) => s[k]));
    console.log('');
    console.log(
      table(
        ['tsswarm split', 'median ms', 'p90 ms', 'min ms'],
        (['create', 'start', 'wait', 'remove'] as const).map((k) => {
          const s = part(k);
          return [
            `${k} (${k === 'wait' ? 'POST wait' : k === 'remove' ? 'DELETE' : `POST ${k}`})`,
            f(s.median),
            f(s.p90),
            f(s.min),
          ];
        }),
      ),
    );
    console.log('');
    const r = st.tsswarm.median / st.crun.median;
    console.log(
      r <= 1
        ? `verdict: MET — tsswarm start→exit median ${f(st.tsswarm.median)} ms ≤ crun ${f(st.crun.median)} ms (×${r.toFixed(2)}); target "no slower than crun"`
        : `verdict: NOT MET — tsswarm start→exit median ${f(st.tsswarm.median)} ms vs crun ${f(st.crun.median)} ms: ×${r.toFixed(2)} slower; target "no slower than crun"`,
    );
  } catch (e) {
    exitCode = 1;
    console.error(
      `start-exit: ${process.env.TSSWARM_DEBUG ? ((e as Error).stack ?? e) : ((e as Error).message ?? e)}`,
    );
  } finally {
    await cleanup.run();
  }
  process.exitCode = exitCode;
}

await main();
