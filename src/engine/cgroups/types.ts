/**
 * The cgroup interface shared by the v1 and v2 drivers (DESIGN.md §5).
 *
 * Limits are resolved from Docker's flags by `resolveLimits` (limits.ts) into a
 * `ResourceLimits`; a driver turns them into cgroup files (plan functions in v1.ts /
 * v2.ts, which are pure) and applies them when it creates a container's cgroup.
 */

/** A per-device I/O throttle (`--device-read-bps /dev/sda:1mb`, `--device-write-iops ...`). */
export interface DeviceRate {
  /** the path the user gave (kept for messages) */
  path: string;
  major: number;
  minor: number;
  /** bytes per second for *Bps, operations per second for *Iops */
  rate: number;
}

/** One devices-cgroup allow rule, as in `devices.allow` ("c 1:3 rwm"). */
export interface DeviceRule {
  type: 'c' | 'b' | 'a';
  major: number | '*';
  minor: number | '*';
  /** a subset of "rwm" */
  access: string;
}

/** A container's resource limits with Docker's semantics already applied (defaults filled in). */
export interface ResourceLimits {
  /** hard memory limit, bytes (`--memory`); undefined = unlimited */
  memory?: number;
  /** total memory + swap, bytes (`--memory-swap`); -1 = unlimited swap; undefined = not set */
  memorySwap?: number;
  /** soft limit, bytes (`--memory-reservation`) */
  memoryReservation?: number;
  /** relative CPU weight (`--cpu-shares`), default 1024 */
  cpuShares: number;
  /** CPU quota in billionths of a CPU (`--cpus 1.5` = 1.5e9); undefined = unlimited */
  nanoCpus?: number;
  /** `--cpuset-cpus`, e.g. "0-2,4" */
  cpusetCpus?: string;
  /** `--cpuset-mems` */
  cpusetMems?: string;
  /** relative block I/O weight 10..1000 (`--blkio-weight`), default 500 */
  blkioWeight: number;
  deviceReadBps: DeviceRate[];
  deviceWriteBps: DeviceRate[];
  deviceReadIops: DeviceRate[];
  deviceWriteIops: DeviceRate[];
  /** maximum number of tasks (`--pids-limit`); undefined = unlimited */
  pidsLimit?: number;
  /** device allow-list: Docker's default set plus `--device` / `--device-cgroup-rule` ones; everything else is denied */
  devices: DeviceRule[];
}

/** A point-in-time reading of a cgroup's counters, in `docker stats` terms. */
export interface CgroupStats {
  /** total CPU time consumed, nanoseconds */
  cpuUsageNs: number;
  /** memory usage minus inactive file cache, bytes (as `docker stats` shows it) */
  memoryUsage: number;
  /** the memory limit, bytes; host memory (MemTotal) when unlimited */
  memoryLimit: number;
  /** bytes read from block devices */
  blkioReadBytes: number;
  /** bytes written to block devices */
  blkioWriteBytes: number;
  /** tasks (threads) currently in the cgroup */
  pidsCurrent: number;
  /** the pids limit, when one is set */
  pidsLimit?: number;
}

/** One cgroup (a container's), possibly spread over several v1 hierarchies. */
export interface Cgroup {
  /** relative name, e.g. 'tsswarm-abc12/ctr0123' */
  readonly name: string;
  /**
   * The cgroup.procs files a process must be written to so that it is fully inside this
   * cgroup: one per mounted v1 hierarchy, exactly one on v2. Writing a PID to each of them
   * moves that process (threads and all); children forked afterwards inherit the cgroup.
   */
  readonly procsFiles: string[];
  /**
   * Reads the counters. Counters of a controller that is not available read as 0
   * (memoryLimit: host memory; pidsCurrent falls back to the number of tasks).
   * Rejects only if the cgroup does not exist.
   */
  stats(): Promise<CgroupStats>;
  /** Number of processes the kernel OOM-killed in this cgroup so far (0 when the memory controller is absent). */
  oomKillCount(): Promise<number>;
  /** PIDs of the processes in this cgroup (union over hierarchies, ascending); [] if it does not exist. */
  pids(): Promise<number[]>;
  /**
   * Removes the cgroup: rmdir of its directory in every hierarchy, descendants first,
   * retrying briefly while the kernel answers EBUSY (a killed process not yet gone).
   * Never kills processes: if processes are still inside after the retries it rejects
   * with a clear error naming the directory. A directory that does not exist is fine.
   */
  destroy(): Promise<void>;
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  /**
   * Creates the cgroup `name` (a relative path such as 'tsswarm-abc12/ctr0123'; missing
   * parents are created, existing ones reused) and applies `limits`.
   * Resolves with `warnings` for limits this kernel cannot enforce and that were discarded,
   * worded as Docker words them (e.g. "Your kernel does not support Block I/O weight or
   * the cgroup is not mounted. Weight discarded."). Limits Docker refuses outright when
   * unsupported (--cpus without CFS) reject.
   * On any failure it removes every directory it created (never pre-existing ones) and
   * rejects with an error that names the file and value it could not write.
   */
  create(name: string, limits: ResourceLimits): Promise<{ cgroup: Cgroup; warnings: string[] }>;
  /** A handle on an existing (or already removed) cgroup; touches nothing. Throws on an invalid name. */
  open(name: string): Cgroup;
  /**
   * Names (relative to the driver's root, e.g. 'tsswarm-abc12/ctr0123') of the direct child
   * cgroups of `parent` ('' = the root), across all hierarchies, sorted; [] if `parent`
   * does not exist. For cleanup of leftovers.
   */
  list(parent: string): Promise<string[]>;
}

/** One write to a cgroup file, in order: the pure output of the plan functions. */
export interface CgroupWrite {
  /** v1: the controller whose hierarchy holds the file ('memory', 'cpu', ...); v2: the controller the file belongs to */
  controller: string;
  /** file name inside the cgroup directory, e.g. 'memory.limit_in_bytes' */
  file: string;
  value: string;
}

/** What a plan function produces: the writes, in order, and the warnings for what was discarded. */
export interface CgroupPlan {
  writes: CgroupWrite[];
  warnings: string[];
  /** controllers that a requested limit needed but that are not available (the reason for some warnings) */
  missingControllers: string[];
}
