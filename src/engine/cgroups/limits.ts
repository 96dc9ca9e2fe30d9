/**
 * Docker's resource flags → ResourceLimits, with Docker's defaults, validation and error
 * messages (docker run / daemon verifyPlatformContainerResources). PURE: everything about
 * the host (CPU count, device nodes) comes in through `HostFacts` (see `localHostFacts`
 * in detect.ts for the real machine).
 */
import { invalid } from '../../api/errors.js';
import type { DeviceRate, DeviceRule, ResourceLimits } from './types.js';

/** Docker's minimum for --memory and --memory-reservation (6 MiB). */
export const MIN_MEMORY = 6 * 1024 * 1024;
export const DEFAULT_CPU_SHARES = 1024;
export const MIN_CPU_SHARES = 2;
export const MAX_CPU_SHARES = 262144;
export const DEFAULT_BLKIO_WEIGHT = 500;

export interface DeviceInfo {
  isBlock: boolean;
  isChar: boolean;
  major: number;
  minor: number;
}

export interface HostFacts {
  /** CPUs available to the daemon (Docker's sysinfo.NumCPU) */
  cpus: number;
  /** stat(2) of a path (following symlinks); undefined when it does not exist */
  statDevice(path: string): DeviceInfo | undefined;
  /** CPUs that exist, cpuset syntax ("0-3"); when given, --cpuset-cpus must be a subset */
  cpusetCpus?: string;
  /** memory nodes that exist ("0"); when given, --cpuset-mems must be a subset */
  cpusetMems?: string;
}

/** The flags, as `docker run`/`docker create` take them (strings as typed; numbers for integer flags). */
export interface ResourceFlags {
  memory?: string | number;
  memorySwap?: string | number;
  memoryReservation?: string | number;
  cpuShares?: number;
  cpus?: string | number;
  cpusetCpus?: string;
  cpusetMems?: string;
  blkioWeight?: number;
  deviceReadBps?: string[];
  deviceWriteBps?: string[];
  deviceReadIops?: string[];
  deviceWriteIops?: string[];
  pidsLimit?: number;
  /** --device HOST[:CONTAINER][:PERMS] */
  devices?: string[];
  /** --device-cgroup-rule 'c 1:3 mr' */
  deviceCgroupRules?: string[];
}

const UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/**
 * A size as Docker's RAMInBytes parses it: a decimal number with an optional binary unit
 * b, k, m, g, t, p (case-insensitive, optional "i" and trailing "b": 10m, 10mb, 10MiB),
 * '1024' = bytes. '10X' → invalid: 'invalid size: "10X"'.
 */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?$/i.exec(s);
  if (!m || (m[2] === '' && /i/i.test(s))) throw invalid(`invalid size: "${s}"`);
  const n = Math.trunc(Number(m[1]) * (UNITS[(m[2] as string).toLowerCase()] as number));
  if (!Number.isSafeInteger(n)) throw invalid(`invalid size: "${s}"`);
  return n;
}

const bytesFlag = (v: string | number | undefined): number | undefined => {
  if (v === undefined || v === '') return undefined;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw invalid(`invalid size: "${v}"`);
    return v;
  }
  return parseBytes(v);
};

/**
 * --cpus as Docker parses it (a decimal, at most nanosecond precision) → nanoCpus.
 * Exact decimal arithmetic: '1.5' → 1_500_000_000.
 */
export function parseCpus(v: string | number): number {
  const s = typeof v === 'number' ? String(v) : v.trim();
  const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw invalid(`failed to parse ${s} as a rational number`);
  const frac = (m[3] ?? '').replace(/0+$/, '');
  if (frac.length > 9) throw invalid('value is too precise');
  const nano = Number(m[2] || '0') * 1e9 + Number(frac.padEnd(9, '0'));
  return m[1] === '-' ? -nano : nano;
}

/** Parses a cpuset list ("0-2,4") into the set of ids; undefined if malformed. Pure. */
export function parseCpuset(s: string): Set<number> | undefined {
  const out = new Set<number>();
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 65536) return undefined;
    for (let i = a; i <= b; i++) out.add(i);
  }
  return out;
}

function checkCpuset(value: string, available: string | undefined, what: 'cpus' | 'mems'): void {
  const req = parseCpuset(value);
  if (!req) throw invalid(`Invalid value ${value} for cpuset ${what}`);
  if (available === undefined) return;
  const avail = parseCpuset(available) ?? new Set<number>();
  if ([...req].some((c) => !avail.has(c))) {
    throw invalid(
      what === 'cpus'
        ? `Requested CPUs are not available - requested ${value}, available: ${available}`
        : `Requested memory nodes are not available - requested ${value}, available: ${available}`,
    );
  }
}

/** Docker's default device cgroup allow-list (runc's AllowedDevices: mknod of anything, the standard nodes, ptys). */
export function defaultDeviceRules(): DeviceRule[] {
  return [
    { type: 'c', major: '*', minor: '*', access: 'm' },
    { type: 'b', major: '*', minor: '*', access: 'm' },
    { type: 'c', major: 1, minor: 3, access: 'rwm' }, // /dev/null
    { type: 'c', major: 1, minor: 5, access: 'rwm' }, // /dev/zero
    { type: 'c', major: 1, minor: 7, access: 'rwm' }, // /dev/full
    { type: 'c', major: 1, minor: 8, access: 'rwm' }, // /dev/random
    { type: 'c', major: 1, minor: 9, access: 'rwm' }, // /dev/urandom
    { type: 'c', major: 5, minor: 0, access: 'rwm' }, // /dev/tty
    { type: 'c', major: 5, minor: 1, access: 'rwm' }, // /dev/console
    { type: 'c', major: 136, minor: '*', access: 'rwm' }, // /dev/pts/*
    { type: 'c', major: 5, minor: 2, access: 'rwm' }, // /dev/ptmx
  ];
}

const ruleKey = (r: DeviceRule) => `${r.type} ${r.major}:${r.minor} ${r.access}`;

/** True when every rule is one of Docker's defaults (so nothing beyond the default set is requested). */
export function onlyDefaultDeviceRules(rules: DeviceRule[]): boolean {
  const d = new Set(defaultDeviceRules().map(ruleKey));
  return rules.every((r) => d.has(ruleKey(r)));
}

const validDeviceMode = (mode: string): boolean =>
  mode !== '' && mode.length <= 3 && [...mode].every((c, i) => 'rwm'.includes(c) && mode.indexOf(c) === i);

export interface DeviceMapping {
  pathOnHost: string;
  pathInContainer: string;
  permissions: string;
}

/** `--device /dev/sdc[:/dev/xvdc][:rwm]` as Docker splits it. Pure. */
export function parseDeviceSpec(spec: string): DeviceMapping {
  const arr = spec.split(':');
  if (arr.length < 1 || arr.length > 3 || arr[0] === '')
    throw invalid(`invalid device specification: ${spec}`);
  const src = arr[0] as string;
  let dst = '';
  let permissions = 'rwm';
  if (arr.length === 3) {
    dst = arr[1] as string;
    permissions = arr[2] as string;
  } else if (arr.length === 2) {
    if (validDeviceMode(arr[1] as string)) permissions = arr[1] as string;
    else dst = arr[1] as string;
  }
  if (dst === '') dst = src;
  if (!validDeviceMode(permissions)) throw invalid(`invalid device mode: ${permissions}`);
  if (!src.startsWith('/')) throw invalid(`${src} is not an absolute path`);
  if (!dst.startsWith('/')) throw invalid(`${dst} is not an absolute path`);
  return { pathOnHost: src, pathInContainer: dst, permissions };
}

/** `--device-cgroup-rule 'c 1:3 mr'` → DeviceRule. Pure. */
export function parseDeviceCgroupRule(rule: string): DeviceRule {
  const m = /^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$/.exec(rule);
  if (!m || !validDeviceMode(m[4] as string)) throw invalid(`invalid device cgroup format '${rule}'`);
  const num = (x: string): number | '*' => (x === '*' ? '*' : Number(x));
  return {
    type: m[1] as DeviceRule['type'],
    major: num(m[2] as string),
    minor: num(m[3] as string),
    access: m[4] as string,
  };
}

function blockDevice(p: string, host: HostFacts): { major: number; minor: number } {
  const st = host.statDevice(p);
  if (!st) throw invalid(`error evaluating device path: ${p}: no such file or directory`);
  if (!st.isBlock) throw invalid(`error evaluating device path: ${p}: not a block device`);
  return { major: st.major, minor: st.minor };
}

function parseRates(specs: string[] | undefined, kind: 'bps' | 'iops', host: HostFacts): DeviceRate[] {
  return (specs ?? []).map((spec) => {
    const i = spec.lastIndexOf(':');
    if (i < 0 || spec.indexOf(':') !== i) throw invalid(`bad format: ${spec}`);
    const p = spec.slice(0, i);
    const r = spec.slice(i + 1);
    if (!p.startsWith('/dev/')) throw invalid(`bad format for device path: ${spec}`);
    let rate: number;
    if (kind === 'bps') {
      try {
        rate = parseBytes(r);
      } catch {
        throw invalid(
          `invalid rate for device: ${spec}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb`,
        );
      }
    } else {
      if (!/^\d+$/.test(r) || !Number.isSafeInteger(Number(r))) {
        throw invalid(
          `invalid rate for device: ${spec}. The correct format is <device-path>:<number>. Number must be a positive integer`,
        );
      }
      rate = Number(r);
    }
    return { path: p, ...blockDevice(p, host), rate };
  });
}

const intFlag = (name: string, v: number | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v)) throw invalid(`invalid ${name}: ${v} (expected an integer)`);
  return v;
};

/**
 * Docker's flags → ResourceLimits, with Docker's semantics:
 * - --memory: 0/unset = unlimited; below 6 MiB → 'Minimum memory limit allowed is 6MB'.
 * - --memory-swap: -1 = unlimited swap; unset (or 0) with --memory → 2 × memory; set without
 *   --memory → error; less than --memory → error. Equal to --memory = no swap.
 * - --memory-reservation: at least 6 MiB, not above --memory.
 * - --cpu-shares: 0/unset = 1024; clamped to 2..262144 with Docker's warning.
 * - --cpus: decimal → nanoCpus; 0 = unlimited; must be within 0.01..host CPUs.
 * - --cpuset-cpus/-mems: list syntax, and a subset of what exists when the host says.
 * - --blkio-weight: 0/unset = 500, else 10..1000.
 * - --device-{read,write}-{bps,iops}: /dev/x:RATE, bps with size units; the path must be a block device.
 * - --pids-limit: 0 or negative = unlimited.
 * - devices: Docker's default allow-list + --device nodes (with their permissions) + --device-cgroup-rule.
 * Warnings Docker prints but that do not fail the run are pushed to `warnings` if given.
 */
export function resolveLimits(flags: ResourceFlags, host: HostFacts, warnings?: string[]): ResourceLimits {
  const memory = bytesFlag(flags.memory) || undefined;
  if (memory !== undefined && memory < MIN_MEMORY) throw invalid('Minimum memory limit allowed is 6MB');

  let memorySwap: number | undefined;
  const rawSwap = flags.memorySwap;
  if (rawSwap === -1 || rawSwap === '-1') memorySwap = -1;
  else memorySwap = bytesFlag(rawSwap) || undefined;
  if (memorySwap !== undefined && memorySwap > 0) {
    if (memory === undefined)
      throw invalid('You should always set the Memory limit when using Memoryswap limit, see usage');
    if (memorySwap < memory)
      throw invalid('Minimum memoryswap limit should be larger than memory limit, see usage');
  }
  if (memorySwap === undefined && memory !== undefined) memorySwap = 2 * memory;

  const memoryReservation = bytesFlag(flags.memoryReservation) || undefined;
  if (memoryReservation !== undefined) {
    if (memory !== undefined && memory < memoryReservation) {
      throw invalid('Minimum memory limit can not be less than memory reservation limit, see usage');
    }
    if (memoryReservation < MIN_MEMORY) throw invalid('Minimum memory reservation allowed is 6MB');
  }

  let cpuShares = intFlag('cpu-shares', flags.cpuShares) || DEFAULT_CPU_SHARES;
  if (cpuShares < 0) throw invalid(`invalid CPU shares (${cpuShares}): value must be a positive integer`);
  if (cpuShares < MIN_CPU_SHARES) {
    warnings?.push(`Changing requested CPUShares of ${cpuShares} to minimum allowed of ${MIN_CPU_SHARES}`);
    cpuShares = MIN_CPU_SHARES;
  } else if (cpuShares > MAX_CPU_SHARES) {
    warnings?.push(`Changing requested CPUShares of ${cpuShares} to maximum allowed of ${MAX_CPU_SHARES}`);
    cpuShares = MAX_CPU_SHARES;
  }

  let nanoCpus: number | undefined;
  if (flags.cpus !== undefined && flags.cpus !== '') {
    const n = parseCpus(flags.cpus);
    if (n < 0 || (n > 0 && n < 1e7) || n > host.cpus * 1e9) {
      throw invalid(
        `range of CPUs is from 0.01 to ${host.cpus}.00, as there are only ${host.cpus} CPUs available`,
      );
    }
    nanoCpus = n || undefined;
  }

  const cpusetCpus = flags.cpusetCpus || undefined;
  if (cpusetCpus !== undefined) checkCpuset(cpusetCpus, host.cpusetCpus, 'cpus');
  const cpusetMems = flags.cpusetMems || undefined;
  if (cpusetMems !== undefined) checkCpuset(cpusetMems, host.cpusetMems, 'mems');

  const bw = intFlag('blkio-weight', flags.blkioWeight) || 0;
  if (bw !== 0 && (bw < 10 || bw > 1000)) throw invalid('Range of blkio weight is from 10 to 1000');
  const blkioWeight = bw || DEFAULT_BLKIO_WEIGHT;

  const pl = intFlag('pids-limit', flags.pidsLimit);
  const pidsLimit = pl !== undefined && pl > 0 ? pl : undefined;

  const devices = defaultDeviceRules();
  for (const spec of flags.devices ?? []) {
    const d = parseDeviceSpec(spec);
    const st = host.statDevice(d.pathOnHost);
    const fail = (why: string) =>
      invalid(`error gathering device information while adding custom device "${d.pathOnHost}": ${why}`);
    if (!st) throw fail('no such file or directory');
    if (!st.isBlock && !st.isChar) throw fail('not a device node');
    devices.push({ type: st.isBlock ? 'b' : 'c', major: st.major, minor: st.minor, access: d.permissions });
  }
  for (const rule of flags.deviceCgroupRules ?? []) devices.push(parseDeviceCgroupRule(rule));

  const out: ResourceLimits = {
    cpuShares,
    blkioWeight,
    deviceReadBps: parseRates(flags.deviceReadBps, 'bps', host),
    deviceWriteBps: parseRates(flags.deviceWriteBps, 'bps', host),
    deviceReadIops: parseRates(flags.deviceReadIops, 'iops', host),
    deviceWriteIops: parseRates(flags.deviceWriteIops, 'iops', host),
    devices,
  };
  if (memory !== undefined) out.memory = memory;
  if (memorySwap !== undefined) out.memorySwap = memorySwap;
  if (memoryReservation !== undefined) out.memoryReservation = memoryReservation;
  if (nanoCpus !== undefined) out.nanoCpus = nanoCpus;
  if (cpusetCpus !== undefined) out.cpusetCpus = cpusetCpus;
  if (cpusetMems !== undefined) out.cpusetMems = cpusetMems;
  if (pidsLimit !== undefined) out.pidsLimit = pidsLimit;
  return out;
}

/** Limits with every default and nothing limited (what `docker run` with no resource flag gives). */
export function defaultLimits(): ResourceLimits {
  return {
    cpuShares: DEFAULT_CPU_SHARES,
    blkioWeight: DEFAULT_BLKIO_WEIGHT,
    deviceReadBps: [],
    deviceWriteBps: [],
    deviceReadIops: [],
    deviceWriteIops: [],
    devices: defaultDeviceRules(),
  };
}
