/**
 * The leader's address allocator for one reconciler pass: service VIPs and task attachments on
 * their networks. In use on a network: its gateway, every service's VIP there, and the address
 * of every task that has not ended, except a task being stopped on a node that is down (it
 * cannot report its end; its node stops it when it is back). New addresses are taken from the network's subnet (lowest
 * free first) and stored with the task or service, so a new leader keeps them.
 */
import type {
  NetworkAddress,
  NetworkRecord,
  NodeRecord,
  ServiceRecord,
  ServiceSpec,
  TaskRecord,
} from '../api/cluster.js';
import { allocateAddress } from '../network/ipam.js';
import { isDesiredUp, isTerminal } from './orchestrator/states.js';

const bare = (cidr: string) => cidr.split('/')[0]!;
/** Stands for the ingress network in taskNetworks. */
const INGRESS_TARGET = '\0ingress';

/** The networks a service's tasks are attached to: its own, or the ingress network when it has none but publishes ports. */
export function taskNetworks(spec: ServiceSpec): string[] {
  if (spec.networks?.length) return spec.networks.map((a) => a.target);
  return spec.endpoint?.ports.some((p) => p.published !== undefined) ? [INGRESS_TARGET] : [];
}

export class AddressBook {
  private readonly used = new Map<string, Set<string>>();
  private readonly byName = new Map<string, NetworkRecord>();

  constructor(
    networks: readonly NetworkRecord[],
    services: readonly ServiceRecord[],
    tasks: readonly TaskRecord[],
    nodes: readonly NodeRecord[],
  ) {
    const down = new Set(nodes.filter((n) => n.status === 'down').map((n) => n.id));
    for (const n of networks) {
      this.byName.set(n.name, n);
      this.used.set(n.id, new Set([n.gateway]));
    }
    for (const s of services)
      for (const v of s.virtualIps ?? []) this.used.get(v.networkId)?.add(bare(v.address));
    for (const n of networks)
      for (const a of Object.values(n.endpoints ?? {})) this.used.get(n.id)?.add(bare(a));
    for (const t of tasks) {
      if (isTerminal(t.status.state)) continue;
      if (!isDesiredUp(t.desiredState) && t.nodeId !== undefined && down.has(t.nodeId)) continue;
      for (const a of t.attachments ?? []) this.used.get(a.networkId)?.add(bare(a.address));
    }
  }

  private take(n: NetworkRecord): NetworkAddress {
    const used = this.used.get(n.id)!;
    const ip = allocateAddress(n.subnet, used, { reserved: [n.gateway], label: n.name });
    used.add(ip);
    return { networkId: n.id, network: n.name, address: `${ip}/${n.subnet.split('/')[1]}` };
  }

  /**
   * A new task's address on each network of its service (throws when a subnet is full). A
   * service on no network that publishes ports is on the ingress network, as Docker's.
   */
  attach(spec: ServiceSpec): NetworkAddress[] {
    const out: NetworkAddress[] = [];
    for (const target of taskNetworks(spec)) {
      const n = this.byName.get(target) ?? (target === INGRESS_TARGET ? this.ingress() : undefined);
      if (n) out.push(this.take(n));
    }
    return out;
  }

  private ingress(): NetworkRecord | undefined {
    return [...this.byName.values()].find((n) => n.ingress);
  }

  /**
   * The service's VIPs as they should be: one per network in endpoint mode vip (kept when
   * already there), none in dnsrr; undefined when nothing changes.
   */
  vips(svc: ServiceRecord): NetworkAddress[] | undefined {
    const want = (svc.spec.endpoint?.mode ?? 'vip') === 'vip' ? (svc.spec.networks ?? []) : [];
    const have = svc.virtualIps ?? [];
    const next: NetworkAddress[] = [];
    for (const a of want) {
      const n = this.byName.get(a.target);
      if (!n) continue;
      const kept = have.find((v) => v.networkId === n.id);
      if (kept) next.push(kept);
      else {
        try {
          next.push(this.take(n));
        } catch {
          // a full subnet: the service goes without a VIP there until an address is free
        }
      }
    }
    const same = next.length === have.length && next.every((v, i) => v.address === have[i]?.address);
    return same ? undefined : next;
  }

  /**
   * The ingress network's node endpoints as they should be: one address per node that has not
   * left (kept when already there); undefined when nothing changes.
   */
  endpoints(net: NetworkRecord, nodes: readonly NodeRecord[]): Record<string, string> | undefined {
    const have = net.endpoints ?? {};
    const next: Record<string, string> = {};
    for (const n of [...nodes].sort((a, b) => a.id.localeCompare(b.id))) {
      if (n.left) continue;
      if (have[n.id]) next[n.id] = have[n.id]!;
      else {
        try {
          next[n.id] = this.take(net).address;
        } catch {
          // a full subnet: the node has no ingress until an address is free
        }
      }
    }
    const same =
      Object.keys(next).length === Object.keys(have).length &&
      Object.entries(next).every(([k, v]) => have[k] === v);
    return same ? undefined : next;
  }
}
