import { isConflict } from './errors.js';

export interface RetryOptions {
  /** Calls of fn at most (default 10). */
  attempts?: number;
  /** Upper bound of the first backoff; it doubles per attempt up to 500 ms (default 10 ms). */
  baseDelayMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
}

/**
 * Runs fn until it does not throw a `conflict`, at most `attempts` times, sleeping a random
 * part of an exponentially growing delay in between so contenders spread out. fn must
 * re-read what it writes; any other error, or the last conflict, is thrown.
 */
export async function retry<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 10;
  const random = opts.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!isConflict(e) || attempt >= attempts) throw e;
      const cap = Math.min((opts.baseDelayMs ?? 10) * 2 ** (attempt - 1), 500);
      await new Promise((r) => setTimeout(r, random() * cap));
    }
  }
}
