const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `get` until `check` holds; fails after timeoutMs, showing what it saw last. */
export async function until<T>(
  what: string,
  get: () => Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await get();
  while (!check(last)) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last).slice(0, 2000)}`);
    await sleep(150);
    last = await get();
  }
  return last;
}
