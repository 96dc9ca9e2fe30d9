/**
 * cgroup v1 driver: one directory per mounted hierarchy (found in /proc/self/mountinfo,
 * never hard-coded), limits written with the file names Docker/runc use on v1.
 *
 * The mapping limits → files is `planV1` (pure, unit-tested); the driver only adds what
 * needs the filesystem: which controllers/files exist, mkdir, the cpuset initialisation
 * (a new cpuset cgroup is empty and accepts no task until cpus/mems are copied from its
 * parent), the writes and rollback.
 */
import path from 'node:path';
import { notFound, TsswarmError } from '../../api/errors.js';
import {
  cgroupMounts,
  checkName,
  countLines,
  deviceRuleString,
  exists,
  hostMemTotal,
  mkdirLevels,
  parseFlatKeyed,
  readMountinfo,
  readNumber,
  readPids,
  readText,
  removeCgroupDirs,
  rollback,
  subdirs,
  type V1Hierarchy,
  writeCgroupFile,
} from './common.js';
import { DEFAULT_BLKIO_WEIGHT, DEFAULT_CPU_SHARES } from './limits.js';
import type { Cgroup, CgroupDriver, CgroupPlan, CgroupStats, CgroupWrite, ResourceLimits } from './types.js';

/** CFS period Docker uses for --cpus (µs). */
export const CFS_PERIOD_US = 100000;

/** --cpus → CFS quota in µs per 100 ms period, as Docker computes it (integer division). */
export const cfsQuota = (nanoCpus: number): number => Math.floor((nanoCpus * CFS_PERIOD_US) / 1e9);

/** What this kernel offers on v1, as far as the plan cares. */
export interface V1Caps {
  /** mounted v1 controllers ('memory', 'cpu', 'cpuacct', 'cpuset', 'blkio', 'pids', 'devices', ...) */
  controllers: ReadonlySet<string>;
  /** memory.memsw.* exist (swap accounting on) */
  memsw: boolean;
  /** cpu.cfs_quota_us exists */
  cfs: boolean;
  /** the blkio weight file, if any (blkio.weight with CFQ, blkio.bfq.weight with BFQ) */
  blkioWeightFile?: 'blkio.weight' | 'blkio.bfq.weight';
  /** blkio.throttle.* exist */
  throttle: boolean;
}

// Docker's warnings (daemon/daemon_unix.go, verifyPlatformContainerResources).
export const WARN = {
  memory:
    'Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.',
  swap: 'Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.',
  reservation:
    'Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.',
  cpuShares: 'Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.',
  cpuset: 'Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.',
  blkioWeight:
    'Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.',
  readBps:
    'Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded.',
  writeBps:
    'Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded.',
  readIops:
    'Your kernel does not support IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded.',
  writeIops:
    'Your kernel does not support IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded.',
  pids: 'Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.',
  devices: 'The devices cgroup is not mounted. Device access is not restricted.',
} as const;

/** Docker refuses --cpus when CFS is missing instead of discarding it. */
export const NO_CFS_ERROR =
  'NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted';

/**
 * ResourceLimits → the v1 files to write, in order, plus Docker's warnings for what this
 * kernel cannot enforce. PURE. Throws (unsupported) for --cpus without CFS, as Docker does.
 *
 * memory.limit_in_bytes, then memory.memsw.limit_in_bytes (after the limit, so memsw ≥ limit
 * always holds; -1 for unlimited swap), memory.soft_limit_in_bytes; cpu.shares (always:
 * 1024 is also the kernel default), cpu.cfs_period_us then cpu.cfs_quota_us; cpuset.cpus/mems;
 * blkio.weight (only where a weight file exists; a non-default weight elsewhere is a
 * warning), blkio.throttle.{read,write}_{bps,iops}_device ("MAJ:MIN RATE", one write each);
 * pids.max; devices.deny "a" then one devices.allow per rule.
 */
export function planV1(limits: ResourceLimits, caps: V1Caps): CgroupPlan {
  const writes: CgroupWrite[] = [];
  const warnings: string[] = [];
  const missing = new Set<string>();
  const has = (c: string) => caps.controllers.has(c);
  const w = (controller: string, file: string, value: string | number) =>
    writes.push({ controller, file, value: String(value) });
  const warn = (controller: string, msg: string) => {
    if (!has(controller)) missing.add(controller);
    if (!warnings.includes(msg)) warnings.push(msg);
  };

  if (limits.nanoCpus !== undefined && !(has('cpu') && caps.cfs))
    throw new TsswarmError('unsupported', NO_CFS_ERROR);

  // memory
  if (limits.memory !== undefined) {
    if (!has('memory')) warn('memory', WARN.memory);
    else {
      w('memory', 'memory.limit_in_bytes', limits.memory);
      if (limits.memorySwap !== undefined) {
        if (caps.memsw) w('memory', 'memory.memsw.limit_in_bytes', limits.memorySwap);
        else if (limits.memorySwap !== -1) warn('memory', WARN.swap);
      }
    }
  }
  if (limits.memoryReservation !== undefined) {
    if (has('memory')) w('memory', 'memory.soft_limit_in_bytes', limits.memoryReservation);
    else warn('memory', WARN.reservation);
  }

  // cpu
  if (has('cpu')) w('cpu', 'cpu.shares', limits.cpuShares);
  else if (limits.cpuShares !== DEFAULT_CPU_SHARES) warn('cpu', WARN.cpuShares);
  if (limits.nanoCpus !== undefined) {
    w('cpu', 'cpu.cfs_period_us', CFS_PERIOD_US);
    w('cpu', 'cpu.cfs_quota_us', cfsQuota(limits.nanoCpus));
  }

  // cpuset
  if (limits.cpusetCpus !== undefined || limits.cpusetMems !== undefined) {
    if (!has('cpuset')) warn('cpuset', WARN.cpuset);
    else {
      if (limits.cpusetCpus !== undefined) w('cpuset', 'cpuset.cpus', limits.cpusetCpus);
      if (limits.cpusetMems !== undefined) w('cpuset', 'cpuset.mems', limits.cpusetMems);
    }
  }

  // blkio
  if (has('blkio') && caps.blkioWeightFile) w('blkio', caps.blkioWeightFile, limits.blkioWeight);
  else if (limits.blkioWeight !== DEFAULT_BLKIO_WEIGHT) warn('blkio', WARN.blkioWeight);
  const throttles: [keyof ResourceLimits & `device${string}`, string, string][] = [
    ['deviceReadBps', 'blkio.throttle.read_bps_device', WARN.readBps],
    ['deviceWriteBps', 'blkio.throttle.write_bps_device', WARN.writeBps],
    ['deviceReadIops', 'blkio.throttle.read_iops_device', WARN.readIops],
    ['deviceWriteIops', 'blkio.throttle.write_iops_device', WARN.writeIops],
  ];
  for (const [key, file, msg] of throttles) {
    const rates = limits[key] as ResourceLimits['deviceReadBps'];
    if (rates.length === 0) continue;
    if (!has('blkio') || !caps.throttle) warn('blkio', msg);
    else for (const r of rates) w('blkio', file, `${r.major}:${r.minor} ${r.rate}`);
  }

  // pids
  if (limits.pidsLimit !== undefined) {
    if (has('pids')) w('pids', 'pids.max', limits.pidsLimit);
    else warn('pids', WARN.pids);
  }

  // devices: deny everything, then allow the list
  if (has('devices')) {
    w('devices', 'devices.deny', 'a');
    for (const r of limits.devices) w('devices', 'devices.allow', deviceRuleString(r));
  } else warn('devices', WARN.devices);

  return { writes, warnings, missingControllers: [...missing] };
}

/** Parses blkio.throttle.io_service_bytes(_recursive): "8:0 Read 4096" lines → totals. Pure. */
export function parseBlkioServiceBytes(text: string | undefined): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of (text ?? '').split('\n')) {
    const [dev, op, v] = line.trim().split(/\s+/);
    if (!dev || !op || v === undefined || !dev.includes(':')) continue;
    if (op.toLowerCase() === 'read') read += Number(v) || 0;
    else if (op.toLowerCase() === 'write') write += Number(v) || 0;
  }
  return { read, write };
}

export interface V1DriverOptions {
  /** mountinfo text to use instead of /proc/self/mountinfo */
  mountinfo?: string;
}

class V1Cgroup implements Cgroup {
  readonly procsFiles: string[];
  constructor(
    readonly name: string,
    /** one directory per hierarchy */
    private readonly dirs: { hierarchy: V1Hierarchy; dir: string }[],
  ) {
    this.procsFiles = dirs.map((d) => path.join(d.dir, 'cgroup.procs'));
  }

  private dirOf(controller: string): string | undefined {
    return this.dirs.find((d) => d.hierarchy.controllers.includes(controller))?.dir;
  }

  private file(controller: string, file: string): string | undefined {
    const d = this.dirOf(controller);
    return d === undefined ? undefined : path.join(d, file);
  }

  async stats(): Promise<CgroupStats> {
    let present = false;
    for (const d of this.dirs) if (await exists(d.dir)) present = true;
    if (!present) throw notFound(`cgroup ${this.name} does not exist`);

    const f = (c: string, file: string) => this.file(c, file);
    const num = async (c: string, file: string) => {
      const p = f(c, file);
      return p === undefined ? undefined : readNumber(p);
    };
    const txt = async (c: string, file: string) => {
      const p = f(c, file);
      return p === undefined ? undefined : readText(p);
    };

    const memTotal = hostMemTotal();
    const usage = (await num('memory', 'memory.usage_in_bytes')) ?? 0;
    const mstat = parseFlatKeyed(await txt('memory', 'memory.stat'));
    const inactive = mstat.get('total_inactive_file') ?? mstat.get('inactive_file') ?? 0;
    const limit = (await num('memory', 'memory.limit_in_bytes')) ?? memTotal;
    const io = parseBlkioServiceBytes(
      (await txt('blkio', 'blkio.throttle.io_service_bytes_recursive')) ??
        (await txt('blkio', 'blkio.throttle.io_service_bytes')),
    );
    let pidsCurrent = await num('pids', 'pids.current');
    if (pidsCurrent === undefined)
      pidsCurrent = this.dirs[0] ? await countLines(path.join(this.dirs[0].dir, 'tasks')) : 0;
    const pidsLimit = await num('pids', 'pids.max');

    const s: CgroupStats = {
      cpuUsageNs: (await num('cpuacct', 'cpuacct.usage')) ?? 0,
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
    const p = this.file('memory', 'memory.oom_control');
    if (p === undefined) return 0;
    return parseFlatKeyed(await readText(p)).get('oom_kill') ?? 0;
  }

  async pids(): Promise<number[]> {
    const all = new Set<number>();
    for (const f of this.procsFiles) for (const p of await readPids(f)) all.add(p);
    return [...all].sort((a, b) => a - b);
  }

  async destroy(): Promise<void> {
    await removeCgroupDirs(this.dirs.map((d) => d.dir));
  }
}

export class CgroupV1Driver implements CgroupDriver {
  readonly version = 1 as const;
  /** the mounted v1 hierarchies, one entry per hierarchy */
  readonly hierarchies: V1Hierarchy[];

  constructor(opts: V1DriverOptions = {}) {
    this.hierarchies = cgroupMounts(opts.mountinfo ?? readMountinfo()).v1;
    if (this.hierarchies.length === 0) {
      throw new TsswarmError('unsupported', 'no cgroup v1 hierarchy is mounted (see /proc/self/mountinfo)');
    }
  }

  /** Mountpoint of the hierarchy holding `controller`, if mounted. */
  mountOf(controller: string): string | undefined {
    return this.hierarchies.find((h) => h.controllers.includes(controller))?.mountpoint;
  }

  private capsCache?: Promise<V1Caps>;
  /** parent cgroup directories already made (and cpuset-initialised) by this driver */
  private readonly knownParents = new Set<string>();

  /** Probes the hierarchy roots for the optional files (once: the kernel's files do not change). */
  caps(): Promise<V1Caps> {
    this.capsCache ??= this.probeCaps();
    return this.capsCache;
  }

  private async probeCaps(): Promise<V1Caps> {
    const at = async (c: string, file: string) => {
      const m = this.mountOf(c);
      return m !== undefined && (await exists(path.join(m, file)));
    };
    const caps: V1Caps = {
      controllers: new Set(this.hierarchies.flatMap((h) => h.controllers)),
      memsw: await at('memory', 'memory.memsw.limit_in_bytes'),
      cfs: await at('cpu', 'cpu.cfs_quota_us'),
      throttle: await at('blkio', 'blkio.throttle.read_bps_device'),
    };
    if (await at('blkio', 'blkio.bfq.weight')) caps.blkioWeightFile = 'blkio.bfq.weight';
    else if (await at('blkio', 'blkio.weight')) caps.blkioWeightFile = 'blkio.weight';
    return caps;
  }

  open(name: string): Cgroup {
    checkName(name);
    return new V1Cgroup(
      name,
      this.hierarchies.map((h) => ({ hierarchy: h, dir: path.join(h.mountpoint, name) })),
    );
  }

  async create(name: string, limits: ResourceLimits): Promise<{ cgroup: Cgroup; warnings: string[] }> {
    checkName(name);
    const plan = planV1(limits, await this.caps());
    try {
      await this.createOnce(name, plan.writes);
    } catch (e) {
      // a parent removed behind our back (cleanup) makes the cache wrong: forget it, retry once
      if (this.knownParents.size === 0) throw e;
      this.knownParents.clear();
      await this.createOnce(name, plan.writes);
    }
    return { cgroup: this.open(name), warnings: plan.warnings };
  }

  private async createOnce(name: string, writes: ReturnType<typeof planV1>['writes']): Promise<void> {
    const created: string[] = [];
    try {
      for (const h of this.hierarchies) {
        const isCpuset = h.controllers.includes('cpuset');
        await mkdirLevels(
          h.mountpoint,
          name,
          created,
          isCpuset ? (dir) => initCpuset(name, dir) : undefined,
          this.knownParents,
        );
      }
      for (const wr of writes) {
        const m = this.mountOf(wr.controller);
        if (m === undefined)
          throw new TsswarmError('internal', `cgroup ${name}: controller ${wr.controller} is not mounted`);
        await writeCgroupFile(name, path.join(m, name, wr.file), wr.value);
      }
    } catch (e) {
      await rollback(created);
      this.knownParents.clear();
      throw e;
    }
  }

  async list(parent: string): Promise<string[]> {
    checkName(parent, true);
    const names = new Set<string>();
    for (const h of this.hierarchies) {
      for (const d of await subdirs(path.join(h.mountpoint, parent)))
        names.add(parent === '' ? d : `${parent}/${d}`);
    }
    return [...names].sort();
  }
}

/**
 * A cpuset cgroup starts with empty cpuset.cpus/mems and refuses tasks (and gives its
 * children nothing to inherit): copy the parent's effective values into every level that
 * is still empty, top-down, before its children are created.
 */
async function initCpuset(name: string, dir: string): Promise<void> {
  const parent = path.dirname(dir);
  for (const what of ['cpus', 'mems'] as const) {
    const own = (await readText(path.join(dir, `cpuset.${what}`)))?.trim();
    if (own === undefined || own !== '') continue;
    const fromParent =
      (await readText(path.join(parent, `cpuset.effective_${what}`)))?.trim() ||
      (await readText(path.join(parent, `cpuset.${what}`)))?.trim();
    if (!fromParent)
      throw new TsswarmError('internal', `cgroup ${name}: ${parent} has no cpuset.${what} to inherit`);
    await writeCgroupFile(name, path.join(dir, `cpuset.${what}`), fromParent);
  }
}
