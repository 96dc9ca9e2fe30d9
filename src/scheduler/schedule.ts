/**
 * The scheduler: a pure function from a cluster snapshot and pending tasks to a plan.
 *
 * 1. Tasks are grouped by service and spec, and each spec is checked and compiled once.
 * 2. Tasks pinned to a node (global services) go first: the pipeline runs on their node alone.
 * 3. Each remaining group runs the pipeline over every node once (unrolled over typed arrays;
 *    constraint and platform results are cached per constraint and per platform list, since
 *    services share them); the nodes that pass form the group's preference tree, ordered by the
 *    strategy. Each task takes the tree's best node; the dynamic filters (resources, host ports,
 *    max replicas) re-check it, and a node that fails them leaves the tree for good (tasks of a
 *    group are alike, and the plan only ever fills nodes). When the tree empties, the pipeline
 *    runs over every node once more, counting, to explain why.
 *
 * Every placement updates the shared counters, so later groups see what earlier ones took.
 */
import { invalid } from '../api/errors.js';
import { compileConstraint } from './constraints.js';
import { noSuitableNode, Pipeline } from './filters.js';
import { mix32, Prng } from './random.js';
import { type CompiledSpec, compileSpec, type Preference, sameSpec } from './spec.js';
import { ClusterState } from './state.js';
import { type LabelIds, PlacementTree } from './tree.js';
import type {
  Assignment,
  ClusterSnapshot,
  PendingTask,
  ScheduleOptions,
  SchedulePlan,
  Strategy,
  TaskSpec,
  Unplaced,
} from './types.js';

interface Group {
  serviceId: string;
  spec: TaskSpec;
  /** Indices into `pending` of tasks with a nodeId. */
  pinned: number[];
  /** Indices into `pending` of tasks the scheduler chooses a node for. */
  free: number[];
}

function groupTasks(pending: readonly PendingTask[]): Group[] {
  const groups: Group[] = [];
  const byService = new Map<string, Group[]>();
  for (let t = 0; t < pending.length; t++) {
    const task = pending[t]!;
    let list = byService.get(task.serviceId);
    if (!list) {
      list = [];
      byService.set(task.serviceId, list);
    }
    let g = list.find((x) => x.spec === task.spec) ?? list.find((x) => sameSpec(x.spec, task.spec));
    if (!g) {
      g = { serviceId: task.serviceId, spec: task.spec, pinned: [], free: [] };
      list.push(g);
      groups.push(g);
    }
    (task.nodeId !== undefined ? g.pinned : g.free).push(t);
  }
  return groups;
}

class Planner {
  readonly state: ClusterState;
  readonly rng: Prng;
  /** Node index per pending task, -1 while unplaced. */
  readonly placedOn: Int32Array;
  readonly unplaced: Array<Unplaced | undefined>;
  /** Per constraint text: 1 for each node that satisfies it. Services often share constraints. */
  private readonly constraintMasks = new Map<string, Uint8Array>();
  /** Per preference label: each node's value id. Services often spread over the same labels. */
  private readonly labelIds = new Map<string, LabelIds>();
  private readonly platformMasks = new Map<string, Uint8Array>();
  /** Scratch: the nodes that pass a group's filters. */
  private readonly candidates: Int32Array;

  constructor(
    snapshot: ClusterSnapshot,
    private readonly pending: readonly PendingTask[],
    seed: number,
    private readonly strategy: Strategy,
  ) {
    this.state = new ClusterState(snapshot.nodes);
    this.rng = new Prng(seed);
    this.placedOn = new Int32Array(pending.length).fill(-1);
    this.unplaced = new Array(pending.length);
    this.candidates = new Int32Array(this.state.n);
  }

  refuse(t: number, reasons: string[], summary = noSuitableNode(reasons)): void {
    this.unplaced[t] = { taskId: this.pending[t]!.id, reasons, summary };
  }

  placePinned(g: Group, spec: CompiledSpec): void {
    const { state } = this;
    state.loadService(g.serviceId);
    const pipeline = new Pipeline(state, spec);
    for (const t of g.pinned) {
      const nodeId = this.pending[t]!.nodeId!;
      const i = state.indexById.get(nodeId);
      if (i === undefined) {
        this.refuse(t, [`node ${JSON.stringify(nodeId)} is not in the cluster`]);
        continue;
      }
      pipeline.reset();
      if (pipeline.check(i)) {
        state.place(i, spec.reservations, spec.portOffsets);
        this.placedOn[t] = i;
      } else {
        this.refuse(t, pipeline.explain());
      }
    }
    state.saveService();
  }

  /** 1 for each node satisfying every constraint of the spec, from masks cached per constraint. */
  private constraintMask(spec: CompiledSpec): Uint8Array | undefined {
    if (spec.constraints.length === 0) return undefined;
    const { n, nodes } = this.state;
    const out = new Uint8Array(n).fill(1);
    for (const c of spec.constraints) {
      const key = `${c.field}\0${c.label ?? ''}\0${c.operator}\0${c.value}`;
      let mask = this.constraintMasks.get(key);
      if (!mask) {
        mask = new Uint8Array(n);
        const holds = compileConstraint(c);
        for (let i = 0; i < n; i++) mask[i] = holds(nodes[i]!) ? 1 : 0;
        this.constraintMasks.set(key, mask);
      }
      for (let i = 0; i < n; i++) out[i]! &= mask[i]!;
    }
    return out;
  }

  private labelIdsOf(pref: Preference): LabelIds {
    let cached = this.labelIds.get(pref.key);
    if (!cached) {
      const { n, nodes } = this.state;
      const ids = new Int32Array(n);
      const byValue = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const v = pref.value(nodes[i]!);
        let id = byValue.get(v);
        if (id === undefined) {
          id = byValue.size;
          byValue.set(v, id);
        }
        ids[i] = id;
      }
      cached = { ids, count: byValue.size };
      this.labelIds.set(pref.key, cached);
    }
    return cached;
  }

  /** 1 for each node whose platform is one of the spec's, cached per list of platforms. */
  private platformMask(spec: CompiledSpec): Uint8Array | undefined {
    if (spec.platforms.length === 0) return undefined;
    const key = spec.platforms.map((p) => `${p.os}/${p.arch}`).join(',');
    let mask = this.platformMasks.get(key);
    if (!mask) {
      const { n, os, arch } = this.state;
      mask = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        mask[i] = spec.platforms.some(
          (p) => (p.os === '' || p.os === os[i]) && (p.arch === '' || p.arch === arch[i]),
        )
          ? 1
          : 0;
      }
      this.platformMasks.set(key, mask);
    }
    return mask;
  }

  placeFree(g: Group, spec: CompiledSpec): void {
    const { state } = this;
    const n = state.n;
    state.loadService(g.serviceId);
    const constraints = this.constraintMask(spec);
    const pipeline = new Pipeline(state, spec, constraints);
    // The pipeline's static pass, unrolled over typed arrays: nodes are not counted per filter
    // here, only when the group runs out of nodes and its tasks need an explanation.
    const candidates = this.candidates;
    let m = 0;
    {
      const { available, freeCpu, freeMem, svcCount } = state;
      const platforms = this.platformMask(spec);
      const cpu = spec.reservations.nanoCpus;
      const mem = spec.reservations.memoryBytes;
      const reserves = cpu > 0 || mem > 0;
      const ports = spec.portOffsets;
      const max = spec.maxReplicas;
      for (let i = 0; i < n; i++) {
        if (
          available[i] === 1 &&
          (!reserves || (cpu <= freeCpu[i]! && mem <= freeMem[i]!)) &&
          (!constraints || constraints[i] === 1) &&
          (!platforms || platforms[i] === 1) &&
          (ports.length === 0 || !state.portsTaken(i, ports)) &&
          (max === 0 || svcCount[i]! < max)
        ) {
          candidates[m++] = i;
        }
      }
    }
    const salt = this.rng.next();
    const tree = new PlacementTree(
      candidates.subarray(0, m),
      spec.preferences.map((p) => this.labelIdsOf(p)),
      state.svcCount,
      this.rng,
      this.strategy === 'binpack' ? this.binpackLess(spec, salt) : this.spreadLess(salt),
    );
    const tasks = g.free;
    let k = 0;
    for (; k < tasks.length; k++) {
      let i = tree.peek();
      while (i >= 0 && !pipeline.recheck(i)) {
        tree.remove();
        i = tree.peek();
      }
      if (i < 0) break;
      state.place(i, spec.reservations, spec.portOffsets);
      tree.placed();
      this.placedOn[tasks[k]!] = i;
    }
    if (k < tasks.length) {
      // explain with the counters as they are now: every node fails some filter
      pipeline.reset();
      for (let i = 0; i < n; i++) pipeline.check(i);
      const reasons = n === 0 ? ['the cluster has no nodes'] : pipeline.explain();
      const summary = noSuitableNode(reasons);
      for (; k < tasks.length; k++) this.refuse(tasks[k]!, reasons.slice(), summary);
    }
    state.saveService();
  }

  /** Spread: fewest tasks of the service, then fewest tasks, then the node's random rank for this group. */
  private spreadLess(salt: number): (a: number, b: number) => boolean {
    const { svcCount, total } = this.state;
    return (a, b) => {
      const sa = svcCount[a]!;
      const sb = svcCount[b]!;
      if (sa !== sb) return sa < sb;
      const ta = total[a]!;
      const tb = total[b]!;
      if (ta !== tb) return ta < tb;
      return mix32(a ^ salt) < mix32(b ^ salt);
    };
  }

  /** Binpack: least remaining (cpu fraction + memory fraction) after one more task, then the random rank. */
  private binpackLess(spec: CompiledSpec, salt: number): (a: number, b: number) => boolean {
    const { freeCpu, freeMem, invCapCpu, invCapMem } = this.state;
    const cpu = spec.reservations.nanoCpus;
    const mem = spec.reservations.memoryBytes;
    return (a, b) => {
      const ra = (freeCpu[a]! - cpu) * invCapCpu[a]! + (freeMem[a]! - mem) * invCapMem[a]!;
      const rb = (freeCpu[b]! - cpu) * invCapCpu[b]! + (freeMem[b]! - mem) * invCapMem[b]!;
      if (ra !== rb) return ra < rb;
      return mix32(a ^ salt) < mix32(b ^ salt);
    };
  }
}

/**
 * Places pending tasks on the snapshot's nodes. Pure: no I/O, no clock, no Math.random; the same
 * snapshot, tasks and seed always give the same plan. Tasks with a `nodeId` are only checked
 * against that node. Bad specs (an unparsable constraint…) come back unplaced with the reason;
 * bad options throw a TsswarmError (`invalid_argument`).
 */
export function schedule(
  snapshot: ClusterSnapshot,
  pending: readonly PendingTask[],
  opts: ScheduleOptions,
): SchedulePlan {
  if (typeof opts.seed !== 'number' || !Number.isFinite(opts.seed)) {
    throw invalid(`scheduler seed must be a finite number, not ${String(opts.seed)}`);
  }
  const strategy = opts.strategy ?? 'spread';
  if (strategy !== 'spread' && strategy !== 'binpack') {
    throw invalid(`unknown scheduling strategy ${JSON.stringify(strategy)}: use spread or binpack`);
  }
  const planner = new Planner(snapshot, pending, opts.seed, strategy);
  const groups = groupTasks(pending);
  const compiled: Array<CompiledSpec | undefined> = groups.map((g) => {
    const c = compileSpec(g.spec);
    if (c.errors) {
      const summary = c.errors.join('; ');
      for (const t of [...g.pinned, ...g.free]) planner.refuse(t, c.errors.slice(), summary);
      return undefined;
    }
    return c.spec;
  });
  groups.forEach((g, k) => {
    const spec = compiled[k];
    if (spec && g.pinned.length > 0) planner.placePinned(g, spec);
  });
  groups.forEach((g, k) => {
    const spec = compiled[k];
    if (spec && g.free.length > 0) planner.placeFree(g, spec);
  });
  const assignments: Assignment[] = [];
  const unplaced: Unplaced[] = [];
  const nodes = snapshot.nodes;
  for (let t = 0; t < pending.length; t++) {
    const i = planner.placedOn[t]!;
    if (i >= 0) assignments.push({ taskId: pending[t]!.id, nodeId: nodes[i]!.id });
    else unplaced.push(planner.unplaced[t]!);
  }
  return { assignments, unplaced };
}
