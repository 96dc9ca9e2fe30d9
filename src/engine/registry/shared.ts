/**
 * A piece of work several callers wait for (a pull of one reference, a download of one blob),
 * that stops when none of them waits any more: each caller may come with its own signal, and
 * when every caller has gone (its signal aborted) the work's own signal aborts. A caller with
 * no signal waits to the end.
 */
export class SharedWork<T> {
  private readonly controller = new AbortController();
  private waiting = 0;
  private settled = false;
  /** The work's outcome (also when it was aborted). */
  readonly done: Promise<T>;

  constructor(work: (signal: AbortSignal) => Promise<T>) {
    this.done = work(this.controller.signal).finally(() => {
      this.settled = true;
    });
    this.done.catch(() => {}); // its callers see the error
  }

  /** Whether every caller went away before the work finished. */
  get abandoned(): boolean {
    return this.controller.signal.aborted;
  }

  /** Waits for the work; rejects at once with the signal's reason when `signal` aborts first. */
  join(signal?: AbortSignal): Promise<T> {
    this.waiting++;
    return new Promise<T>((resolve, reject) => {
      let left = false;
      const leave = () => {
        if (left) return;
        left = true;
        signal?.removeEventListener('abort', onAbort);
        if (--this.waiting === 0 && !this.settled) this.controller.abort(signal?.reason);
      };
      const onAbort = () => {
        leave();
        reject(signal?.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.done.then(
        (v) => {
          leave();
          resolve(v);
        },
        (err) => {
          leave();
          reject(err);
        },
      );
    });
  }
}

/**
 * SharedWork by key: callers of a key join the work going for it; once that work is abandoned,
 * the next caller starts a new one, which begins after the abandoned one has settled (its
 * clean-up done). A key is forgotten when its work settles.
 */
export class SharedWorks<T> {
  private readonly works = new Map<string, SharedWork<T>>();

  /** The work going for `key`, or a new one running `start` (`created` says which). */
  obtain(key: string, start: (signal: AbortSignal) => Promise<T>): { work: SharedWork<T>; created: boolean } {
    const going = this.works.get(key);
    if (going && !going.abandoned) return { work: going, created: false };
    const before = going?.done.catch(() => {});
    const work = new SharedWork<T>(async (signal) => {
      await before;
      signal.throwIfAborted();
      return start(signal);
    });
    this.works.set(key, work);
    work.done
      .finally(() => {
        if (this.works.get(key) === work) this.works.delete(key);
      })
      .catch(() => {});
    return { work, created: true };
  }
}
