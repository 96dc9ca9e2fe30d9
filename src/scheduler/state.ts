/**
 * Per-node counters for one scheduling run, kept in typed arrays indexed by the node's position in
 * the snapshot: what is free, how many tasks a node has, which host ports are taken, and how many
 * tasks each service has where. Starts from the snapshot's tasks and grows with every placement of
 * the plan, so later decisions see earlier ones.
 */
import { normalizeArch } from './constraints.js';
import type { HostPort, Node, Resources } from './types.js';

const PROTOCOLS = { tcp: 0, udp: 1, sctp: 2 } as const;
const PORTS_PER_NODE = 3 * 65536;

/** The key of (protocol, port) on a node, relative to the node's base `i * PORTS_PER_NODE`. */
export function portOffset(p: HostPort): number {
  return PROTOCOLS[p.protocol] * 65536 + p.port;
}

export class ClusterState {
  readonly n: number;
  readonly indexById = new Map<string, number>();
  /** 1 when the node is ready and active. */
  readonly available: Uint8Array;
  readonly freeCpu: Float64Array;
  readonly freeMem: Float64Array;
  /** 1/capacity (0 for no capacity), for binpack's remaining fractions. */
  readonly invCapCpu: Float64Array;
  readonly invCapMem: Float64Array;
  /** Tasks on the node, of any service. */
  readonly total: Int32Array;
  /** Tasks of the service loaded by `loadService` on each node. */
  readonly svcCount: Int32Array;
  /** Normalised platform, for the platform filter. */
  readonly os: string[];
  readonly arch: string[];
  private readonly ports = new Set<number>();
  private readonly byService = new Map<string, Map<number, number>>();
  private loaded: string | undefined;
  private readonly touched: number[] = [];

  constructor(readonly nodes: readonly Node[]) {
    const n = nodes.length;
    this.n = n;
    this.available = new Uint8Array(n);
    this.freeCpu = new Float64Array(n);
    this.freeMem = new Float64Array(n);
    this.invCapCpu = new Float64Array(n);
    this.invCapMem = new Float64Array(n);
    this.total = new Int32Array(n);
    this.svcCount = new Int32Array(n);
    this.os = new Array<string>(n);
    this.arch = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const node = nodes[i]!;
      if (!this.indexById.has(node.id)) this.indexById.set(node.id, i);
      this.available[i] = node.status === 'ready' && node.availability === 'active' ? 1 : 0;
      const cpu = node.resources.nanoCpus;
      const mem = node.resources.memoryBytes;
      this.invCapCpu[i] = cpu > 0 ? 1 / cpu : 0;
      this.invCapMem[i] = mem > 0 ? 1 / mem : 0;
      let freeCpu = cpu;
      let freeMem = mem;
      for (const t of node.tasks) {
        freeCpu -= t.reservations.nanoCpus;
        freeMem -= t.reservations.memoryBytes;
        for (const p of t.hostPorts) this.ports.add(i * PORTS_PER_NODE + portOffset(p));
        let counts = this.byService.get(t.serviceId);
        if (!counts) {
          counts = new Map();
          this.byService.set(t.serviceId, counts);
        }
        counts.set(i, (counts.get(i) ?? 0) + 1);
      }
      this.freeCpu[i] = freeCpu;
      this.freeMem[i] = freeMem;
      this.total[i] = node.tasks.length;
      this.os[i] = node.platform.os.toLowerCase();
      this.arch[i] = normalizeArch(node.platform.arch);
    }
  }

  /** Whether any of `offsets` (from `portOffset`) is taken on node i. */
  portsTaken(i: number, offsets: readonly number[]): boolean {
    const base = i * PORTS_PER_NODE;
    for (const o of offsets) if (this.ports.has(base + o)) return true;
    return false;
  }

  /** Makes `svcCount` hold the counts of this service (call `saveService` when done with it). */
  loadService(serviceId: string): void {
    if (this.loaded !== undefined) this.saveService();
    this.svcCount.fill(0);
    const counts = this.byService.get(serviceId);
    if (counts) for (const [i, c] of counts) this.svcCount[i] = c;
    this.loaded = serviceId;
  }

  /** Writes the loaded service's new counts back. */
  saveService(): void {
    const id = this.loaded;
    if (id === undefined) return;
    if (this.touched.length > 0) {
      let counts = this.byService.get(id);
      if (!counts) {
        counts = new Map();
        this.byService.set(id, counts);
      }
      for (const i of this.touched) counts.set(i, this.svcCount[i]!);
      this.touched.length = 0;
    }
    this.loaded = undefined;
  }

  /** Records a task of the loaded service on node i: its reservations, ports and counts. */
  place(i: number, r: Resources, portOffsets: readonly number[]): void {
    this.freeCpu[i]! -= r.nanoCpus;
    this.freeMem[i]! -= r.memoryBytes;
    this.total[i]!++;
    this.svcCount[i]!++;
    this.touched.push(i);
    const base = i * PORTS_PER_NODE;
    for (const o of portOffsets) this.ports.add(base + o);
  }
}
