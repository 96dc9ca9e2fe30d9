/**
 * Published ports (DESIGN.md §6), in the host's network namespace, keeping the client's
 * address all the way to the task:
 *
 * - a connection to a node's address on an ingress port goes to one of that node's own tasks
 *   of the service if it has any (DNAT to the task, whose replies come back through this host:
 *   it is the task's gateway); otherwise to another node that has one, over the ingress
 *   network: DNAT to that node's ingress address, with the client's address left as it is;
 * - that node DNATs it again to its own task. Its reply must go back through the first node
 *   (whose connection tracking undoes the first DNAT), not straight to the client: a
 *   connection that arrived over the ingress network is marked with the node it came from
 *   (known by the source MAC, which every node's ingress bridge derives from its address), and
 *   the replies carrying that mark are routed to that node's ingress address (policy routing:
 *   one rule and table per other node); the mark is cleared once the packet is routed, or the
 *   VXLAN device would route its encapsulated packet by it as well;
 * - a host-mode port is DNATed on the nodes of its tasks only, to the local task;
 * - a connection the node itself opens to one of its own addresses (not 127/8) on a published
 *   port is DNATed the same way (nat OUTPUT, chain TSSWARM-PORTS-HOST).
 *
 * Pure: renders the rules (`iptables-restore --noflush` input for the chains TSSWARM-PORTS of
 * the nat and mangle tables) and the policy routes; node.ts loads them.
 */
import { parseIp } from './ipam.js';
import { bridgeName, macOf } from './links.js';
import type { NetView } from './view.js';

export const PORTS_CHAIN = 'TSSWARM-PORTS';
/** nat OUTPUT: published ports for connections the host itself opens to its own addresses. */
export const PORTS_HOST_CHAIN = 'TSSWARM-PORTS-HOST';
/** mangle POSTROUTING: the packet mark is cleared once routed (see renderPortRules). */
export const PORTS_OUT_CHAIN = 'TSSWARM-PORTS-OUT';
/** Priority of the policy-routing rules (below main's 32766). */
export const RULE_PRIORITY = 31_000;

/** The mark and routing table for replies to connections that came from the node at `address`. */
export function markOf(address: string): number {
  return 0x10000 | (parseIp(address) & 0xffff);
}

export interface PolicyRoute {
  mark: number;
  /** The ingress address of the node replies go back to. */
  via: string;
  dev: string;
}

/** One DNAT rule per backend, picked at random with equal weight (statistic: 1/n, 1/(n-1), …). */
function spread(match: string[], backends: readonly string[], chain = PORTS_CHAIN): string[] {
  return backends.map((b, i) => {
    const left = backends.length - i;
    const pick =
      left > 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', (1 / left).toFixed(10)] : [];
    return ['-A', chain, ...match, ...pick, '-j', 'DNAT', '--to-destination', b].join(' ');
  });
}

export function renderPortRules(view: NetView): { rules: string; routes: PolicyRoute[] } {
  const ing = view.ingress;
  const br = ing ? bridgeName(ing.network.vni) : undefined;
  const nat = ['*nat', `:${PORTS_CHAIN} - [0:0]`, `:${PORTS_HOST_CHAIN} - [0:0]`];
  const fromHost: string[] = [];
  // connections the host itself opens to one of its addresses (not loopback: 127/8 cannot leave)
  const hostMatch = ['-m', 'addrtype', '--dst-type', 'LOCAL', '!', '-d', '127.0.0.0/8'];
  for (const p of view.ports) {
    const proto = ['-p', p.protocol, '--dport', String(p.published)];
    const toTasks = p.local.map((a) => `${a}:${p.target}`);
    if (p.mode === 'host') {
      nat.push(...spread(['-m', 'addrtype', '--dst-type', 'LOCAL', ...proto], toTasks));
      fromHost.push(...spread([...hostMatch, ...proto], toTasks, PORTS_HOST_CHAIN));
      continue;
    }
    if (ing && br) nat.push(...spread(['-i', br, '-d', `${ing.self}/32`, ...proto], toTasks));
    const outside = [...(br ? ['!', '-i', br] : []), '-m', 'addrtype', '--dst-type', 'LOCAL', ...proto];
    const to = toTasks.length ? toTasks : p.remote.map((a) => `${a}:${p.published}`);
    nat.push(...spread(outside, to));
    fromHost.push(...spread([...hostMatch, ...proto], to, PORTS_HOST_CHAIN));
  }
  nat.push(...fromHost, 'COMMIT');
  const mangle = ['*mangle', `:${PORTS_CHAIN} - [0:0]`, `:${PORTS_OUT_CHAIN} - [0:0]`];
  const routes: PolicyRoute[] = [];
  if (ing && br) {
    for (const n of ing.nodes) {
      const mark = markOf(n.address);
      mangle.push(
        [
          '-A',
          PORTS_CHAIN,
          '-i',
          br,
          '-m',
          'conntrack',
          '--ctstate',
          'NEW',
          '-m',
          'mac',
          '--mac-source',
          macOf(n.address),
          '-j',
          'CONNMARK',
          '--set-mark',
          `0x${mark.toString(16)}`,
        ].join(' '),
      );
      routes.push({ mark, via: n.address, dev: br });
    }
    // replies only (from a task on any bridge, the ingress one included): requests keep no mark
    mangle.push(`-A ${PORTS_CHAIN} -m conntrack --ctdir REPLY -j CONNMARK --restore-mark`);
    // the mark chose the route; the VXLAN device would route its outer packet by it too
    mangle.push(`-A ${PORTS_OUT_CHAIN} -o ${br} -j MARK --set-mark 0`);
  }
  mangle.push('COMMIT');
  return { rules: [...nat, ...mangle, ''].join('\n'), routes };
}
