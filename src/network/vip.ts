/**
 * Service VIPs, load-balanced in the kernel inside each container's own network namespace
 * (DESIGN.md §6): a connection the container opens to a VIP is DNATed by iptables, in the
 * container's nat OUTPUT chain, to one of the service's running tasks, chosen at random with
 * equal weight (the `statistic` match, probability 1/n, 1/(n-1), …, 1). The container's own
 * conntrack undoes the translation on the replies, so the task sees the client's real address
 * and no host holds per-connection state for another host's containers. A VIP with no running
 * task rejects connections at once (filter OUTPUT sees it only when no DNAT matched).
 * Pure: renders the `iptables-restore` input; the caller loads it into the namespace.
 */

export interface VipBackends {
  vip: string;
  backends: readonly string[];
}

/** The iptables-restore input (nat and filter tables, replaced whole) for a container's VIPs. */
export function renderVipRules(vips: readonly VipBackends[]): string {
  const nat = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
  ];
  const filter = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
  const sorted = [...vips].sort((a, b) => a.vip.localeCompare(b.vip));
  for (const { vip, backends } of sorted) {
    const n = backends.length;
    backends.forEach((b, i) => {
      const left = n - i;
      const pick =
        left > 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', (1 / left).toFixed(10)] : [];
      nat.push(['-A', 'OUTPUT', '-d', `${vip}/32`, ...pick, '-j', 'DNAT', '--to-destination', b].join(' '));
    });
    filter.push(`-A OUTPUT -d ${vip}/32 -j REJECT --reject-with icmp-port-unreachable`);
  }
  return [...nat, 'COMMIT', ...filter, 'COMMIT', ''].join('\n');
}
