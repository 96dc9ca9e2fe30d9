/**
 * The leader's loops (reconciler, job runner) run in passes: a pass reads a fresh snapshot and
 * writes what it decided. Passes never overlap; a kick during one runs another after it, a
 * failed pass is retried, and a pass can ask to be woken at a time.
 */
import type { Store, TxnOp } from './store/types.js';

export class PassLoop {
  private running = false;
  private again = false;
  private stopped = false;
  private wakeTimer?: NodeJS.Timeout;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly opts: {
      /** A pass starts this long after the first kick (events come in bursts). */
      batchMs: number;
      log: (m: string) => void;
    },
  ) {}

  /** Asks for a pass. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void (async () => {
      await new Promise((r) => setTimeout(r, this.opts.batchMs));
      do {
        this.again = false;
        try {
          await this.pass();
        } catch (e) {
          this.opts.log(`pass failed (will retry): ${(e as Error).message}`);
          this.again = true;
          await new Promise((r) => setTimeout(r, 200));
        }
      } while (this.again && !this.stopped);
      this.running = false;
    })();
  }

  /** From inside a pass: run another one after it (a write conflicted, or was left for later). */
  repeat(): void {
    this.again = true;
  }

  /** A pass at `at` (ms since the epoch); replaces the previous wake-up. */
  wakeAt(at: number): void {
    const ms = Math.min(Math.max(0, at - Date.now()) + 5, 2 ** 31 - 1);
    clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => this.kick(), ms);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.wakeTimer);
  }
}

/**
 * Writes a pass's changes: one operation per key and transaction (etcd refuses duplicates; the
 * later ones wait for the next pass), at most 100 per transaction (etcd's limit is 128). A
 * conflict (someone wrote first) ends the commit and asks for another pass on fresh state.
 */
export async function commitPass(store: Store, loop: PassLoop, all: TxnOp[]): Promise<void> {
  const seen = new Set<string>();
  const ops = all.filter((o) => {
    const key = `${o.kind}/${o.id}`;
    if (seen.has(key)) {
      loop.repeat();
      return false;
    }
    seen.add(key);
    return true;
  });
  for (let i = 0; i < ops.length; i += 100) {
    try {
      await store.txn(ops.slice(i, i + 100));
    } catch (e) {
      if ((e as { code?: string }).code === 'conflict') {
        loop.repeat();
        return;
      }
      throw e;
    }
  }
}
