import t from 'tap';
import { IntHeap } from './heap.js';
import { Prng } from './random.js';

t.test('IntHeap pops in key order, with keys the caller changes', async (t) => {
  const rng = new Prng(5);
  const keys = Array.from({ length: 200 }, () => rng.below(50));
  const heap = new IntHeap(keys.length, (a, b) => keys[a]! < keys[b]! || (keys[a] === keys[b] && a < b));
  heap.init(keys.map((_, i) => i));
  // grow the top's key a few times, as placements do
  for (let k = 0; k < 100; k++) {
    keys[heap.top()]! += rng.below(5);
    heap.updateTop();
  }
  const out: number[] = [];
  while (heap.size > 0) out.push(heap.pop());
  const expected = keys.map((_, i) => i).sort((a, b) => keys[a]! - keys[b]! || a - b);
  t.same(out, expected);
  heap.push(3);
  heap.push(1);
  t.equal(heap.top(), keys[1]! <= keys[3]! ? 1 : 3);
});

t.test('Prng: deterministic per seed, permutations are permutations', async (t) => {
  const a = new Prng(42);
  const b = new Prng(42);
  const c = new Prng(43);
  const xa = Array.from({ length: 5 }, () => a.next());
  t.same(
    Array.from({ length: 5 }, () => b.next()),
    xa,
  );
  t.not(JSON.stringify(Array.from({ length: 5 }, () => c.next())), JSON.stringify(xa));
  const p = new Int32Array(1000);
  new Prng(1).permutation(p, 1000);
  t.same(
    [...p].sort((x, y) => x - y),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  const buckets = new Array(10).fill(0);
  const r = new Prng(9);
  for (let i = 0; i < 10000; i++) buckets[r.below(10)]++;
  t.ok(Math.min(...buckets) > 850 && Math.max(...buckets) < 1150, `below() roughly uniform: ${buckets}`);
});
