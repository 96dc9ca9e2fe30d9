/**
 * Networks as cluster objects (`network create|ls|inspect|rm`, a stack's networks): a name, a
 * driver, and a subnet and gateway allocated once by the manager that creates it, from the
 * address pools, never overlapping another network or an address or route of its host.
 * Overlay networks get a VXLAN identifier. Task and VIP addresses are the leader's
 * (allocator.ts). The datapath on the hosts comes separately (src/network/).
 */
import { randomBytes } from 'node:crypto';
import type { NetworkRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { conflict, invalid, notFound, precondition, TsswarmError } from '../api/errors.js';
import { hostNetworks } from '../network/host.js';
import {
  type AddressPool,
  allocateSubnet,
  checkSubnet,
  DEFAULT_LOCAL_POOLS,
  DEFAULT_SWARM_POOLS,
  gatewayOf,
} from '../network/ipam.js';
import type { Store } from './store/types.js';

/** The routing mesh's network name, as Docker's. */
export const INGRESS = 'ingress';
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
/** The first VXLAN identifier, as Docker's. */
const FIRST_VNI = 4097;

export interface NetworkCreateRequest {
  name?: string;
  driver?: string;
  subnet?: string;
  gateway?: string;
  attachable?: boolean;
  internal?: boolean;
  labels?: Record<string, string>;
}

/** `network inspect`: the record, the services with their VIPs and the tasks with their addresses. */
export interface NetworkDetails extends NetworkRecord {
  services: Array<{ name: string; vip?: string }>;
  tasks: Array<{ id: string; name: string; node?: string; address: string; state: string }>;
}

interface Cluster {
  services(): Promise<ServiceRecord[]>;
  tasks(): Promise<TaskRecord[]>;
}

export class NetworkApi {
  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
    /** The swarm's pools for overlay networks (swarm init --default-addr-pool). */
    private readonly pools: () => Promise<AddressPool[]> = async () => DEFAULT_SWARM_POOLS,
  ) {}

  async list(): Promise<NetworkRecord[]> {
    return (await this.store.list<NetworkRecord>('networks')).items
      .map((i) => i.value)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** By name, id or unique id prefix. */
  async get(ref: string): Promise<NetworkRecord> {
    const all = await this.list();
    const found = all.find((n) => n.name === ref) ?? all.find((n) => n.id === ref);
    if (found) return found;
    const byPrefix = all.filter((n) => n.id.startsWith(ref));
    if (byPrefix.length === 1) return byPrefix[0]!;
    throw notFound(`network ${ref} not found`);
  }

  /**
   * The routing mesh's network, `ingress` (overlay, from the swarm's pools), created when a
   * service first publishes an ingress port. Every node gets an address on it (the leader's).
   */
  async ensureIngress(): Promise<void> {
    if ((await this.list()).some((n) => n.ingress)) return;
    await this.create({ name: INGRESS, labels: {} }, true).catch((e) => {
      if (!(e instanceof TsswarmError && e.code === 'conflict')) throw e;
    });
  }

  async create(req: NetworkCreateRequest, ingress = false): Promise<NetworkRecord> {
    const name = req.name ?? '';
    if (name === INGRESS && !ingress)
      throw conflict(
        `the name ${INGRESS} is the routing mesh's network (created when a service publishes a port)`,
      );
    if (!NAME_RE.test(name))
      throw invalid(`invalid network name "${name}": letters, digits, '_', '.', '-' (at most 63)`);
    const driver = req.driver ?? 'overlay';
    if (driver !== 'overlay' && driver !== 'bridge')
      throw invalid(`unknown network driver "${driver}": overlay or bridge`);
    if (req.gateway !== undefined && req.subnet === undefined) throw invalid('--gateway needs --subnet');
    const all = await this.list();
    if (all.some((n) => n.name === name)) throw conflict(`network with name ${name} already exists`);
    const taken = [
      ...all.map((n) => ({ cidr: n.subnet, what: `network ${n.name}` })),
      ...(await hostNetworks()),
    ];
    const subnet =
      req.subnet !== undefined
        ? checkSubnet(req.subnet, taken)
        : allocateSubnet(
            driver === 'overlay' ? await this.pools() : DEFAULT_LOCAL_POOLS,
            taken.map((x) => x.cidr),
          );
    const vnis = new Set(all.map((n) => n.vni));
    let vni = FIRST_VNI;
    while (vnis.has(vni)) vni++;
    const rec: NetworkRecord = {
      id: randomBytes(12).toString('hex'),
      name,
      driver,
      scope: driver === 'overlay' ? 'swarm' : 'local',
      subnet,
      gateway: gatewayOf(subnet, req.gateway),
      attachable: !!req.attachable,
      internal: !!req.internal,
      labels: req.labels ?? {},
      vni,
      ...(ingress ? { ingress: true, endpoints: {} } : {}),
      createdAt: Date.now(),
    };
    await this.store.create('networks', rec.id, rec);
    return rec;
  }

  /** Refused while a service is attached to it. */
  async remove(ref: string): Promise<void> {
    const n = await this.get(ref);
    const users = (await this.cluster.services()).filter(
      (s) =>
        (s.spec.networks ?? []).some((a) => a.target === n.name) ||
        (n.ingress && s.spec.endpoint?.ports.some((p) => p.mode === 'ingress')),
    );
    if (users.length > 0)
      throw precondition(
        `network ${n.name} is in use by service${users.length > 1 ? 's' : ''} ${users.map((s) => s.spec.name).join(', ')}`,
      );
    await this.store.delete('networks', n.id);
  }

  async inspect(ref: string): Promise<NetworkDetails> {
    const n = await this.get(ref);
    const [services, tasks] = await Promise.all([this.cluster.services(), this.cluster.tasks()]);
    return {
      ...n,
      services: services
        .filter((s) => (s.spec.networks ?? []).some((a) => a.target === n.name))
        .map((s) => {
          const vip = s.virtualIps?.find((v) => v.networkId === n.id)?.address;
          return { name: s.spec.name, ...(vip ? { vip } : {}) };
        }),
      tasks: tasks.flatMap((t) =>
        (t.attachments ?? [])
          .filter((a) => a.networkId === n.id)
          .map((a) => ({
            id: t.id,
            name: `${t.serviceName}.${t.slot ?? t.nodeId}`,
            ...(t.nodeId ? { node: t.nodeId } : {}),
            address: a.address,
            state: t.status.state,
          })),
      ),
    };
  }

  /** A service's networks must exist (by name). */
  async checkAttachments(targets: readonly string[]): Promise<void> {
    if (targets.length === 0) return;
    const names = new Set((await this.list()).map((n) => n.name));
    for (const t of targets) if (!names.has(t)) throw notFound(`network ${t} not found`);
    if (new Set(targets).size !== targets.length) throw invalid('a service is attached to a network twice');
  }
}
