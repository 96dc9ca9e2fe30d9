/**
 * IP address management (DESIGN.md §6): parsing and formatting IPv4 addresses and CIDRs,
 * carving network subnets out of address pools so that they overlap neither other networks
 * nor the host's own addresses and routes, checking subnets and gateways given by a user,
 * and handing out the addresses of attachments and service VIPs inside a subnet.
 *
 * Pure logic: no I/O, no clock, no randomness; the leader calls it and stores the results.
 * Addresses are unsigned 32-bit numbers internally. IPv4 only: IPv6 input is refused with an
 * invalid() error, except in the lists of taken ranges, where an IPv6 entry cannot overlap an
 * IPv4 subnet and is ignored (a host always has some).
 */
import { conflict, invalid, precondition } from '../api/errors.js';

export interface Cidr {
  /** The network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

/** Carve subnets of mask length `size` out of `base`. */
export interface AddressPool {
  base: string;
  size: number;
}

/** Docker's spirit: swarm-scope (overlay) /24s out of 10.0.0.0/8. */
export const DEFAULT_SWARM_POOLS: AddressPool[] = [{ base: '10.0.0.0/8', size: 24 }];

/** Docker's spirit: local bridges get 172.17.0.0/16 … 172.31.0.0/16, then /20s of 192.168.0.0/16. */
export const DEFAULT_LOCAL_POOLS: AddressPool[] = [
  ...Array.from({ length: 15 }, (_, i) => ({ base: `172.${17 + i}.0.0/16`, size: 16 })),
  { base: '192.168.0.0/16', size: 20 },
];

const CIDR_EXAMPLE = 'expected an IPv4 CIDR such as 10.0.9.0/24';
const isIpv6 = (s: string) => s.includes(':');
const DOT = 46;
const ZERO = 48;

/** '10.0.0.1' → 167772161. Octets are decimal without leading zeros (010 could mean octal). */
export function parseIp(s: string): number {
  const n = scanIp(s, 0, s.length);
  if (n < 0) throw invalid(`invalid IPv4 address "${s}"${isIpv6(s) ? ': IPv6 is not supported' : ''}`);
  return n;
}

/**
 * The dotted quad in s[from, to) as a number, or -1 when it is not one. A hand-written scan
 * rather than a regular expression: allocateSubnet parses every taken range on every call.
 */
function scanIp(s: string, from: number, to: number): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let octets = 0;
  for (let i = from; i <= to; i++) {
    const ch = i < to ? s.charCodeAt(i) : DOT; // the end closes the last octet
    const digit = ch - ZERO;
    if (digit >= 0 && digit <= 9) {
      if (digits > 0 && octet === 0) return -1; // a leading zero
      octet = octet * 10 + digit;
      if (octet > 255) return -1;
      digits++;
    } else if (ch === DOT && digits > 0 && octets < 4) {
      value = value * 256 + octet;
      octets++;
      octet = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  return octets === 4 ? value : -1;
}

export function formatIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** The netmask of a prefix length as an unsigned number (0 for /0). */
const maskOf = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
/** How many addresses a prefix length spans. */
const spanOf = (prefix: number) => 2 ** (32 - prefix);
/** The last (broadcast) address of a CIDR. */
const lastOf = (c: Cidr) => (c.base | ~maskOf(c.prefix)) >>> 0;

/** Splits 'a.b.c.d/n' without judging its host bits. */
function splitCidr(s: string): { ip: number; prefix: number } {
  const syntax = () =>
    invalid(`invalid subnet "${s}": ${isIpv6(s) ? 'IPv6 is not supported, ' : ''}${CIDR_EXAMPLE}`);
  const slash = s.indexOf('/');
  const ip = scanIp(s, 0, slash);
  const prefix = scanPrefix(s, slash + 1);
  if (slash < 0 || ip < 0 || prefix < 0) throw syntax();
  return { ip, prefix };
}

/** The prefix length in s from `from` to its end: 0..32, decimal without a leading zero; else -1. */
function scanPrefix(s: string, from: number): number {
  let n = 0;
  for (let i = from; i < s.length; i++) {
    const digit = s.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9 || (i > from && n === 0)) return -1;
    n = n * 10 + digit;
  }
  return s.length > from && n <= 32 ? n : -1;
}

/** '10.0.0.0/24' → { base, prefix }. An address with host bits set is refused, with the likely intent. */
export function parseCidr(s: string): Cidr {
  const { ip, prefix } = splitCidr(s);
  const base = (ip & maskOf(prefix)) >>> 0;
  if (base !== ip) throw invalid(`invalid subnet "${s}": did you mean ${formatCidr({ base, prefix })}?`);
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.base)}/${c.prefix}`;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base <= lastOf(b) && b.base <= lastOf(a);
}

export function contains(c: Cidr, ip: number): boolean {
  return ip >= c.base && ip <= lastOf(c);
}

/**
 * A range something else already uses: a CIDR (host bits allowed, as in an interface's
 * 192.168.1.5/24, and masked off) or a bare address (a /32). Undefined for IPv6.
 */
function parseTaken(s: string): Cidr | undefined {
  if (isIpv6(s)) return undefined;
  if (!s.includes('/')) return { base: parseIp(s), prefix: 32 };
  const { ip, prefix } = splitCidr(s);
  return { base: (ip & maskOf(prefix)) >>> 0, prefix };
}

/**
 * Checks pools given by a user (e.g. `swarm init --default-addr-pool 10.20.0.0/16
 * --default-addr-pool-mask-length 24`): a valid base, a mask length between the base's
 * prefix and 30, no two pools overlapping. Returns them normalized.
 */
export function checkPools(pools: AddressPool[]): AddressPool[] {
  if (pools.length === 0) throw invalid('at least one address pool is required');
  const cidrs = pools.map(checkPool);
  for (const [i, a] of cidrs.entries()) {
    const b = cidrs.slice(0, i).find((earlier) => overlaps(earlier, a));
    if (b) throw invalid(`address pools ${formatCidr(b)} and ${formatCidr(a)} overlap`);
  }
  return pools.map((p, i) => ({ base: formatCidr(cidrs[i]!), size: p.size }));
}

function checkPool(p: AddressPool): Cidr {
  const c = parseCidr(p.base);
  if (!Number.isInteger(p.size) || p.size < c.prefix || p.size > 30) {
    throw invalid(`invalid address pool ${p.base}: mask length ${p.size} must be between ${c.prefix} and 30`);
  }
  return c;
}

/**
 * The first subnet, in pool order then address order, that overlaps none of `taken` (other
 * networks' subnets, the host's addresses and routes, as CIDR strings; a bare address is a /32).
 * Walks the taken ranges in address order alongside the candidates, jumping past each taken
 * range, so a call costs about O(t log t) rather than candidates × taken.
 */
export function allocateSubnet(pools: AddressPool[], taken: string[]): string {
  const ranges = sortedRanges(taken);
  for (const pool of pools) {
    const found = firstFree(parseCidr(pool.base), pool.size, ranges);
    if (found !== undefined) return formatCidr({ base: found, prefix: pool.size });
  }
  const sizes = [...new Set(pools.map((p) => p.size))].join(' or /');
  const bases = pools.map((p) => p.base).join(', ');
  throw precondition(`the address pools are exhausted: no free /${sizes} in ${bases}`);
}

/**
 * The IPv4 entries of `taken`, each packed into one number as base * 64 + prefix (exact: below
 * 2^38), so that a native typed-array sort, with no comparator and no objects, orders them by base.
 */
function sortedRanges(taken: string[]): Float64Array {
  const keys = new Float64Array(taken.length);
  let n = 0;
  for (const s of taken) {
    const c = parseTaken(s);
    if (c) keys[n++] = c.base * 64 + c.prefix;
  }
  return keys.subarray(0, n).sort();
}

/** The lowest /size block of `pool` clear of the packed, sorted `ranges`, if any. */
function firstFree(pool: Cidr, size: number, ranges: Float64Array): number | undefined {
  const step = spanOf(size);
  const fits = (candidate: number) => candidate + step - 1 <= lastOf(pool);
  let candidate = pool.base;
  for (const key of ranges) {
    if (!fits(candidate)) return undefined;
    const start = Math.floor(key / 64);
    const end = lastOf({ base: start, prefix: key % 64 });
    if (end < candidate) continue; // below the candidate: it stays behind, as the candidate only grows
    if (start >= candidate + step) return candidate; // above it, as is every later range
    candidate = pool.base + Math.ceil((end + 1 - pool.base) / step) * step; // jump past this range
  }
  return fits(candidate) ? candidate : undefined;
}

/**
 * A user's subnet: valid, prefix between 8 and 30, overlapping none of `taken` (whose `what`
 * names it in the error, e.g. 'network web_default'). Returns it normalized.
 */
export function checkSubnet(subnet: string, taken: Array<{ cidr: string; what: string }>): string {
  const c = parseCidr(subnet);
  if (c.prefix < 8 || c.prefix > 30) {
    throw invalid(`invalid subnet "${subnet}": the prefix length must be between 8 and 30`);
  }
  const normalized = formatCidr(c);
  for (const t of taken) {
    const other = parseTaken(t.cidr);
    if (other && overlaps(c, other)) throw conflict(`subnet ${normalized} overlaps ${t.what} (${t.cidr})`);
  }
  return normalized;
}

/**
 * The gateway of a subnet: the first usable address by default; a given one must be inside
 * the subnet and be neither its network nor its broadcast address. /31 and /32 have no usable
 * address (every one of them is a network or broadcast address).
 */
export function gatewayOf(subnet: string, given?: string): string {
  const c = parseCidr(subnet);
  const name = formatCidr(c);
  if (given === undefined) {
    if (c.prefix > 30) throw invalid(`subnet ${name} has no usable address for a gateway`);
    return formatIp(c.base + 1);
  }
  const ip = parseIp(given);
  if (!contains(c, ip)) throw invalid(`gateway ${given} is not inside subnet ${name}`);
  if (ip === c.base) throw invalid(`gateway ${given} is the network address of subnet ${name}`);
  if (ip === lastOf(c)) throw invalid(`gateway ${given} is the broadcast address of subnet ${name}`);
  return formatIp(ip);
}

/**
 * The lowest free address of a subnet for an attachment or a service VIP: never the network
 * or broadcast address, one of `reserved` (e.g. the gateway) or one of `used`.
 * `label` names the network in the error when none is left.
 */
export function allocateAddress(
  subnet: string,
  used: Iterable<string>,
  opts: { reserved?: string[]; label?: string } = {},
): string {
  const c = parseCidr(subnet);
  const busy = new Set<number>();
  for (const a of used) busy.add(parseIp(a));
  for (const a of opts.reserved ?? []) busy.add(parseIp(a));
  for (let ip = c.base + 1; ip < lastOf(c); ip++) if (!busy.has(ip)) return formatIp(ip);
  const of = opts.label ? ` of network ${opts.label}` : '';
  throw precondition(`no free address left in subnet ${formatCidr(c)}${of}`);
}
