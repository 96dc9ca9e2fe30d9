import { promises as fs, watch } from 'node:fs';
import { join } from 'node:path';
import { invalid } from '../../api/errors.js';

/** One record of a container's json-file log, as the shim writes it. */
export interface LogEntry {
  stream: 'stdout' | 'stderr';
  time: string;
  line: string;
}

export interface LogQuery {
  /** Only the last N records (all when undefined). */
  tail?: number;
  /** Only records at or after this time (RFC 3339 or Unix seconds). */
  since?: string;
  follow?: boolean;
}

/** Parses Docker's `--since` forms: RFC 3339 timestamps, Unix seconds, or durations such as 10m. */
export function parseSince(since: string, now = Date.now()): number {
  if (/^\d+(\.\d+)?$/.test(since)) return Number(since) * 1000;
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(since);
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[rel[2] as 'ms' | 's' | 'm' | 'h'];
    return now - Number(rel[1]) * unit;
  }
  const t = Date.parse(since);
  if (Number.isNaN(t))
    throw invalid(`invalid --since "${since}": use an RFC 3339 time, Unix seconds or a duration like 10m`);
  return t;
}

export const LOG_FILE = 'container.log';

/** The rotated files oldest first, then the live file. */
async function logFiles(bundle: string): Promise<string[]> {
  const names = await fs.readdir(bundle).catch(() => [] as string[]);
  const rotated = names
    .filter((n) => n.startsWith(`${LOG_FILE}.`) && /^\d+$/.test(n.slice(LOG_FILE.length + 1)))
    .sort((a, b) => Number(b.slice(LOG_FILE.length + 1)) - Number(a.slice(LOG_FILE.length + 1)));
  return [...rotated, LOG_FILE].map((n) => join(bundle, n));
}

function parseLine(raw: string): LogEntry | undefined {
  if (!raw) return undefined;
  try {
    const r = JSON.parse(raw) as { log: string; stream: 'stdout' | 'stderr'; time: string };
    return { line: r.log, stream: r.stream, time: r.time };
  } catch {
    return undefined;
  }
}

/** The live log file held open, with its size at opening: a consistent start for read-then-follow. */
export interface LiveLog {
  fh: fs.FileHandle;
  size: number;
}

export async function openLiveLog(bundle: string): Promise<LiveLog | undefined> {
  const fh = await fs.open(join(bundle, LOG_FILE), 'r').catch(() => undefined);
  return fh ? { fh, size: (await fh.stat()).size } : undefined;
}

/**
 * Reads a container's existing log records with tail/since applied. With `live`, the
 * live file is read through that handle up to its recorded size, so a follower can go
 * on from exactly there.
 */
export async function readLogs(bundle: string, q: LogQuery, live?: LiveLog): Promise<LogEntry[]> {
  const sinceMs = q.since !== undefined ? parseSince(q.since) : undefined;
  const out: LogEntry[] = [];
  for (const file of await logFiles(bundle)) {
    let text: string;
    try {
      if (live && file.endsWith(`/${LOG_FILE}`)) {
        const buf = Buffer.alloc(live.size);
        await live.fh.read(buf, 0, live.size, 0);
        text = buf.toString('utf8');
      } else text = await fs.readFile(file, 'utf8');
    } catch {
      continue;
    }
    for (const raw of text.split('\n')) {
      const e = parseLine(raw);
      if (!e) continue;
      if (sinceMs !== undefined && Date.parse(e.time) < sinceMs) continue;
      out.push(e);
    }
  }
  return q.tail !== undefined && q.tail >= 0 ? out.slice(Math.max(0, out.length - q.tail)) : out;
}

/**
 * Follows the live log file from its current end, calling `emit` for each new record,
 * until `stopped()` says the container has exited and everything written is read.
 * Holds the file open, so a rotation (the live file renamed away) or the container's
 * removal loses nothing that was written.
 */
export async function followLogs(
  bundle: string,
  emit: (e: LogEntry) => void,
  stopped: () => boolean,
  signal: AbortSignal,
  start?: LiveLog,
): Promise<void> {
  const file = join(bundle, LOG_FILE);
  const open = () => fs.open(file, 'r').catch(() => undefined);
  let fh = start ? start.fh : await open();
  let pos = start ? start.size : fh ? (await fh.stat()).size : 0;
  let partial = '';
  const buf = Buffer.alloc(64 * 1024);
  let wake: (() => void) | undefined;
  const watcher = (() => {
    try {
      return watch(bundle, () => wake?.());
    } catch {
      return undefined;
    }
  })();
  const drain = async () => {
    if (!fh) return 0;
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      total += bytesRead;
      partial += buf.toString('utf8', 0, bytesRead);
    }
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const raw of lines) {
      const e = parseLine(raw);
      if (e) emit(e);
    }
    return total;
  };
  try {
    for (;;) {
      if (signal.aborted) return;
      const wasStopped = stopped();
      if ((await drain()) > 0) continue;
      // rotated or (re)created: finish the old file, then follow the new one
      const st = await fs.stat(file).catch(() => undefined);
      const cur = fh ? await fh.stat() : undefined;
      if (st && (!cur || st.ino !== cur.ino)) {
        await drain();
        await fh?.close();
        fh = await open();
        pos = 0;
        continue;
      }
      if (wasStopped) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 200);
      });
    }
  } finally {
    watcher?.close();
    await fh?.close();
  }
}
