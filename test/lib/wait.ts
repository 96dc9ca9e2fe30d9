/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `get` until `check` holds; fails after timeoutMs, showing what it saw last. A `get`
 * that throws counts as not yet (a cluster in the middle of a failover may refuse a call).
 */
export async function until<T>(
  what: string,
  get: () => Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let seen: string;
    try {
      const last = await get();
      if (check(last)) return last;
      seen = JSON.stringify(last).slice(0, 2000);
    } catch (e) {
      seen = `error: ${(e as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${seen}`);
    await sleep(150);
  }
}
