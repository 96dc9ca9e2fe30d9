/**
 * The overlay datapath of one host (DESIGN.md §6), programmed with iproute2 and iptables:
 *
 * - per network, a bridge `tsbr<VNI>` holding the gateway address (the containers' default
 *   route and DNS server) and, for an overlay, a VXLAN device `tsvx<VNI>` enslaved to it, with learning off and ARP proxy
 *   on: the VXLAN device answers ARP for remote peers from its neighbour table, and forwards
 *   their frames to their host by static forwarding entries (no multicast, no flooding);
 * - per container attachment, a veth pair: `tsc…` on the bridge, the other end moved into the
 *   container's network namespace as `eth<N>`, with the task's address, a MAC derived from it
 *   and, on its first network, the default route through the gateway;
 * - isolation: forwarding between two tsswarm bridges is dropped, and an internal network's
 *   bridge forwards nowhere (chain TSSWARM-ISOLATION, jumped to from FORWARD), so networks stay
 *   apart even on a host that routes; traffic within one bridge returns first (where
 *   br_netfilter is loaded, bridged frames traverse FORWARD too). An internal network's
 *   containers reach their host only for DNS (chain TSSWARM-INPUT, jumped to from INPUT);
 * - egress: a network that is not internal is masqueraded behind the host's address when its
 *   traffic leaves through another interface (POSTROUTING), as Docker's bridges are.
 *
 * Every command runs through `exec` (argv, in the host's network namespace), which the daemon
 * runs directly and a test runs inside a simulated host. Failures throw with the command and
 * its stderr. Operations are idempotent: a restarted daemon calls them again over what exists.
 */
import { parseCidr } from './ipam.js';
import {
  bridgeName,
  diffEntries,
  macOf,
  type Peer,
  type RemoteEntry,
  remoteEntries,
  VXLAN_OVERHEAD,
  VXLAN_PORT,
  vxlanName,
} from './links.js';

/** Runs argv (ip, bridge, iptables, nsenter…) in the host's network namespace; resolves its stdout. */
export type Exec = (argv: string[]) => Promise<string>;

export interface OverlayNetwork {
  vni: number;
  /** bridge: a bridge on this host only, no VXLAN device. Default overlay. */
  driver?: 'overlay' | 'bridge';
  /**
   * The routing mesh's network: `gateway` is this host's own address on it, which its bridge
   * also takes as MAC (macOf), so that other hosts reach it without learning; only
   * port-forwarded (DNATed) connections cross between it and other bridges.
   */
  ingress?: boolean;
  /** CIDR, e.g. 10.0.1.0/24. */
  subnet: string;
  gateway: string;
  internal?: boolean;
}

/** A container's network namespace: a named one (/run/netns) or a process's. */
export type NetnsRef = { name: string } | { pid: number };

export interface Attachment {
  network: OverlayNetwork;
  /** The host side's name (vethName). */
  hostIf: string;
  /** The name inside the container, e.g. eth0. */
  containerIf: string;
  /** The container's address, CIDR (e.g. 10.0.1.5/24). */
  address: string;
  /** Route the container's default traffic through this network's gateway. */
  defaultRoute?: boolean;
}

const ISOLATION = 'TSSWARM-ISOLATION';
const INPUT = 'TSSWARM-INPUT';

export class OverlayDatapath {
  /** What each network's VXLAN device was last programmed with. */
  private readonly programmed = new Map<number, RemoteEntry[]>();
  private isolation?: Promise<void>;

  constructor(
    private readonly exec: Exec,
    /** This host's underlay address: the VXLAN endpoint. */
    readonly vtep: string,
    /** The underlay's MTU; the overlay's is 50 bytes less. */
    private readonly underlayMtu = 1500,
  ) {}

  get mtu(): number {
    return this.underlayMtu - VXLAN_OVERHEAD;
  }

  /** Creates the network's bridge and VXLAN device on this host (if missing) and sets them up. */
  async ensureNetwork(n: OverlayNetwork): Promise<void> {
    await this.ensureIsolation();
    const br = bridgeName(n.vni);
    const vx = vxlanName(n.vni);
    const existing = new Set(await this.links());
    if (!existing.has(br)) await this.ip(['link', 'add', br, 'mtu', String(this.mtu), 'type', 'bridge']);
    if (n.ingress) await this.ip(['link', 'set', br, 'address', macOf(n.gateway)]);
    const prefix = parseCidr(n.subnet).prefix;
    await this.ip(['addr', 'replace', `${n.gateway}/${prefix}`, 'dev', br]);
    await this.ip(['link', 'set', br, 'up']);
    // traffic within the network passes (bridged frames traverse FORWARD where br_netfilter is on)
    await this.iptables(['-I', ISOLATION, '-i', br, '-o', br, '-j', 'RETURN'], true);
    for (const rule of this.perNetworkRules(n)) await this.iptables([n.ingress ? '-I' : '-A', ...rule], true);
    if (n.driver === 'bridge') return;
    if (!existing.has(vx))
      await this.ip([
        'link',
        'add',
        vx,
        'mtu',
        String(this.mtu),
        'type',
        'vxlan',
        'id',
        String(n.vni),
        'local',
        this.vtep,
        'dstport',
        String(VXLAN_PORT),
        'nolearning',
        'proxy',
      ]);
    await this.ip(['link', 'set', vx, 'master', br, 'up']);
  }

  /** The rules (chain first, `-A` left out) a network adds beyond its ISOLATION return. */
  private perNetworkRules(n: OverlayNetwork): string[][] {
    const br = bridgeName(n.vni);
    const masquerade = ['POSTROUTING', '-t', 'nat', '-s', n.subnet, '!', '-o', br, '-j', 'MASQUERADE'];
    if (n.ingress)
      return [
        [ISOLATION, '-i', br, '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'RETURN'],
        [ISOLATION, '-o', br, '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'RETURN'],
        masquerade,
      ];
    if (n.internal)
      return [
        [ISOLATION, '-i', br, '!', '-o', br, '-j', 'DROP'],
        [INPUT, '-i', br, '-p', 'udp', '--dport', '53', '-j', 'RETURN'],
        [INPUT, '-i', br, '-j', 'DROP'],
      ];
    return [masquerade];
  }

  /** Removes the network's links (and rules) from this host. */
  async removeNetwork(n: OverlayNetwork): Promise<void> {
    const br = bridgeName(n.vni);
    for (const name of [vxlanName(n.vni), br]) await this.ip(['link', 'del', name]).catch(() => {});
    await this.iptables(['-D', ISOLATION, '-i', br, '-o', br, '-j', 'RETURN']).catch(() => {});
    for (const rule of this.perNetworkRules(n)) await this.iptables(['-D', ...rule]).catch(() => {});
    this.programmed.delete(n.vni);
  }

  /**
   * Programs the network's VXLAN device with its peers on other hosts: a permanent neighbour
   * (IP → MAC, answered by the ARP proxy) and forwarding entry (MAC → host) each; entries of
   * peers gone or moved are removed. The first call reads what the kernel holds.
   */
  async setPeers(vni: number, peers: readonly Peer[]): Promise<{ added: number; removed: number }> {
    const vx = vxlanName(vni);
    const current = this.programmed.get(vni) ?? (await this.readEntries(vx));
    const desired = remoteEntries(peers, this.vtep);
    const { add, remove } = diffEntries(current, desired);
    for (const e of remove) {
      await this.ip(['neigh', 'del', e.address, 'dev', vx]).catch(() => {});
      await this.bridge(['fdb', 'del', e.mac, 'dev', vx, 'dst', e.vtep, 'self']).catch(() => {});
    }
    for (const e of add) {
      await this.ip(['neigh', 'replace', e.address, 'lladdr', e.mac, 'dev', vx, 'nud', 'permanent']);
      await this.bridge(['fdb', 'replace', e.mac, 'dev', vx, 'dst', e.vtep, 'self', 'permanent']);
    }
    this.programmed.set(vni, desired);
    return { added: add.length, removed: remove.length };
  }

  /** Connects a container to a network: a veth pair, its address, MAC, MTU and routes. */
  async attach(ns: NetnsRef, a: Attachment): Promise<void> {
    const br = bridgeName(a.network.vni);
    const address = a.address.split('/')[0]!;
    await this.ip(['link', 'del', a.hostIf]).catch(() => {}); // a leftover of a crashed attach
    await this.ip([
      'link',
      'add',
      a.hostIf,
      'mtu',
      String(this.mtu),
      'type',
      'veth',
      'peer',
      'name',
      a.containerIf,
      'mtu',
      String(this.mtu),
      'address',
      macOf(address),
      'netns',
      'name' in ns ? ns.name : String(ns.pid),
    ]);
    await this.ip(['link', 'set', a.hostIf, 'master', br, 'up']);
    const inside = (args: string[]) => this.exec([...this.netnsPrefix(ns), ...args]);
    await inside(['ip', 'addr', 'add', a.address, 'dev', a.containerIf]);
    await inside(['ip', 'link', 'set', 'lo', 'up']);
    await inside(['ip', 'link', 'set', a.containerIf, 'up']);
    if (a.defaultRoute && !a.network.internal)
      await inside(['ip', 'route', 'replace', 'default', 'via', a.network.gateway, 'dev', a.containerIf]);
  }

  /** Removes a container's veth pair (both ends go; gone already is fine). */
  async detach(hostIf: string): Promise<void> {
    await this.ip(['link', 'del', hostIf]).catch(() => {});
  }

  /**
   * Removes the networks on this host other than `keep` (VNIs) — what a daemon that crashed or
   * was stopped left of networks it no longer needs: their bridges and VXLAN devices, and every
   * rule naming their bridge. Returns the VNIs removed.
   */
  async removeOthers(keep: ReadonlySet<number>): Promise<number[]> {
    const stale = new Set<number>();
    for (const name of await this.links()) {
      const m = /^ts(?:br|vx)(\d+)$/.exec(name);
      if (m && !keep.has(Number(m[1]))) stale.add(Number(m[1]));
    }
    if (!stale.size) return [];
    const bridges = new Set([...stale].map(bridgeName));
    for (const vni of stale)
      for (const name of [vxlanName(vni), bridgeName(vni)])
        await this.ip(['link', 'del', name]).catch(() => {});
    for (const table of ['filter', 'nat']) {
      const rules = (await this.exec(['iptables', '-w', '-t', table, '-S']).catch(() => ''))
        .split('\n')
        .filter((l) => l.startsWith('-A ') && l.split(' ').some((w) => bridges.has(w)));
      for (const r of rules)
        await this.exec(['iptables', '-w', '-t', table, '-D', ...r.slice(3).split(' ')]).catch(() => {});
    }
    for (const vni of stale) this.programmed.delete(vni);
    return [...stale];
  }

  /** The host-side interfaces of attachments on this host (tsc…), for a restarted daemon to reconcile. */
  async attachments(): Promise<string[]> {
    return (await this.links()).filter((n) => n.startsWith('tsc'));
  }

  /** Drops forwarding between tsswarm bridges (once per host; kept if it exists). */
  private ensureIsolation(): Promise<void> {
    this.isolation ??= (async () => {
      await this.iptables(['-N', ISOLATION]).catch(() => {}); // exists already
      await this.iptables(['-N', INPUT]).catch(() => {});
      await this.iptables(['-A', ISOLATION, '-i', 'tsbr+', '-o', 'tsbr+', '-j', 'DROP'], true);
      await this.iptables(['-I', 'FORWARD', '-j', ISOLATION], true);
      await this.iptables(['-I', 'INPUT', '-j', INPUT], true);
      // containers' traffic out, and published ports' between hosts, is routed by the host
      await this.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    })().catch((e) => {
      this.isolation = undefined;
      throw e;
    });
    return this.isolation;
  }

  private netnsPrefix(ns: NetnsRef): string[] {
    return 'name' in ns ? ['ip', 'netns', 'exec', ns.name] : ['nsenter', '-t', String(ns.pid), '-n'];
  }

  private async readEntries(vx: string): Promise<RemoteEntry[]> {
    const neigh = JSON.parse(
      (await this.ip(['-j', 'neigh', 'show', 'dev', vx]).catch(() => '[]')) || '[]',
    ) as { dst: string; lladdr?: string }[];
    const fdb = JSON.parse(
      (await this.bridge(['-j', 'fdb', 'show', 'dev', vx]).catch(() => '[]')) || '[]',
    ) as { mac: string; dst?: string }[];
    const hostOf = new Map(fdb.filter((f) => f.dst).map((f) => [f.mac, f.dst!]));
    return neigh
      .filter((n) => n.lladdr && hostOf.has(n.lladdr))
      .map((n) => ({ address: n.dst, mac: n.lladdr!, vtep: hostOf.get(n.lladdr!)! }));
  }

  private async links(): Promise<string[]> {
    const out = JSON.parse((await this.ip(['-j', 'link', 'show'])) || '[]') as { ifname: string }[];
    return out.map((l) => l.ifname);
  }

  private ip(args: string[]): Promise<string> {
    return this.exec(['ip', ...args]);
  }

  private bridge(args: string[]): Promise<string> {
    return this.exec(['bridge', ...args]);
  }

  /** An iptables rule; with `once`, added only if `-C` does not find it. */
  private async iptables(args: string[], once = false): Promise<void> {
    if (once) {
      const check = ['-C', ...args.slice(1)];
      const ok = await this.exec(['iptables', '-w', ...check]).then(
        () => true,
        () => false,
      );
      if (ok) return;
    }
    await this.exec(['iptables', '-w', ...args]);
  }
}
