/**
 * A node's view of the networks its tasks are on (DESIGN.md §6, §7), computed by a manager from
 * cluster state and sent to the node with its assignments. It holds what the node's datapath
 * and embedded DNS need and nothing else:
 *
 * - every network one of the node's tasks is attached to (its VNI, subnet, gateway);
 * - overlay peers: every attachment on those networks on any node, with its host's address
 *   (the VXLAN endpoint), so that the node programs static neighbour and forwarding entries;
 * - per service on those networks: its DNS names (the service's name, its name within its
 *   stack, its aliases), its VIP (endpoint mode vip) and the addresses of its running tasks,
 *   which are what DNS (`tasks.NAME`, dnsrr) and the VIP's load balancing hand out.
 *
 * - published ports: where this node sends a connection to each (its own tasks first, else the
 *   other nodes that run one, over the ingress network), and its address on that network.
 *
 * A task leaves the service's addresses as soon as it is no longer wanted running (scale-down,
 * update, removal), before its container stops; it stays a peer until it has ended. The tasks
 * of a node that is down are neither.
 * Pure: no I/O.
 */
import type { NetworkRecord, NodeRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { STACK_LABEL } from '../manager/deploy.js';
import { isTerminal } from '../manager/orchestrator/states.js';
import type { Peer } from './links.js';

export interface ViewService {
  /** The service's full name (stack_service). */
  name: string;
  /** Every name it answers to on this network, lower case: name, the stack-local name, aliases. */
  names: string[];
  /** Endpoint mode vip: its virtual IP on this network (bare address). */
  vip?: string;
  /** Bare addresses of its tasks that are wanted and running, sorted. */
  tasks: string[];
}

export interface ViewNetwork {
  id: string;
  name: string;
  driver: 'overlay' | 'bridge';
  /** The VXLAN identifier (overlay); for a bridge network, only the key of its link names. */
  vni: number;
  subnet: string;
  gateway: string;
  internal: boolean;
  /** Overlay: the attachments on every node (this one's included), sorted by address. */
  peers: Peer[];
  services: ViewService[];
}

/** One of this node's tasks on one network. */
export interface LocalAttachment {
  taskId: string;
  networkId: string;
  /** Bare address. */
  address: string;
}

/** A published port as this node serves it. */
export interface ViewPort {
  protocol: 'tcp' | 'udp' | 'sctp';
  published: number;
  target: number;
  mode: 'ingress' | 'host';
  /** This node's running tasks of the service (bare addresses on their first network). */
  local: string[];
  /** Ingress: the ingress endpoints of the other nodes that run a task of it. */
  remote: string[];
}

/** The routing mesh as this node takes part in it. */
export interface ViewIngress {
  network: ViewNetwork;
  /** This node's address on it (bare). */
  self: string;
  /** Every other node's address on it, with its host address. */
  nodes: Peer[];
}

export interface NetView {
  networks: ViewNetwork[];
  attachments: LocalAttachment[];
  /** Published ports: ingress ones on every node, host ones on the nodes of their tasks. */
  ports: ViewPort[];
  ingress?: ViewIngress;
}

export interface ClusterNetState {
  networks: readonly NetworkRecord[];
  services: readonly ServiceRecord[];
  tasks: readonly TaskRecord[];
  nodes: readonly NodeRecord[];
}

const bare = (cidr: string) => cidr.split('/')[0]!;
const byAddress = (a: string, b: string) => {
  const n = (s: string) => s.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  return n(a) - n(b);
};

/** The DNS names of a service on a network: its name, its name within its stack, its aliases. */
export function serviceNames(svc: ServiceRecord, networkName: string): string[] {
  const names = [svc.spec.name];
  const stack = svc.spec.labels[STACK_LABEL];
  if (stack && svc.spec.name.startsWith(`${stack}_`)) names.push(svc.spec.name.slice(stack.length + 1));
  const att = svc.spec.networks?.find((a) => a.target === networkName);
  names.push(...(att?.aliases ?? []));
  return [...new Set(names.map((n) => n.toLowerCase()))];
}

/** The view of the networks `nodeId`'s tasks are attached to. */
export function netViewFor(nodeId: string, state: ClusterNetState): NetView {
  // a down node's tasks are out of reach: neither peers nor backends (their replacements are)
  const down = new Set(state.nodes.filter((n) => n.status === 'down').map((n) => n.id));
  const live = state.tasks.filter(
    (t) =>
      t.nodeId !== undefined && !isTerminal(t.status.state) && (t.nodeId === nodeId || !down.has(t.nodeId)),
  );
  const mine = live.filter((t) => t.nodeId === nodeId);
  const attachments: LocalAttachment[] = mine.flatMap((t) =>
    (t.attachments ?? []).map((a) => ({ taskId: t.id, networkId: a.networkId, address: bare(a.address) })),
  );
  attachments.sort((a, b) => a.taskId.localeCompare(b.taskId) || a.networkId.localeCompare(b.networkId));
  const wanted = new Set(attachments.map((a) => a.networkId));
  const vtepOf = new Map(state.nodes.map((n) => [n.id, n.address]));
  const networks: ViewNetwork[] = [];
  for (const n of state.networks) {
    // the ingress network is the mesh's (below), also for the tasks on it
    if (!wanted.has(n.id) || n.vni === undefined || n.ingress) continue;
    // a bridge network is per host: its peers and tasks are this node's only
    const scope = n.driver === 'overlay' ? live : mine;
    const peers: Peer[] = [];
    for (const t of scope) {
      const vtep = vtepOf.get(t.nodeId!);
      const a = t.attachments?.find((x) => x.networkId === n.id);
      if (vtep && a) peers.push({ address: bare(a.address), vtep });
    }
    peers.sort((a, b) => byAddress(a.address, b.address));
    const services: ViewService[] = [];
    for (const svc of state.services) {
      if (!svc.spec.networks?.some((a) => a.target === n.name)) continue;
      const tasks = scope
        .filter((t) => t.serviceId === svc.id && t.desiredState === 'running' && t.status.state === 'running')
        .flatMap((t) => t.attachments?.filter((a) => a.networkId === n.id).map((a) => bare(a.address)) ?? [])
        .sort(byAddress);
      const vip = svc.virtualIps?.find((v) => v.networkId === n.id);
      services.push({
        name: svc.spec.name,
        names: serviceNames(svc, n.name),
        ...(vip ? { vip: bare(vip.address) } : {}),
        tasks,
      });
    }
    services.sort((a, b) => a.name.localeCompare(b.name));
    networks.push({
      id: n.id,
      name: n.name,
      driver: n.driver,
      vni: n.vni,
      subnet: n.subnet,
      gateway: n.gateway,
      internal: n.internal,
      peers,
      services,
    });
  }
  const { ports, ingress } = meshFor(nodeId, state, live, vtepOf);
  if (ingress && wanted.has(ingress.network.id)) networks.push(ingress.network);
  networks.sort((a, b) => a.vni - b.vni);
  return { networks, attachments, ports, ...(ingress ? { ingress } : {}) };
}

/** The published ports this node serves and its place on the ingress network. */
function meshFor(
  nodeId: string,
  state: ClusterNetState,
  live: readonly TaskRecord[],
  vtepOf: ReadonlyMap<string, string>,
): { ports: ViewPort[]; ingress?: ViewIngress } {
  const net = state.networks.find((n) => n.ingress && n.vni !== undefined);
  const endpoints = net?.endpoints ?? {};
  const self = endpoints[nodeId];
  const ports: ViewPort[] = [];
  for (const svc of state.services) {
    const published = (svc.spec.endpoint?.ports ?? []).filter((p) => p.published !== undefined);
    if (!published.length) continue;
    const running = live.filter(
      (t) =>
        t.serviceId === svc.id &&
        t.desiredState === 'running' &&
        t.status.state === 'running' &&
        t.attachments?.length,
    );
    const local = running
      .filter((t) => t.nodeId === nodeId)
      .map((t) => bare(t.attachments![0]!.address))
      .sort(byAddress);
    const remoteNodes = new Set(running.filter((t) => t.nodeId !== nodeId).map((t) => t.nodeId!));
    const remote = [...remoteNodes]
      .map((id) => endpoints[id])
      .filter((a): a is string => !!a && !!self)
      .map(bare)
      .sort(byAddress);
    for (const p of published) {
      if (p.mode === 'host' && !local.length) continue;
      ports.push({
        protocol: p.protocol,
        published: p.published!,
        target: p.target,
        mode: p.mode,
        local,
        remote: p.mode === 'ingress' ? remote : [],
      });
    }
  }
  ports.sort((a, b) => a.published - b.published || a.protocol.localeCompare(b.protocol));
  if (!net || !self) return { ports };
  const down = new Set(state.nodes.filter((n) => n.status === 'down').map((n) => n.id));
  const nodes: Peer[] = Object.entries(endpoints)
    .filter(([id]) => id !== nodeId && vtepOf.has(id) && !down.has(id))
    .map(([id, a]) => ({ address: bare(a), vtep: vtepOf.get(id)! }))
    .sort((a, b) => byAddress(a.address, b.address));
  // peers: the other nodes, and the tasks on it (services that publish ports on no network of their own)
  const taskPeers: Peer[] = live.flatMap((t) => {
    const a = t.attachments?.find((x) => x.networkId === net.id);
    const vtep = vtepOf.get(t.nodeId!);
    return a && vtep ? [{ address: bare(a.address), vtep }] : [];
  });
  // on each node, the network's gateway is the node's own address on it
  const network: ViewNetwork = {
    id: net.id,
    name: net.name,
    driver: 'overlay',
    vni: net.vni!,
    subnet: net.subnet,
    gateway: bare(self),
    internal: false,
    peers: [...nodes, ...taskPeers].sort((a, b) => byAddress(a.address, b.address)),
    services: [],
  };
  return { ports, ingress: { network, self: bare(self), nodes } };
}

/**
 * What a container asking for `qname` gets: the addresses of the name on the networks of the
 * task that holds `client` (the query's source address). `tasks.NAME` is every running task;
 * NAME is the VIP in endpoint mode vip, the running tasks in dnsrr. undefined: not a name in
 * the swarm (the caller may forward it); an empty list: a service with nothing running.
 */
export function resolveName(view: NetView, client: string, qname: string): string[] | undefined {
  const name = qname.toLowerCase().replace(/\.$/, '');
  const task = view.attachments.find((a) => a.address === client)?.taskId;
  if (!task) return undefined;
  const nets = new Set(view.attachments.filter((a) => a.taskId === task).map((a) => a.networkId));
  const listTasks = name.startsWith('tasks.');
  const wanted = listTasks ? name.slice('tasks.'.length) : name;
  let found = false;
  const out: string[] = [];
  for (const n of view.networks) {
    if (!nets.has(n.id)) continue;
    for (const s of n.services) {
      if (!s.names.includes(wanted)) continue;
      found = true;
      out.push(...(!listTasks && s.vip ? [s.vip] : s.tasks));
    }
  }
  return found ? [...new Set(out)] : undefined;
}

/** The VIPs a container on `networkIds` balances, with their backends. */
export function vipsFor(
  view: NetView,
  networkIds: readonly string[],
): Array<{ vip: string; backends: string[] }> {
  const out: Array<{ vip: string; backends: string[] }> = [];
  for (const n of view.networks) {
    if (!networkIds.includes(n.id)) continue;
    for (const s of n.services) if (s.vip) out.push({ vip: s.vip, backends: s.tasks });
  }
  return out;
}
