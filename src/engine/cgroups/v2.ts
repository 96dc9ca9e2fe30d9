/**
 * cgroup v2 (unified) driver. The unified root is the cgroup2 mount found in
 * /proc/self/mountinfo (/sys/fs/cgroup on current distributions, /sys/fs/cgroup/unified on
 * hybrid v1 machines). A cgroup is one directory; the controllers it needs are enabled in
 * every ancestor's cgroup.subtree_control (only those the root offers in cgroup.controllers).
 *
 * The mapping limits → files is `planV2` (pure, unit-tested on every machine), with runc's
 * conversions (cpu.weight from shares, io.weight from blkio weight).
 *
 * Not implemented: device access control. On v2 the devices controller does not exist; it
 * needs an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup, which Node
 * cannot load. On v2 a container's device access is therefore NOT restricted by the cgroup
 * (only by its minimal /dev and capabilities); when rules beyond Docker's default set are
 * requested, create() says so once in its warnings.
 */
import path from 'node:path';
import { notFound, TsswarmError } from '../../api/errors.js';
import {
  cgroupMounts,
  checkName,
  countLines,
  exists,
  hostMemTotal,
  mkdirLevels,
  parseFlatKeyed,
  prefixes,
  readMountinfo,
  readNumber,
  readPids,
  readText,
  removeCgroupDir,
  rollback,
  subdirs,
  writeCgroupFile,
} from './common.js';
import { DEFAULT_BLKIO_WEIGHT, DEFAULT_CPU_SHARES, onlyDefaultDeviceRules } from './limits.js';
import type { Cgroup, CgroupDriver, CgroupPlan, CgroupStats, CgroupWrite, ResourceLimits } from './types.js';
import { CFS_PERIOD_US, cfsQuota, NO_CFS_ERROR, WARN } from './v1.js';

/** runc's conversion of cpu.shares (2..262144) to cpu.weight (1..10000); 0 → 0 (unset). Pure. */
export const cpuSharesToWeight = (shares: number): number =>
  shares === 0 ? 0 : 1 + Math.floor(((shares - 2) * 9999) / 262142);

/** runc's conversion of blkio weight (10..1000) to io.weight (1..10000); 0 → 0 (unset). Pure. */
export const blkioWeightToIoWeight = (weight: number): number =>
  weight === 0 ? 0 : 1 + Math.floor(((weight - 10) * 9999) / 990);

export const DEVICES_V2_WARNING =
  'Device access rules are not enforced on cgroup v2 (that needs an eBPF device program, not implemented): ' +
  'the requested --device/--device-cgroup-rule rules are ignored and device access is not restricted by the cgroup.';

/** The controllers the driver enables for a container (when the root offers them). */
export const V2_CONTROLLERS = ['cpu', 'cpuset', 'io', 'memory', 'pids'] as const;

/** What this kernel offers in the container's cgroup, as far as the plan cares. */
export interface V2Caps {
  /** controllers enabled for the cgroup (its cgroup.controllers) */
  controllers: ReadonlySet<string>;
  /** memory.swap.max exists */
  swap: boolean;
  /** io.weight (CFQ successor) or io.bfq.weight, if any */
  ioWeightFile?: 'io.weight' | 'io.bfq.weight';
}

/**
 * ResourceLimits → the v2 files to write, in order, plus warnings. PURE. Throws
 * (unsupported) for --cpus without the cpu controller, as Docker does.
 *
 * memory.max; memory.swap.max = memorySwap − memory ('max' for -1); memory.low (reservation);
 * cpu.weight = cpuSharesToWeight(shares) — only when shares ≠ 1024: runc's formula maps
 * 1024 to 39, not to v2's default 100, and Docker leaves the weight alone when no shares
 * are given; cpu.max "QUOTA 100000"; cpuset.cpus/mems; io.weight = blkioWeightToIoWeight(w)
 * (io.bfq.weight takes w itself) — only when w ≠ 500, for the same reason; io.max one line
 * per device "MAJ:MIN rbps=… wbps=… riops=… wiops=…" with the keys that are set; pids.max.
 * Device rules beyond the default set: one warning (see the module comment).
 */
export function planV2(limits: ResourceLimits, caps: V2Caps): CgroupPlan {
  const writes: CgroupWrite[] = [];
  const warnings: string[] = [];
  const missing = new Set<string>();
  const has = (c: string) => caps.controllers.has(c);
  const w = (controller: string, file: string, value: string | number) =>
    writes.push({ controller, file, value: String(value) });
  const warn = (controller: string | undefined, msg: string) => {
    if (controller !== undefined && !has(controller)) missing.add(controller);
    if (!warnings.includes(msg)) warnings.push(msg);
  };

  if (limits.nanoCpus !== undefined && !has('cpu')) throw new TsswarmError('unsupported', NO_CFS_ERROR);

  // memory
  if (limits.memory !== undefined) {
    if (!has('memory')) warn('memory', WARN.memory);
    else {
      w('memory', 'memory.max', limits.memory);
      if (limits.memorySwap !== undefined) {
        if (caps.swap) {
          w(
            'memory',
            'memory.swap.max',
            limits.memorySwap === -1 ? 'max' : Math.max(0, limits.memorySwap - limits.memory),
          );
        } else if (limits.memorySwap !== -1) warn(undefined, WARN.swap);
      }
    }
  }
  if (limits.memoryReservation !== undefined) {
    if (has('memory')) w('memory', 'memory.low', limits.memoryReservation);
    else warn('memory', WARN.reservation);
  }

  // cpu
  if (limits.cpuShares !== DEFAULT_CPU_SHARES) {
    if (has('cpu')) w('cpu', 'cpu.weight', cpuSharesToWeight(limits.cpuShares));
    else warn('cpu', WARN.cpuShares);
  }
  if (limits.nanoCpus !== undefined) w('cpu', 'cpu.max', `${cfsQuota(limits.nanoCpus)} ${CFS_PERIOD_US}`);

  // cpuset
  if (limits.cpusetCpus !== undefined || limits.cpusetMems !== undefined) {
    if (!has('cpuset')) warn('cpuset', WARN.cpuset);
    else {
      if (limits.cpusetCpus !== undefined) w('cpuset', 'cpuset.cpus', limits.cpusetCpus);
      if (limits.cpusetMems !== undefined) w('cpuset', 'cpuset.mems', limits.cpusetMems);
    }
  }

  // io
  if (limits.blkioWeight !== DEFAULT_BLKIO_WEIGHT) {
    if (!has('io') || !caps.ioWeightFile) warn('io', WARN.blkioWeight);
    else if (caps.ioWeightFile === 'io.bfq.weight') w('io', 'io.bfq.weight', limits.blkioWeight);
    else w('io', 'io.weight', blkioWeightToIoWeight(limits.blkioWeight));
  }
  const kinds: [keyof ResourceLimits & `device${string}`, string, string][] = [
    ['deviceReadBps', 'rbps', WARN.readBps],
    ['deviceWriteBps', 'wbps', WARN.writeBps],
    ['deviceReadIops', 'riops', WARN.readIops],
    ['deviceWriteIops', 'wiops', WARN.writeIops],
  ];
  const perDevice = new Map<string, string[]>();
  for (const [key, io, msg] of kinds) {
    const rates = limits[key] as ResourceLimits['deviceReadBps'];
    if (rates.length === 0) continue;
    if (!has('io')) {
      warn('io', msg);
      continue;
    }
    for (const r of rates) {
      const dev = `${r.major}:${r.minor}`;
      const parts = perDevice.get(dev) ?? [];
      parts.push(`${io}=${r.rate}`);
      perDevice.set(dev, parts);
    }
  }
  for (const [dev, parts] of perDevice) w('io', 'io.max', `${dev} ${parts.join(' ')}`);

  // pids
  if (limits.pidsLimit !== undefined) {
    if (has('pids')) w('pids', 'pids.max', limits.pidsLimit);
    else warn('pids', WARN.pids);
  }

  // devices: not implemented on v2 (eBPF)
  if (!onlyDefaultDeviceRules(limits.devices)) warn(undefined, DEVICES_V2_WARNING);

  return { writes, warnings, missingControllers: [...missing] };
}

/** Parses io.stat ("8:0 rbytes=1 wbytes=2 rios=3 …" per device) → byte totals. Pure. */
export function parseIoStat(text: string | undefined): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of (text ?? '').split('\n')) {
    for (const kv of line.trim().split(/\s+/).slice(1)) {
      const [k, v] = kv.split('=');
      if (k === 'rbytes') read += Number(v) || 0;
      else if (k === 'wbytes') write += Number(v) || 0;
    }
  }
  return { read, write };
}

class V2Cgroup implements Cgroup {
  readonly procsFiles: string[];
  constructor(
    readonly name: string,
    readonly dir: string,
  ) {
    this.procsFiles = [path.join(dir, 'cgroup.procs')];
  }

  private f(file: string): string {
    return path.join(this.dir, file);
  }

  async stats(): Promise<CgroupStats> {
    if (!(await exists(this.dir))) throw notFound(`cgroup ${this.name} does not exist`);
    const memTotal = hostMemTotal();
    const usage = (await readNumber(this.f('memory.current'))) ?? 0;
    const inactive = parseFlatKeyed(await readText(this.f('memory.stat'))).get('inactive_file') ?? 0;
    const limit = (await readNumber(this.f('memory.max'))) ?? memTotal;
    const io = parseIoStat(await readText(this.f('io.stat')));
    const pidsCurrent =
      (await readNumber(this.f('pids.current'))) ?? (await countLines(this.f('cgroup.threads')));
    const pidsLimit = await readNumber(this.f('pids.max'));
    const s: CgroupStats = {
      cpuUsageNs: (parseFlatKeyed(await readText(this.f('cpu.stat'))).get('usage_usec') ?? 0) * 1000,
      memoryUsage: usage > inactive ? usage - inactive : usage,
      memoryLimit: Math.min(limit, memTotal),
      blkioReadBytes: io.read,
      blkioWriteBytes: io.write,
      pidsCurrent,
    };
    if (pidsLimit !== undefined) s.pidsLimit = pidsLimit;
    return s;
  }

  async oomKillCount(): Promise<number> {
    return parseFlatKeyed(await readText(this.f('memory.events'))).get('oom_kill') ?? 0;
  }

  async pids(): Promise<number[]> {
    return (await readPids(this.procsFiles[0] as string)).sort((a, b) => a - b);
  }

  async destroy(): Promise<void> {
    await removeCgroupDir(this.dir);
  }
}

export interface V2DriverOptions {
  /** mountinfo text to use instead of /proc/self/mountinfo */
  mountinfo?: string;
  /** the unified root to use instead of the cgroup2 mount found in mountinfo */
  root?: string;
}

export class CgroupV2Driver implements CgroupDriver {
  readonly version = 2 as const;
  /** the unified hierarchy's mountpoint */
  readonly root: string;

  constructor(opts: V2DriverOptions = {}) {
    const root = opts.root ?? cgroupMounts(opts.mountinfo ?? readMountinfo()).unified;
    if (root === undefined)
      throw new TsswarmError(
        'unsupported',
        'no cgroup2 (unified) hierarchy is mounted (see /proc/self/mountinfo)',
      );
    this.root = root;
  }

  /** Controllers the root offers (its cgroup.controllers). */
  async available(): Promise<Set<string>> {
    const s = (await readText(path.join(this.root, 'cgroup.controllers'))) ?? '';
    return new Set(s.split(/\s+/).filter(Boolean));
  }

  open(name: string): Cgroup {
    checkName(name);
    return new V2Cgroup(name, path.join(this.root, name));
  }

  async create(name: string, limits: ResourceLimits): Promise<{ cgroup: Cgroup; warnings: string[] }> {
    checkName(name);
    const available = await this.available();
    const wanted = V2_CONTROLLERS.filter((c) => available.has(c));
    const availableText = `(available: ${[...available].join(' ') || 'none'})`;
    const created: string[] = [];
    const dir = path.join(this.root, name);
    try {
      await mkdirLevels(this.root, name, created);
      // enable the controllers in the root and every ancestor of the leaf
      const ancestors = [
        this.root,
        ...prefixes(name)
          .slice(0, -1)
          .map((p) => path.join(this.root, p)),
      ];
      for (const a of ancestors) {
        const file = path.join(a, 'cgroup.subtree_control');
        const enabled = new Set(((await readText(file)) ?? '').split(/\s+/).filter(Boolean));
        for (const c of wanted) if (!enabled.has(c)) await writeCgroupFile(name, file, `+${c}`);
      }
      const caps: V2Caps = {
        controllers: new Set(
          ((await readText(path.join(dir, 'cgroup.controllers'))) ?? '').split(/\s+/).filter(Boolean),
        ),
        swap: await exists(path.join(dir, 'memory.swap.max')),
      };
      if (await exists(path.join(dir, 'io.bfq.weight'))) caps.ioWeightFile = 'io.bfq.weight';
      else if (await exists(path.join(dir, 'io.weight'))) caps.ioWeightFile = 'io.weight';

      let plan: CgroupPlan;
      try {
        plan = planV2(limits, caps);
      } catch (e) {
        if (e instanceof TsswarmError && e.code === 'unsupported') {
          throw new TsswarmError(
            'unsupported',
            `${e.message} (cgroup v2 controller "cpu" is not enabled in ${this.root} ${availableText})`,
          );
        }
        throw e;
      }
      for (const wr of plan.writes) await writeCgroupFile(name, path.join(dir, wr.file), wr.value);
      const warnings = [...plan.warnings];
      if (plan.missingControllers.length > 0) {
        warnings.push(
          `cgroup v2 controller(s) ${plan.missingControllers.join(', ')} not available in ${path.join(this.root, 'cgroup.controllers')} ${availableText}: the limits above were discarded`,
        );
      }
      return { cgroup: this.open(name), warnings };
    } catch (e) {
      await rollback(created);
      throw e;
    }
  }

  async list(parent: string): Promise<string[]> {
    checkName(parent, true);
    return (await subdirs(path.join(this.root, parent)))
      .map((d) => (parent === '' ? d : `${parent}/${d}`))
      .sort();
  }
}
