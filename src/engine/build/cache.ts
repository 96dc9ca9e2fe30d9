/**
 * The build cache: step key → the images the step made, newest first (a few: a --no-cache build
 * adds its own beside the older ones, and a prune may take either). One JSON file, rewritten
 * atomically; an image that is gone is simply skipped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';

export class BuildCache {
  private entries?: Map<string, string[]>;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly file: string) {}

  private async load(): Promise<Map<string, string[]>> {
    if (this.entries) return this.entries;
    try {
      this.entries = new Map(
        Object.entries(JSON.parse(await fs.readFile(this.file, 'utf8')) as Record<string, string[]>),
      );
    } catch {
      this.entries = new Map();
    }
    return this.entries;
  }

  private static hash(key: string): string {
    return createHash('sha256').update(key).digest('hex');
  }

  async get(key: string): Promise<string[]> {
    const v = (await this.load()).get(BuildCache.hash(key));
    return Array.isArray(v) ? v : [];
  }

  put(key: string, imageId: string): Promise<void> {
    const run = this.queue.then(async () => {
      const m = await this.load();
      const k = BuildCache.hash(key);
      m.set(k, [imageId, ...(m.get(k) ?? []).filter((x) => x !== imageId)].slice(0, 4));
      const tmp = `${this.file}.${randomBytes(4).toString('hex')}`;
      await fs.writeFile(tmp, JSON.stringify(Object.fromEntries(m)));
      await fs.rename(tmp, this.file);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}
