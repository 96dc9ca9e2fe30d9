/**
 * The IPv4 networks this host already uses (its addresses and routes), which new networks'
 * subnets must not overlap. Read with iproute2's JSON output, in the caller's network
 * namespace. The default route is not a network (it would overlap everything).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface HostNetwork {
  cidr: string;
  what: string;
}

interface IpAddr {
  ifname: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}
interface IpRoute {
  dst: string;
  dev?: string;
}

/** Addresses (as /32) and routes (a link's subnet is one) of this host, IPv4. */
export async function hostNetworks(): Promise<HostNetwork[]> {
  const [addrs, routes] = await Promise.all([
    ipJson<IpAddr[]>(['-4', 'addr']),
    ipJson<IpRoute[]>(['-4', 'route']),
  ]);
  const out: HostNetwork[] = [];
  for (const a of addrs)
    for (const i of a.addr_info ?? []) {
      if (i.family !== 'inet') continue;
      out.push({ cidr: `${i.local}/32`, what: `an address of this host on ${a.ifname}` });
    }
  for (const r of routes) {
    if (r.dst === 'default') continue;
    const cidr = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    out.push({ cidr, what: `a route of this host${r.dev ? ` via ${r.dev}` : ''}` });
  }
  return out;
}

async function ipJson<T>(args: string[]): Promise<T> {
  const { stdout } = await run('ip', ['-j', ...args], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout || '[]') as T;
}
