/**
 * Private memory of the processes that support each container: starts N (default 50) containers
 * running `sleep 600` through a tsswarm daemon, then reads Private_Clean + Private_Dirty from
 * /proc/PID/smaps_rollup of every container's tsswarm-shim (its PID is `shimPid` in the bundle's
 * state.json; the API's State.Pid is the container's PID 1). The containers' own PID 1 and the
 * daemon are measured for context. Everything is removed at the end, pass or fail or Ctrl-C.
 *
 *   node dist/bench/shim-memory.js [--containers 50]
 *
 * The conmon figure (≈ 330 KB private per container) is the design's reference number, not
 * measured here. Prints numbers only; asserts nothing.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  Cleanup,
  intArg,
  loadBusybox,
  type MemKb,
  memKb,
  nowMs,
  printHeader,
  registerSweep,
  sleep,
  startBenchDaemon,
  summarize,
  table,
  uniquePrefix,
} from './lib.js';

const CONTAINERS = intArg('containers', 50);
/** The design's reference: conmon's private memory per container (not measured here). */
const CONMON_KB = 330;
/** The target for our shim. */
const TARGET_KB = 300;

interface ContainerView {
  Id: string;
  Name: string;
  State: { Status: string; Running: boolean; Pid: number };
}

async function statusKb(pid: number, key: string): Promise<number> {
  const text = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
}

async function main(): Promise<void> {
  // cleanup order: daemon (containers removed) and runtimes' leftovers, then the sweep, then layout restores
  const cleanup = new Cleanup();
  const prefix = uniquePrefix();
  registerSweep(prefix, cleanup);
  printHeader(`private memory per container of the supporting processes (${CONTAINERS} × sleep 600)`, prefix);
  console.log(`prefix:   ${prefix}   containers: ${CONTAINERS}`);
  let exitCode = 0;
  try {
    const d = await startBenchDaemon(prefix, cleanup);
    const info = await d.client.request<{ Shim: string; CgroupVersion: number }>('GET', '/info');
    const shimFile = execFileSync('file', ['-b', info.Shim], { encoding: 'utf8' }).trim().split(',');
    console.log(
      `shim:     ${info.Shim} (${statSync(info.Shim).size} bytes;${shimFile.filter((s) => /link|stripped/.test(s)).join(',')})`,
    );
    const img = await loadBusybox(d);
    const daemonBefore = await statusKb(d.pid, 'VmRSS');

    const ids: string[] = [];
    const t0 = nowMs();
    for (let i = 1; i <= CONTAINERS && !cleanup.interrupted; i++) {
      const { Id } = await d.client.request<{ Id: string }>('POST', '/containers/create', {
        body: { image: img.id, name: `${prefix}-${i}`, cmd: ['sleep', '600'] },
      });
      ids.push(Id);
      await d.client.request('POST', `/containers/${Id}/start`);
    }
    if (cleanup.interrupted) return;
    console.log(`started:  ${ids.length} containers in ${((nowMs() - t0) / 1000).toFixed(1)} s`);
    await sleep(1000); // let every shim reach its steady state (log pipes, ctl.sock, watcher connected)

    const shims: MemKb[] = [];
    const inits: MemKb[] = [];
    for (const id of ids) {
      const v = await d.client.request<ContainerView>('GET', `/containers/${id}/json`);
      if (!v.State.Running) throw new Error(`container ${v.Name} is ${v.State.Status}, not running`);
      const state = JSON.parse(
        await fs.readFile(join(d.dataRoot, 'containers', id, 'state.json'), 'utf8'),
      ) as {
        shimPid: number;
      };
      const cmd = await fs.readFile(`/proc/${state.shimPid}/cmdline`, 'utf8');
      if (!cmd.includes('tsswarm-shim') || !cmd.includes(id)) {
        throw new Error(`shimPid ${state.shimPid} of ${v.Name} is not its shim (${cmd.replace(/\0/g, ' ')})`);
      }
      shims.push(await memKb(state.shimPid));
      inits.push(await memKb(v.State.Pid));
    }
    const daemonRss = await statusKb(d.pid, 'VmRSS');
    const daemonMem = await memKb(d.pid);

    const row = (label: string, xs: number[]) => {
      const s = summarize(xs);
      return [label, s.mean.toFixed(0), s.median.toFixed(0), s.min.toFixed(0), s.max.toFixed(0)];
    };
    console.log('');
    console.log(
      `per container, KiB (n = ${ids.length}; private = Private_Clean + Private_Dirty of smaps_rollup)`,
    );
    console.log(
      table(
        ['process', 'avg', 'median', 'min', 'max'],
        [
          row(
            'tsswarm-shim private',
            shims.map((m) => m.private),
          ),
          row(
            '  Private_Clean',
            shims.map((m) => m.privateClean),
          ),
          row(
            '  Private_Dirty',
            shims.map((m) => m.privateDirty),
          ),
          row(
            '  Rss',
            shims.map((m) => m.rss),
          ),
          row(
            '  Pss',
            shims.map((m) => m.pss),
          ),
          row(
            'container PID 1 (sleep) private',
            inits.map((m) => m.private),
          ),
          row(
            '  Rss',
            inits.map((m) => m.rss),
          ),
          row(
            '  Pss',
            inits.map((m) => m.pss),
          ),
        ],
      ),
    );
    console.log('');
    console.log(
      `daemon (pid ${d.pid}): VmRSS ${daemonRss} KiB with ${ids.length} containers (${daemonBefore} KiB before starting them), ` +
        `private ${daemonMem.private} KiB — one per host, not per container`,
    );
    console.log(
      "note: the shims share the static binary's pages, so with many containers they are not private to any one " +
        'shim (Pss splits them); a lone shim counts them as Private_Clean (about 110 KiB more: `--containers 1`)',
    );
    const avg = summarize(shims.map((m) => m.private)).mean;
    console.log('');
    console.log(
      table(
        ['per-container supervisor', 'private KiB', 'source'],
        [
          ['tsswarm-shim (avg)', avg.toFixed(0), `measured here, ${ids.length} containers`],
          ['conmon (Podman)', `≈${CONMON_KB}`, "the design's reference number, NOT measured here"],
          ['target', `≤${TARGET_KB}`, ''],
        ],
        [2],
      ),
    );
    console.log(
      avg <= TARGET_KB
        ? `verdict: MET — tsswarm-shim averages ${avg.toFixed(0)} KiB private per container (target ≤ ${TARGET_KB}; conmon ≈ ${CONMON_KB}, reference): ×${(avg / CONMON_KB).toFixed(2)} of conmon`
        : `verdict: NOT MET — tsswarm-shim averages ${avg.toFixed(0)} KiB private per container, above the target ≤ ${TARGET_KB} (conmon ≈ ${CONMON_KB}, reference)`,
    );
  } catch (e) {
    exitCode = 1;
    console.error(
      `shim-memory: ${process.env.TSSWARM_DEBUG ? ((e as Error).stack ?? e) : ((e as Error).message ?? e)}`,
    );
  } finally {
    const t = nowMs();
    await cleanup.run();
    console.log(`cleanup took ${((nowMs() - t) / 1000).toFixed(1)} s`);
  }
  process.exitCode = exitCode;
}

await main();
