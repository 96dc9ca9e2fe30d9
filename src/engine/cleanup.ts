import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Name prefix of everything a test run creates; each run adds a unique suffix. */
export const TEST_PREFIX = 'tsswarm-test-';

export interface CleanupReport {
  processes: number[];
  mounts: string[];
  cgroups: string[];
  netns: string[];
  links: string[];
  loopDevices: string[];
  dirs: string[];
}

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

/** Every cgroup directory below root whose top-level name starts with prefix, deepest first. */
async function cgroupDirs(prefix: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
    out.push(dir);
  };
  for (const root of await cgroupRoots()) {
    const top = await fs.readdir(root, { withFileTypes: true }).catch(() => []);
    for (const e of top) if (e.isDirectory() && e.name.startsWith(prefix)) await walk(join(root, e.name));
  }
  return out;
}

async function procsIn(dirs: string[]): Promise<number[]> {
  const pids = new Set<number>();
  for (const d of dirs) {
    const text = await fs.readFile(join(d, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const p of text.split('\n')) if (p) pids.add(Number(p));
  }
  return [...pids];
}

/** Processes this project started for the prefix: shims, daemons and helpers whose command line names it. */
async function processesNaming(prefix: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || pid === process.ppid) continue;
    const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(prefix) && /tsswarm|etcd|consul|iperf3|busybox|node/.test(cmd)) out.push(pid);
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Removes what runs with the given prefix left behind: their processes (found by PID in
 * their cgroups and command lines), mounts, cgroups, network namespaces and links,
 * loop devices and directories under tmpRoot. Safe to run when nothing is left.
 */
export async function cleanupPrefix(
  prefix: string,
  opts: { tmpRoot?: string; linkPrefix?: string } = {},
): Promise<CleanupReport> {
  if (prefix.length < 4) throw new Error(`refusing to clean up with the short prefix "${prefix}"`);
  const report: CleanupReport = {
    processes: [],
    mounts: [],
    cgroups: [],
    netns: [],
    links: [],
    loopDevices: [],
    dirs: [],
  };
  const tmpRoot = opts.tmpRoot ?? '/tmp';

  const cgDirs = await cgroupDirs(prefix);
  const pids = new Set([...(await procsIn(cgDirs)), ...(await processesNaming(prefix))]);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      report.processes.push(pid);
    } catch {}
  }
  if (pids.size) await sleep(200);

  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const mounts = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && m.includes(prefix))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    await run('umount', ['-l', m]).then(
      () => report.mounts.push(m),
      () => {},
    );
  }

  const { stdout: ns } = await run('ip', ['netns', 'list']).catch(() => ({ stdout: '' }));
  for (const line of ns.split('\n')) {
    const name = line.split(' ')[0];
    if (name?.startsWith(prefix)) {
      await run('ip', ['netns', 'delete', name]).then(
        () => report.netns.push(name),
        () => {},
      );
    }
  }
  if (opts.linkPrefix) {
    const { stdout: links } = await run('ip', ['-o', 'link', 'show']).catch(() => ({ stdout: '' }));
    for (const line of links.split('\n')) {
      const name = line.split(': ')[1]?.split('@')[0];
      if (name?.startsWith(opts.linkPrefix)) {
        await run('ip', ['link', 'delete', name]).then(
          () => report.links.push(name),
          () => {},
        );
      }
    }
  }

  const { stdout: loops } = await run('losetup', ['-a']).catch(() => ({ stdout: '' }));
  for (const line of loops.split('\n')) {
    if (!line.includes(prefix)) continue;
    const dev = line.split(':')[0]!;
    await run('losetup', ['-d', dev]).then(
      () => report.loopDevices.push(dev),
      () => {},
    );
  }

  for (const dir of await cgroupDirs(prefix)) {
    for (let i = 0; i < 20; i++) {
      try {
        await fs.rmdir(dir);
        report.cgroups.push(dir);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
        await sleep(50);
      }
    }
  }

  for (const name of await fs.readdir(tmpRoot).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const p = join(tmpRoot, name);
    await fs.rm(p, { recursive: true, force: true }).then(
      () => report.dirs.push(p),
      () => {},
    );
  }
  return report;
}
