/**
 * A module loader hook (`node --import <register>`) that writes the URL of every ES module
 * loaded to stderr as `LOADED <url>`; test/cli-startup.test.ts uses it to see what the CLI loads.
 */
import { writeSync } from 'node:fs';

type Next = (url: string, context: unknown) => Promise<unknown>;

export async function load(url: string, context: unknown, next: Next): Promise<unknown> {
  const loaded = await next(url, context);
  writeSync(2, `LOADED ${url}\n`);
  return loaded;
}
