/**
 * Helpers shared by the v1 and v2 drivers: /proc/self/mountinfo parsing (pure), cgroup
 * name validation (pure), and small filesystem primitives for cgroupfs.
 */
import {
  closeSync,
  existsSync,
  promises as fsp,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { invalid, TsswarmError } from '../../api/errors.js';

export interface MountInfo {
  mountpoint: string;
  /** the path of the mount's root inside its filesystem (not '/' inside some containers) */
  root: string;
  fstype: string;
  /** per-superblock options, e.g. ['rw', 'cpu', 'cpuacct'] or ['rw', 'name=systemd'] */
  superOptions: string[];
}

const unescapeMount = (s: string): string =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** Parses /proc/self/mountinfo (proc(5)). Pure. Malformed lines are skipped. */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    if (pre.length < 5 || post.length < 3) continue;
    out.push({
      root: unescapeMount(pre[3] as string),
      mountpoint: unescapeMount(pre[4] as string),
      fstype: post[0] as string,
      superOptions: (post[2] as string).split(','),
    });
  }
  return out;
}

/** A v1 hierarchy: one mount of fstype 'cgroup' and the controllers (or name=...) bound to it. */
export interface V1Hierarchy {
  mountpoint: string;
  /** e.g. ['cpu'], ['cpu', 'cpuacct'], ['name=systemd'] */
  controllers: string[];
}

const NOT_CONTROLLERS = new Set([
  'rw',
  'ro',
  'noprefix',
  'clone_children',
  'xattr',
  'cpuset_v2_mode',
  'favordynmods',
  'nofavordynmods',
]);

/**
 * The cgroup mounts in a mountinfo text. Pure. A hierarchy mounted several times (bind
 * mounts) is reported once, at its first mountpoint; the unified (cgroup2) mount is the
 * first one whose mount root is '/'.
 */
export function cgroupMounts(text: string): { v1: V1Hierarchy[]; unified?: string } {
  const v1: V1Hierarchy[] = [];
  const seen = new Set<string>();
  let unified: string | undefined;
  for (const m of parseMountinfo(text)) {
    if (m.fstype === 'cgroup2') {
      if (unified === undefined && m.root === '/') unified = m.mountpoint;
    } else if (m.fstype === 'cgroup') {
      const controllers = m.superOptions.filter(
        (o) => !NOT_CONTROLLERS.has(o) && !o.startsWith('release_agent='),
      );
      const key = [...controllers].sort().join(',');
      if (controllers.length === 0 || seen.has(key)) continue;
      seen.add(key);
      v1.push({ mountpoint: m.mountpoint, controllers });
    }
  }
  return unified === undefined ? { v1 } : { v1, unified };
}

export const readMountinfo = (): string => readFileSync('/proc/self/mountinfo', 'utf8');

/**
 * Checks a relative cgroup name ('tsswarm-abc12/ctr0123'): no leading '/', no empty,
 * '.' or '..' segments, no NUL or newline. '' is accepted only when `allowRoot`.
 */
export function checkName(name: string, allowRoot = false): void {
  if (name === '' && allowRoot) return;
  const segs = name.split('/');
  if (name === '' || /[\0\n]/.test(name) || segs.some((s) => s === '' || s === '.' || s === '..')) {
    throw invalid(
      `invalid cgroup name: "${name}" (expected a relative path such as "tsswarm-abc12/ctr0123")`,
    );
  }
}

/** The directories from the first segment down to the name itself: 'a/b/c' → ['a', 'a/b', 'a/b/c']. */
export const prefixes = (name: string): string[] =>
  name.split('/').map((_, i, a) => a.slice(0, i + 1).join('/'));

const errCode = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

/** Contents of a file, or undefined when it does not exist. */
export async function readText(file: string): Promise<string | undefined> {
  try {
    // cgroup files are tiny kernel-generated text: a synchronous read is faster than a trip
    // through the thread pool, and these are on the container start/stop path
    return readFileSync(file, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** A file holding one integer (or 'max'); undefined when missing or 'max'. */
export async function readNumber(file: string): Promise<number | undefined> {
  const s = (await readText(file))?.trim();
  if (s === undefined || s === '' || s === 'max') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control) → map. Pure. */
export function parseFlatKeyed(text: string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && v !== '' && Number.isFinite(Number(v))) m.set(k, Number(v));
  }
  return m;
}

export async function exists(p: string): Promise<boolean> {
  return existsSync(p);
}

/**
 * Writes one value to one cgroup file in a single write(2), without O_CREAT (a missing
 * interface file is an error, not a new file). Errors name the file and the value;
 * a value the kernel rejects (EINVAL, ERANGE, EOVERFLOW) is an invalid_argument error.
 */
export async function writeCgroupFile(cgroupName: string, file: string, value: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r+');
    writeSync(fd, value);
  } catch (e) {
    const code = errCode(e);
    const msg = `cgroup ${cgroupName}: cannot write "${value}" to ${file}: ${code ?? (e as Error).message}`;
    if (code === 'EINVAL' || code === 'ERANGE' || code === 'EOVERFLOW') throw invalid(msg, e);
    throw new TsswarmError('internal', msg, { cause: e });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** mkdir of every missing level of `name` under `root`, top-down; returns the directories it created. */
export async function mkdirLevels(
  root: string,
  name: string,
  created: string[],
  eachLevel?: (dir: string, isNew: boolean) => Promise<void>,
  /** parent directories known to exist and be set up already: skipped */
  known?: Set<string>,
): Promise<void> {
  const levels = prefixes(name);
  for (const [i, rel] of levels.entries()) {
    const dir = path.join(root, rel);
    const isLeaf = i === levels.length - 1;
    if (!isLeaf && known?.has(dir)) continue;
    let isNew = false;
    try {
      mkdirSync(dir);
      created.push(dir);
      isNew = true;
    } catch (e) {
      if (errCode(e) !== 'EEXIST') {
        throw new TsswarmError(
          'internal',
          `cannot create cgroup directory ${dir}: ${errCode(e) ?? (e as Error).message}`,
          { cause: e },
        );
      }
    }
    if (eachLevel) await eachLevel(dir, isNew);
    if (!isLeaf) known?.add(dir);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One rmdir pass over a directory tree, deepest first: true when gone, false on EBUSY. */
async function rmdirTreeOnce(dir: string): Promise<boolean> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if (errCode(e) === 'ENOENT') return true;
    throw e;
  }
  let ok = true;
  for (const ent of entries)
    if (ent.isDirectory()) ok = (await rmdirTreeOnce(path.join(dir, ent.name))) && ok;
  if (!ok) return false;
  try {
    rmdirSync(dir);
    return true;
  } catch (e) {
    const code = errCode(e);
    if (code === 'ENOENT') return true;
    if (code === 'EBUSY') return false;
    throw new TsswarmError('internal', `cannot remove cgroup ${dir}: ${code ?? (e as Error).message}`, {
      cause: e,
    });
  }
}

/** Deepest remaining directory of a tree (for the error message). */
async function deepestLeft(dir: string): Promise<string> {
  for (const d of await subdirs(dir)) return deepestLeft(path.join(dir, d));
  return dir;
}

/**
 * Removes cgroup directories (one per hierarchy) and their descendant cgroups, deepest
 * first. Directories still busy (a killed task leaves its cgroup asynchronously) are
 * retried together for about `budgetMs`; never kills anything. Missing directories are fine.
 * Rejects (conflict) naming a busy directory and the processes still in it.
 */
export async function removeCgroupDirs(dirs: string[], budgetMs = 2000): Promise<void> {
  const deadline = Date.now() + budgetMs;
  let left = [...dirs];
  for (let attempt = 0; ; attempt++) {
    const busy: string[] = [];
    for (const d of left) if (!(await rmdirTreeOnce(d))) busy.push(d);
    if (busy.length === 0) return;
    if (Date.now() >= deadline) {
      const d = await deepestLeft(busy[0] as string);
      const procs = (await readText(path.join(d, 'cgroup.procs')))?.trim().split('\n').filter(Boolean) ?? [];
      const why = procs.length > 0 ? ` (processes still inside: ${procs.join(', ')})` : '';
      throw new TsswarmError('conflict', `cannot remove cgroup ${d}: EBUSY${why}`);
    }
    left = busy;
    await sleep(Math.min(25 * (attempt + 1), 200));
  }
}

/** removeCgroupDirs for one directory. */
export const removeCgroupDir = (dir: string, budgetMs?: number): Promise<void> =>
  removeCgroupDirs([dir], budgetMs);

/** Removes directories this call created, in reverse order; errors are ignored (best effort rollback). */
export async function rollback(created: string[]): Promise<void> {
  for (const dir of [...created].reverse()) {
    await removeCgroupDir(dir, 500).catch(() => undefined);
  }
}

/** Names of the sub-directories of `dir` ([] when it does not exist). */
export async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return [];
    throw e;
  }
}

/** PIDs listed in a cgroup.procs file ([] when missing). */
export async function readPids(file: string): Promise<number[]> {
  const s = await readText(file);
  return (s ?? '')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number);
}

/** Number of non-empty lines of a file (tasks / cgroup.threads), 0 when missing. */
export async function countLines(file: string): Promise<number> {
  return ((await readText(file)) ?? '').split('\n').filter((l) => l.trim() !== '').length;
}

let memTotal: number | undefined;
/** Host memory (MemTotal of /proc/meminfo) in bytes. */
export function hostMemTotal(): number {
  if (memTotal === undefined) {
    const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    memTotal = m ? Number(m[1]) * 1024 : Number.MAX_SAFE_INTEGER;
  }
  return memTotal;
}

/** `DeviceRule` → the devices.allow syntax ("c 1:3 rwm", "a"). Pure. */
export const deviceRuleString = (r: {
  type: string;
  major: number | '*';
  minor: number | '*';
  access: string;
}): string => (r.type === 'a' ? 'a' : `${r.type} ${r.major}:${r.minor} ${r.access}`);
