/**
 * The pure side of the overlay datapath (DESIGN.md §6): the names of a network's links on a
 * host, the MAC address of a container's interface (derived from its IP, so that no host has to
 * learn or announce it), and which forwarding and neighbour entries a host's VXLAN device needs
 * for the peers of a network on other hosts. Nothing here touches the system.
 */
import { parseIp } from './ipam.js';

/** VXLAN network identifiers are 24 bits; 0 is reserved. */
export const MAX_VNI = 0xff_ff_ff;
/** The IANA VXLAN port. */
export const VXLAN_PORT = 4789;
/** VXLAN over IPv4 adds 50 bytes (outer Ethernet 14, IP 20, UDP 8, VXLAN 8). */
export const VXLAN_OVERHEAD = 50;

function checkVni(vni: number): number {
  if (!Number.isInteger(vni) || vni < 1 || vni > MAX_VNI)
    throw new RangeError(`a VNI is an integer from 1 to ${MAX_VNI}, got ${vni}`);
  return vni;
}

/** The per-host bridge of a network (at most 12 characters: interface names hold 15). */
export const bridgeName = (vni: number) => `tsbr${checkVni(vni)}`;
/** The per-host VXLAN device of a network. */
export const vxlanName = (vni: number) => `tsvx${checkVni(vni)}`;
/** The host side of a container's veth pair on a network: tsc + 8 hex of the task id + the attachment's index. */
export function vethName(taskId: string, index: number): string {
  if (!/^[0-9a-f]{8}/.test(taskId))
    throw new RangeError(`a task id starts with 8 hex digits, got "${taskId}"`);
  if (!Number.isInteger(index) || index < 0 || index > 99)
    throw new RangeError(`bad attachment index ${index}`);
  return `tsc${taskId.slice(0, 8)}${index}`;
}

/** The MAC address of the interface that holds `ip` (IPv4): 02:42 and the address' 4 bytes. */
export function macOf(ip: string): string {
  const n = parseIp(ip);
  const bytes = [0x02, 0x42, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A container's address on a network and the host (its VXLAN endpoint) it runs on. */
export interface Peer {
  /** IPv4 address, without prefix length. */
  address: string;
  /** The underlay address of its host. */
  vtep: string;
}

/** One remote peer as a VXLAN device knows it: a neighbour (IP → MAC) and a forwarding entry (MAC → host). */
export interface RemoteEntry {
  address: string;
  mac: string;
  vtep: string;
}

/** The entries a host needs for a network's peers: every peer on another host, once. */
export function remoteEntries(peers: readonly Peer[], localVtep: string): RemoteEntry[] {
  const byAddress = new Map<string, RemoteEntry>();
  for (const p of peers) {
    if (p.vtep === localVtep) continue;
    byAddress.set(p.address, { address: p.address, mac: macOf(p.address), vtep: p.vtep });
  }
  return [...byAddress.values()].sort((a, b) => parseIp(a.address) - parseIp(b.address));
}

/** What changes: entries to add (new, or moved to another host) and entries to remove. */
export function diffEntries(
  current: readonly RemoteEntry[],
  desired: readonly RemoteEntry[],
): { add: RemoteEntry[]; remove: RemoteEntry[] } {
  const key = (e: RemoteEntry) => `${e.address} ${e.mac} ${e.vtep}`;
  const have = new Set(current.map(key));
  const want = new Set(desired.map(key));
  return {
    add: desired.filter((e) => !have.has(key(e))),
    remove: current.filter((e) => !want.has(key(e))),
  };
}
