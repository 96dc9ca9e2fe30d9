/**
 * The tree of placement preferences swarmkit builds for a group of tasks: the root splits the
 * feasible nodes by the value of the first preference's label, each branch by the second's, and
 * so on; nodes lacking a label share the '' branch. Every branch counts the service's tasks on the
 * nodes below it, and the next task goes down the branch with the fewest (ties: a seeded random
 * rank), so tasks spread evenly over label values whatever the number of nodes behind each value.
 * A leaf orders its nodes by the strategy's comparison.
 *
 * Each level keeps its children in a heap, so choosing a node costs O(depth · log fan-out), not a
 * scan of every node.
 */
import { IntHeap } from './heap.js';
import type { Prng } from './random.js';

/** For one preference: each node's value as a small integer (0..count), equal values equal ids. */
export interface LabelIds {
  ids: Int32Array;
  count: number;
}

interface Branch {
  /** Tasks of the service on the nodes below. */
  count: number;
  /** Random tie-break among siblings. */
  rank: number;
  parent: Branch | undefined;
  /** Children (empty for a leaf). */
  kids: Branch[];
  /** Indices into `kids`, or for a leaf the nodes' indices in the snapshot. */
  heap: IntHeap;
  leaf: boolean;
}

export class PlacementTree {
  private readonly root: Branch;
  private current: Branch | undefined;

  /**
   * @param candidates indices of the nodes that pass the filters at the start of the group
   *   (reordered in place: the tree keeps it)
   * @param preferences per preference level, every node's value id
   * @param svcCount tasks of the service on each node
   * @param leafLess the strategy's order of nodes within a leaf
   */
  constructor(
    candidates: Int32Array,
    preferences: readonly LabelIds[],
    svcCount: Int32Array,
    rng: Prng,
    leafLess: (a: number, b: number) => boolean,
  ) {
    const build = (members: Int32Array, level: number, parent: Branch | undefined): Branch => {
      if (level === preferences.length) {
        let count = 0;
        for (let k = 0; k < members.length; k++) count += svcCount[members[k]!]!;
        // the heap orders the members' own array in place
        return { count, rank: 0, parent, kids: [], heap: new IntHeap(members, leafLess), leaf: true };
      }
      // counting sort of the members by their value of this level's label
      const { ids, count } = preferences[level]!;
      const sizes = new Int32Array(count);
      for (let k = 0; k < members.length; k++) sizes[ids[members[k]!]!]!++;
      const next = new Int32Array(count);
      let groups = 0;
      for (let v = 0, at = 0; v < count; v++) {
        next[v] = at;
        at += sizes[v]!;
        if (sizes[v]! > 0) groups++;
      }
      const sorted = new Int32Array(members.length);
      for (let k = 0; k < members.length; k++) {
        const i = members[k]!;
        sorted[next[ids[i]!]!++] = i;
      }
      const kids: Branch[] = [];
      const branch: Branch = {
        count: 0,
        rank: 0,
        parent,
        kids,
        heap: new IntHeap(groups, (a, b) => {
          const x = kids[a]!;
          const y = kids[b]!;
          return x.count < y.count || (x.count === y.count && x.rank < y.rank);
        }),
        leaf: false,
      };
      for (let v = 0; v < count; v++) {
        const size = sizes[v]!;
        // next[v] now points past the end of value v's run
        if (size > 0) kids.push(build(sorted.subarray(next[v]! - size, next[v]!), level + 1, branch));
      }
      const ranks = new Int32Array(kids.length);
      rng.permutation(ranks, kids.length);
      const order = new Int32Array(kids.length);
      for (let k = 0; k < kids.length; k++) {
        kids[k]!.rank = ranks[k]!;
        branch.count += kids[k]!.count;
        order[k] = k;
      }
      branch.heap.init(order);
      return branch;
    };
    this.root = build(candidates, 0, undefined);
  }

  /** The node the next task should go to, or -1 when no node is left. */
  peek(): number {
    let b = this.root;
    if (b.heap.size === 0) return -1;
    while (!b.leaf) b = b.kids[b.heap.top()]!;
    this.current = b;
    return b.heap.top();
  }

  /** Records that a task was placed on the node `peek` returned (after its counters were updated). */
  placed(): void {
    let b = this.current!;
    b.heap.updateTop();
    while (b.parent) {
      b.count++;
      b.parent.heap.updateTop();
      b = b.parent;
    }
    b.count++;
  }

  /** Drops the node `peek` returned: it cannot take another task of this group. */
  remove(): void {
    let b = this.current!;
    b.heap.pop();
    while (b.heap.size === 0 && b.parent) {
      b.parent.heap.pop();
      b = b.parent;
    }
    this.current = undefined;
  }
}
