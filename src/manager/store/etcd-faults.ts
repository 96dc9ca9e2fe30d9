/**
 * The etcd3 client's fault policies (its `faultHandling` option): which failed calls are tried
 * again, and when a member is skipped. etcd3 only ever calls `execute` on them.
 */
import { type IOptions, isRecoverableError } from 'etcd3';

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Execute = <T>(fn: (ctx: { signal: AbortSignal; attempt: number }) => PromiseLike<T> | T) => Promise<T>;

/**
 * Thrown instead of calling a member whose breaker is open. `isBrokenCircuitError` is the mark
 * etcd3 (and cockatiel) look for: etcd3 then tries the next member, and prefers a real error
 * of an earlier member to this one.
 */
export class CircuitOpenError extends Error {
  readonly isBrokenCircuitError = true;
  constructor(readonly until: number) {
    super('Execution prevented because the circuit breaker is open');
  }
}

/** Whether a call failed before it reached etcd, so trying it again cannot apply it twice. */
export function unsent(e: unknown): boolean {
  return (
    e instanceof CircuitOpenError ||
    /No connection established|ECONNREFUSED/.test(String((e as Error)?.message))
  );
}

export interface RetryUnsentOptions {
  /** Calls of a request at most while members refuse connections (each goes to the next member). */
  attempts: number;
  /**
   * How long a request waits, in all, while every member is skipped by its breaker. It should
   * outlast a breaker's open time, so the request reaches a member once one is tried again.
   */
  breakerWaitMs: number;
  /** Pause between two tries while every member is skipped (default 50 ms). */
  pollMs?: number;
}

/**
 * The client's global policy: try the next member only when a call never reached etcd. The
 * etcd3 default retries any "recoverable" error, which would apply a write twice when the
 * answer, not the request, was lost. When every member's breaker is open (each failed three
 * calls in a row, as happens to the members that are left while etcd elects a new leader),
 * the request waits for the first to be tried again instead of failing at once.
 */
export function retryUnsent(opts: RetryUnsentOptions): NonNullable<FaultHandling['global']> {
  const pollMs = opts.pollMs ?? 50;
  const execute: Execute = async (fn) => {
    const start = Date.now();
    for (let attempt = 0, refused = 0; ; attempt++) {
      try {
        return await fn({ signal: new AbortController().signal, attempt });
      } catch (e) {
        if (e instanceof CircuitOpenError) {
          const wait = Math.max(pollMs, Math.min(e.until - Date.now(), pollMs * 4));
          if (Date.now() + wait - start > opts.breakerWaitMs) throw e;
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        if (!unsent(e) || ++refused >= opts.attempts) throw e;
      }
    }
  };
  return { execute } as unknown as NonNullable<FaultHandling['global']>;
}

export interface BreakerOptions {
  /** How long the member is skipped once the breaker opens (default 1 s). */
  openMs?: number;
  /** Consecutive recoverable failures that open it (default 3). */
  threshold?: number;
  /** The client's only member: never skipped, as there is nothing else to try. */
  single?: boolean;
}

/**
 * The per-member policy: after `threshold` consecutive failures that etcd3 deems recoverable (no
 * connection, timeouts, no leader), skip the member for `openMs`, then try it again. etcd3's
 * default skips it for 5 s, which, when a member stalls and the leader changes at once, can
 * leave a manager with no member to talk to for seconds. A client with a single member never
 * skips it (a dropped connection fails every call on it at once, which would open the breaker
 * and fail every call for a while more), and each call's deadline bounds it.
 */
export function shortBreaker(opts: BreakerOptions = {}): ReturnType<NonNullable<FaultHandling['host']>> {
  const openMs = opts.openMs ?? 1_000;
  const threshold = opts.threshold ?? 3;
  let failures = 0;
  let openUntil = 0;
  const execute: Execute = async (fn) => {
    if (Date.now() < openUntil) throw new CircuitOpenError(openUntil);
    try {
      const r = await fn({ signal: new AbortController().signal, attempt: 0 });
      failures = 0;
      return r;
    } catch (e) {
      if (!opts.single && isRecoverableError(e as Error) && ++failures >= threshold) {
        failures = 0;
        openUntil = Date.now() + openMs;
      }
      throw e;
    }
  };
  return { execute } as never;
}

/**
 * Watch reconnection backoff, doubling to 2 s; etcd3 starts from `next()`, so the first wait is
 * 2 × `ms` = 100 ms (the client's default starts slower and grows to 30 s).
 */
export function watchBackoff(ms = 50): NonNullable<FaultHandling['watchBackoff']> {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, 2_000)) };
}
