import { renameSync, writeFileSync } from 'node:fs';

/**
 * Writes JSON to a temporary file beside `path` and renames it into place. Synchronous:
 * these are small state files on the container start/exit path, where a trip through the
 * thread pool costs more than the write.
 */
export async function atomicWriteJson(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}
