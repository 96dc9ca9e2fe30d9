import { promises as fs } from 'node:fs';

/** Writes JSON to a temporary file beside `path` and renames it into place. */
export async function atomicWriteJson(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fs.writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await fs.rename(tmp, path);
}
