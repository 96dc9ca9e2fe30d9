/**
 * One container's log as a stream of records: what it wrote so far (with tail/since applied),
 * then, when following a running container, what it writes until it ends. Shared by the
 * engine's `GET /containers/:id/logs` route and the node API's `GET /tasks/:id/logs`, which
 * both send each record as one stdout or stderr frame (src/api/frames.ts).
 */
import { encodeFrame, Frame } from '../api/frames.js';
import { followLogs, type LogEntry, openLiveLog, parseSince, readLogs } from '../engine/containers/logs.js';
import type { ContainerManager } from '../engine/containers/manager.js';
import type { ContainerRecord } from '../engine/containers/types.js';

export interface ContainerLogQuery {
  follow?: boolean;
  tail?: number;
  since?: string;
}

export interface ContainerLogStream {
  record: ContainerRecord;
  /**
   * Emits every record, then (following a running container) new ones until the container
   * ends or `signal` aborts. Call it right after containerLogStream, before any await: a
   * follower holds an auto-removed container from the start.
   */
  pump(emit: (e: LogEntry) => void, signal: AbortSignal): Promise<void>;
}

/** Checks the container and the query (throws before anything is streamed). */
export function containerLogStream(
  containers: ContainerManager,
  ref: string,
  q: ContainerLogQuery,
): ContainerLogStream {
  const rec = containers.get(ref);
  if (q.since !== undefined) parseSince(q.since); // refuse a bad value before streaming
  const bundle = containers.bundle(rec.id);
  return {
    record: rec,
    async pump(emit, signal) {
      const release = q.follow ? containers.hold(rec.id) : () => {};
      try {
        // following a created container (a foreground `run`) starts with its start
        if (q.follow && rec.state.status === 'created') await containers.waitStarted(rec.id);
        const follow = !!q.follow && rec.state.status === 'running';
        // open the live file first: what is read and what is followed then meet exactly
        const live = follow ? await openLiveLog(bundle) : undefined;
        let entries: LogEntry[];
        try {
          entries = await readLogs(bundle, { tail: q.tail, since: q.since }, live);
        } catch (e) {
          await live?.fh.close();
          throw e;
        }
        for (const e of entries) emit(e);
        if (follow) await followLogs(bundle, emit, () => rec.state.status !== 'running', signal, live);
      } finally {
        release();
      }
    },
  };
}

/** One record as a frame: stdout or stderr, the line prefixed with its time when asked. */
export function logFrame(e: LogEntry, timestamps: boolean): Buffer {
  return encodeFrame(
    e.stream === 'stderr' ? Frame.stderr : Frame.stdout,
    timestamps ? `${e.time} ${e.line}` : e.line,
  );
}
