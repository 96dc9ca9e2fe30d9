import { invalid } from '../../api/errors.js';

/**
 * Docker's ENTRYPOINT/CMD rules. The image's config already holds shell-form
 * instructions as ["/bin/sh","-c","..."], so exec and shell forms need no special case:
 * - arguments given to `run` replace the image's CMD;
 * - `--entrypoint X` replaces the image's ENTRYPOINT and drops the image's CMD;
 *   `--entrypoint ""` removes the ENTRYPOINT;
 * - the process is ENTRYPOINT followed by CMD.
 */
export function resolveCommand(
  image: { Entrypoint?: string[] | null; Cmd?: string[] | null },
  request: { entrypoint?: string; cmd?: string[] },
): { path: string; args: string[] } {
  let entrypoint = image.Entrypoint ?? [];
  let cmd = image.Cmd ?? [];
  if (request.entrypoint !== undefined) {
    entrypoint = request.entrypoint === '' ? [] : [request.entrypoint];
    cmd = [];
  }
  if (request.cmd && request.cmd.length > 0) cmd = request.cmd;
  const argv = [...entrypoint, ...cmd];
  const [path, ...args] = argv;
  if (path === undefined || path === '') {
    throw invalid('no command specified: the image has no ENTRYPOINT or CMD; give a command after the image');
  }
  return { path, args };
}

/** Merges environment lists: later entries override earlier ones by key; order of first appearance kept. */
export function mergeEnv(...lists: string[][]): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    for (const entry of list) {
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      if (key === '') throw invalid(`invalid environment variable: "${entry}"`);
      map.set(key, entry);
    }
  }
  return [...map.values()];
}

/** Parses `--userns CONTAINER_ID:HOST_ID:SIZE`. */
export function parseUserns(spec: string): { containerId: number; hostId: number; size: number } {
  const m = /^(\d+):(\d+):(\d+)$/.exec(spec);
  if (!m)
    throw invalid(`invalid --userns "${spec}": expected CONTAINER_ID:HOST_ID:SIZE, e.g. 0:100000:65536`);
  const [containerId, hostId, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (size < 1) throw invalid(`invalid --userns "${spec}": size must be at least 1`);
  if (hostId + size > 2 ** 32 - 1)
    throw invalid(`invalid --userns "${spec}": host range exceeds the uid space`);
  return { containerId, hostId, size };
}
