/**
 * Which cgroup driver this machine needs, and the host facts `resolveLimits` needs.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { invalid } from '../../api/errors.js';
import { parseMountinfo, readMountinfo } from './common.js';
import type { DeviceInfo, HostFacts } from './limits.js';
import type { CgroupDriver } from './types.js';
import { CgroupV1Driver } from './v1.js';
import { CgroupV2Driver } from './v2.js';

export interface DetectOptions {
  /** environment to read TSSWARM_CGROUP_DRIVER from (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** mountinfo text (default /proc/self/mountinfo) */
  mountinfo?: string;
  /** where the cgroup filesystem is conventionally mounted (default /sys/fs/cgroup) */
  cgroupRoot?: string;
}

/**
 * 'v2' when `cgroupRoot` (/sys/fs/cgroup) itself is a cgroup2 mount (the pure unified layout,
 * with cgroup.controllers at its root), otherwise 'v1' (legacy or hybrid layout).
 * TSSWARM_CGROUP_DRIVER=v1|v2 overrides the detection (for tests).
 */
export function detectCgroupVersion(opts: DetectOptions = {}): 1 | 2 {
  const env = opts.env ?? process.env;
  const forced = env.TSSWARM_CGROUP_DRIVER;
  if (forced !== undefined && forced !== '') {
    if (forced === 'v1') return 1;
    if (forced === 'v2') return 2;
    throw invalid(`invalid TSSWARM_CGROUP_DRIVER: "${forced}" (expected v1 or v2)`);
  }
  const root = opts.cgroupRoot ?? '/sys/fs/cgroup';
  const mounts = parseMountinfo(opts.mountinfo ?? readMountinfo());
  // the last mount on a path is the visible one
  const top = mounts.filter((m) => m.mountpoint === root).at(-1);
  if (top) return top.fstype === 'cgroup2' ? 2 : 1;
  return opts.mountinfo === undefined && existsSync(path.join(root, 'cgroup.controllers')) ? 2 : 1;
}

/** The driver for this machine (see detectCgroupVersion). */
export function detectCgroupDriver(opts: DetectOptions = {}): CgroupDriver {
  const v = detectCgroupVersion(opts);
  const mi = opts.mountinfo !== undefined ? { mountinfo: opts.mountinfo } : {};
  return v === 2 ? new CgroupV2Driver(mi) : new CgroupV1Driver(mi);
}

/** major/minor from a Linux dev_t (glibc's gnu_dev_major/minor). */
export function devMajorMinor(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)),
  };
}

/** stat(2) (following symlinks) of a path as `HostFacts.statDevice` wants it; undefined if it does not exist. */
export function statDevice(p: string): DeviceInfo | undefined {
  let st: import('node:fs').BigIntStats;
  try {
    st = statSync(p, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw invalid(`error evaluating device path: ${p}: ${code ?? (e as Error).message}`, e);
  }
  return { isBlock: st.isBlockDevice(), isChar: st.isCharacterDevice(), ...devMajorMinor(st.rdev) };
}

const readTrim = (f: string): string | undefined => {
  try {
    return readFileSync(f, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
};

/** The real machine's facts for `resolveLimits`: usable CPUs, online CPUs / memory nodes, stat of device nodes. */
export function localHostFacts(): HostFacts {
  const facts: HostFacts = { cpus: os.availableParallelism(), statDevice };
  const cpus = readTrim('/sys/devices/system/cpu/online');
  const mems = readTrim('/sys/devices/system/node/online') ?? '0';
  if (cpus !== undefined) facts.cpusetCpus = cpus;
  facts.cpusetMems = mems;
  return facts;
}
