/**
 * Feasibility as swarmkit does it: an ordered list of small filters, ready/availability →
 * resources → constraints → platform → host ports → max replicas per node. A node is rejected by
 * the first filter that refuses it, and that filter counts the rejection, so "no suitable node"
 * can say why: `no suitable node (insufficient resources on 3 nodes; 1 node not available)`.
 *
 * Filters that do not apply to a spec (no reservations, no constraints…) are left out of its
 * pipeline, as swarmkit's `SetTask` returning false does.
 */
import type { CompiledSpec } from './spec.js';
import type { ClusterState } from './state.js';

export type FilterName = 'ready' | 'resources' | 'constraints' | 'platform' | 'hostPorts' | 'maxReplicas';

export interface Filter {
  readonly name: FilterName;
  /** Whether the answer can change as the plan places tasks (resources, ports, replica counts). */
  readonly dynamic: boolean;
  /** Nodes this filter has refused since the pipeline was last reset. */
  rejections: number;
  /** Whether node `i` (its index in the snapshot) can take one more task of the spec, given the plan so far. */
  check(i: number): boolean;
  /** The phrase for `nodes` refused nodes, e.g. `insufficient resources on 3 nodes`. */
  explain(nodes: number): string;
}

const nodes = (n: number) => (n === 1 ? '1 node' : `${n} nodes`);

/** The node is ready and its availability is active (not paused, not drained). */
export class ReadyFilter implements Filter {
  readonly name = 'ready';
  readonly dynamic = false;
  rejections = 0;
  constructor(private readonly state: ClusterState) {}
  check(i: number): boolean {
    return this.state.available[i] === 1;
  }
  explain(n: number): string {
    return `${nodes(n)} not available`;
  }
}

/** The node's capacity minus what its tasks (running and planned) reserve covers the reservations. */
export class ResourceFilter implements Filter {
  readonly name = 'resources';
  readonly dynamic = true;
  rejections = 0;
  private readonly cpu: number;
  private readonly mem: number;
  constructor(
    private readonly state: ClusterState,
    spec: CompiledSpec,
  ) {
    this.cpu = spec.reservations.nanoCpus;
    this.mem = spec.reservations.memoryBytes;
  }
  check(i: number): boolean {
    return this.cpu <= this.state.freeCpu[i]! && this.mem <= this.state.freeMem[i]!;
  }
  explain(n: number): string {
    return `insufficient resources on ${nodes(n)}`;
  }
}

/** Every placement constraint holds on the node (from a precomputed mask when given one). */
export class ConstraintFilter implements Filter {
  readonly name = 'constraints';
  readonly dynamic = false;
  rejections = 0;
  constructor(
    private readonly state: ClusterState,
    private readonly spec: CompiledSpec,
    private readonly mask?: Uint8Array,
  ) {}
  check(i: number): boolean {
    return this.mask ? this.mask[i] === 1 : this.spec.matches(this.state.nodes[i]!);
  }
  explain(n: number): string {
    return `scheduling constraints not satisfied on ${nodes(n)}`;
  }
}

/** The node's platform is one of the image's (an empty os or arch in the spec matches any). */
export class PlatformFilter implements Filter {
  readonly name = 'platform';
  readonly dynamic = false;
  rejections = 0;
  constructor(
    private readonly state: ClusterState,
    private readonly spec: CompiledSpec,
  ) {}
  check(i: number): boolean {
    const os = this.state.os[i]!;
    const arch = this.state.arch[i]!;
    for (const p of this.spec.platforms) {
      if ((p.os === '' || p.os === os) && (p.arch === '' || p.arch === arch)) return true;
    }
    return false;
  }
  explain(n: number): string {
    return `unsupported platform on ${nodes(n)}`;
  }
}

/** None of the task's host-mode ports is published on the node by a running or planned task. */
export class HostPortFilter implements Filter {
  readonly name = 'hostPorts';
  readonly dynamic = true;
  rejections = 0;
  constructor(
    private readonly state: ClusterState,
    private readonly spec: CompiledSpec,
  ) {}
  check(i: number): boolean {
    return !this.state.portsTaken(i, this.spec.portOffsets);
  }
  explain(n: number): string {
    return `host-mode port already in use on ${nodes(n)}`;
  }
}

/** The node has fewer than max-replicas-per-node tasks of the service (running and planned). */
export class MaxReplicasFilter implements Filter {
  readonly name = 'maxReplicas';
  readonly dynamic = true;
  rejections = 0;
  constructor(
    private readonly state: ClusterState,
    private readonly max: number,
  ) {}
  check(i: number): boolean {
    return this.state.svcCount[i]! < this.max;
  }
  explain(n: number): string {
    return `max replicas per node (${this.max}) reached on ${nodes(n)}`;
  }
}

/** The filters that apply to one spec, in swarmkit's order. */
export class Pipeline {
  readonly filters: Filter[];
  /** The filters whose answer can change while a group is placed. */
  readonly dynamicFilters: Filter[];

  /** @param constraintMask when given, 1 for each node satisfying every constraint of the spec */
  constructor(state: ClusterState, spec: CompiledSpec, constraintMask?: Uint8Array) {
    const f: Filter[] = [new ReadyFilter(state)];
    if (spec.reservations.nanoCpus > 0 || spec.reservations.memoryBytes > 0)
      f.push(new ResourceFilter(state, spec));
    if (spec.constraints.length > 0) f.push(new ConstraintFilter(state, spec, constraintMask));
    if (spec.platforms.length > 0) f.push(new PlatformFilter(state, spec));
    if (spec.portOffsets.length > 0) f.push(new HostPortFilter(state, spec));
    if (spec.maxReplicas > 0) f.push(new MaxReplicasFilter(state, spec.maxReplicas));
    this.filters = f;
    this.dynamicFilters = f.filter((x) => x.dynamic);
  }

  /** Whether node i passes every filter; the first refusing filter counts a rejection. */
  check(i: number): boolean {
    for (const f of this.filters) {
      if (!f.check(i)) {
        f.rejections++;
        return false;
      }
    }
    return true;
  }

  /** `check` for a node already known to pass the static filters: only the dynamic ones run. */
  recheck(i: number): boolean {
    for (const f of this.dynamicFilters) {
      if (!f.check(i)) {
        f.rejections++;
        return false;
      }
    }
    return true;
  }

  /** Sets every counter back to 0. */
  reset(): void {
    for (const f of this.filters) f.rejections = 0;
  }

  /** One phrase per filter that refused nodes: most rejections first, pipeline order among equals. */
  explain(): string[] {
    return this.filters
      .filter((f) => f.rejections > 0)
      .sort((a, b) => b.rejections - a.rejections)
      .map((f) => f.explain(f.rejections));
  }
}

/** The line a user sees for a task no node can take. */
export function noSuitableNode(reasons: readonly string[]): string {
  return reasons.length > 0 ? `no suitable node (${reasons.join('; ')})` : 'no suitable node';
}
