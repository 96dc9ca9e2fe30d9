/**
 * A binary min-heap of small integers (node or branch indices) ordered by a comparison the caller
 * owns, so the keys can live in typed arrays and change between operations. After changing the key
 * of the top item, call `updateTop`.
 */
export class IntHeap {
  private readonly items: Int32Array;
  size = 0;

  /** An empty heap for up to `capacity` items, or one made of `capacity`'s items, in place. */
  constructor(
    capacity: number | Int32Array,
    private readonly less: (a: number, b: number) => boolean,
  ) {
    if (typeof capacity === 'number') {
      this.items = new Int32Array(Math.max(1, capacity));
    } else {
      this.items = capacity;
      this.size = capacity.length;
      for (let i = (this.size >> 1) - 1; i >= 0; i--) this.down(i);
    }
  }

  /** Fills the heap with `values[0..n)` in O(n). */
  init(values: ArrayLike<number>, n = values.length): void {
    for (let i = 0; i < n; i++) this.items[i] = values[i]!;
    this.size = n;
    for (let i = (n >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** The least item; only when size > 0. */
  top(): number {
    return this.items[0]!;
  }

  push(x: number): void {
    const items = this.items;
    let i = this.size++;
    items[i] = x;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const px = items[p]!;
      if (!this.less(x, px)) break;
      items[i] = px;
      i = p;
    }
    items[i] = x;
  }

  /** Removes and returns the least item; only when size > 0. */
  pop(): number {
    const items = this.items;
    const x = items[0]!;
    const last = items[--this.size]!;
    if (this.size > 0) {
      items[0] = last;
      this.down(0);
    }
    return x;
  }

  /** Restores the order after the top item's key grew (or shrank: then nothing moves). */
  updateTop(): void {
    if (this.size > 1) this.down(0);
  }

  private down(start: number): void {
    const items = this.items;
    const n = this.size;
    const less = this.less;
    let i = start;
    const x = items[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      let cx = items[c]!;
      if (c + 1 < n) {
        const rx = items[c + 1]!;
        if (less(rx, cx)) {
          c++;
          cx = rx;
        }
      }
      if (!less(cx, x)) break;
      items[i] = cx;
      i = c;
    }
    items[i] = x;
  }
}
