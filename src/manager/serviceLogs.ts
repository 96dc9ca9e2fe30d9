/**
 * `tsswarm service logs SERVICE|TASK`: the logs of a service's tasks (or of one task) gathered
 * from the nodes that ran them, as `docker service logs` does. A task's log lives in its node's
 * engine only: the manager reads its own node's containers from the local engine, and asks
 * every other node's node API (src/worker/nodeApi.ts, port NODE_API_PORT) with its manager
 * certificate. Every task that still has a container is read (running or ended); with follow,
 * running ones are streamed until they end. Tasks created after the request are not picked up.
 *
 * Wire protocol of the cluster API's `GET /services/:ref/logs` (ref: a service name, id or id
 * prefix, else a task id or id prefix), query `follow`, `tail`, `since`, `timestamps`, `raw`,
 * `noTaskIds` (flags as 1): the engine's frames (src/api/frames.ts).
 *   - stdout (1) / stderr (2) frames: one log record each, already formatted for the terminal:
 *     `[TIME ]web.1.0123456789ab@hostname    | line` (`web.1@…` with noTaskIds; global tasks
 *     name their node id instead of the slot; only `[TIME ]line` with raw);
 *   - stderr frames also carry one warning per node that could not be read:
 *     `error from node HOSTNAME (NODEID): why`;
 *   - one exit frame (3) closes the stream: 1 when tasks had to be read and none could be,
 *     else 0.
 * Without follow, the records of all tasks are sent sorted by time; with follow, as they come.
 * An unknown service or task is refused before streaming (404, `no such service or task`).
 */
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { NodeRecord, TaskRecord } from '../api/cluster.js';
import { fromWire, invalid, notFound, TsswarmError } from '../api/errors.js';
import { Frame, FrameDecoder } from '../api/frames.js';
import { containerLogStream } from '../daemon/logStream.js';
import { type LogEntry, parseSince } from '../engine/containers/logs.js';
import type { Engine } from '../engine/engine.js';
import { NODE_API_PORT, taskContainer } from '../worker/nodeApi.js';
import type { NodeCredentials } from './ca/tls.js';

export interface ServiceLogsOptions {
  follow: boolean;
  tail?: number;
  /** Unix seconds (converted from any `--since` form here, so every node reads the same instant). */
  since?: string;
  timestamps: boolean;
  raw: boolean;
  noTaskIds: boolean;
}

export interface ServiceLogsContext {
  engine: Engine;
  /** This manager's node: its tasks are read from the local engine. */
  nodeId: string;
  /** This manager's node credentials: its certificate is what node APIs accept. */
  creds: NodeCredentials;
  nodes: NodeRecord[];
  port?: number;
  /** How long a node has to answer (connection and headers), in ms. */
  timeoutMs?: number;
}

const truthy = (v: string | undefined) => v === '1' || v === 'true';

/** The route's query, checked before anything is streamed. */
export function serviceLogsOptions(q: Record<string, string | undefined>): ServiceLogsOptions {
  let tail: number | undefined;
  if (q.tail !== undefined && q.tail !== '') {
    if (!/^-?\d+$/.test(q.tail)) throw invalid(`tail must be a whole number, not "${q.tail}"`);
    tail = Number(q.tail);
  }
  return {
    follow: truthy(q.follow),
    ...(tail !== undefined ? { tail } : {}),
    ...(q.since ? { since: (parseSince(q.since) / 1000).toFixed(3) } : {}),
    timestamps: truthy(q.timestamps),
    raw: truthy(q.raw),
    noTaskIds: truthy(q.noTaskIds),
  };
}

/** The tasks `service logs REF` reads: a service's (by name, id or prefix), else one task's. */
export async function logTasks(
  m: { tasks(serviceRef?: string): Promise<TaskRecord[]> },
  ref: string,
): Promise<TaskRecord[]> {
  try {
    return await m.tasks(ref);
  } catch (e) {
    if (!(e instanceof TsswarmError && e.code === 'not_found')) throw e;
  }
  const all = await m.tasks();
  const exact = all.find((t) => t.id === ref);
  if (exact) return [exact];
  const byPrefix = all.filter((t) => t.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix;
  if (byPrefix.length > 1) throw invalid(`task id prefix "${ref}" is ambiguous: use more of the id`);
  throw notFound(`no such service or task: ${ref}`);
}

/** A manager's credentials, as the daemon keeps them (DATA_ROOT/swarm-creds.json). */
export async function managerCredentials(credsPath: string): Promise<NodeCredentials> {
  return JSON.parse(await readFile(credsPath, 'utf8')) as NodeCredentials;
}

/** Docker's task name: `service.slot.taskid` (global tasks: the node id for the slot). */
export function taskLogName(t: TaskRecord, noTaskIds = false): string {
  const base = `${t.serviceName}.${t.slot ?? t.nodeId}`;
  return noTaskIds ? base : `${base}.${t.id.slice(0, 12)}`;
}

/** One record as the terminal shows it. */
export function formatLogLine(
  t: TaskRecord,
  nodeName: string,
  e: LogEntry,
  o: Pick<ServiceLogsOptions, 'raw' | 'timestamps' | 'noTaskIds'>,
): string {
  let line = e.line;
  if (!o.raw) {
    // a record without its newline (a partial write) still ends its prefixed line
    line = `${taskLogName(t, o.noTaskIds)}@${nodeName}    | ${line.endsWith('\n') ? line : `${line}\n`}`;
  }
  return o.timestamps ? `${e.time} ${line}` : line;
}

type Emit = (e: LogEntry) => void;

/**
 * Reads (and with follow, streams) the logs of every task that has a container, on this node
 * or through the other nodes' node APIs, calling `write` with each formatted record and each
 * warning. Returns how many tasks were read and how many could not be.
 */
export async function streamTaskLogs(
  ctx: ServiceLogsContext,
  tasks: TaskRecord[],
  o: ServiceLogsOptions,
  write: (stream: 'stdout' | 'stderr', text: string) => void,
  signal: AbortSignal,
): Promise<{ read: number; failed: number }> {
  const nodes = new Map(ctx.nodes.map((n) => [n.id, n]));
  const readable = tasks
    .filter((t) => t.containerId && t.nodeId)
    .sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || a.createdAt - b.createdAt);
  const collected: Array<{ line: string; time: string; stream: LogEntry['stream'] }> = [];
  const warned = new Set<string>();
  let read = 0;
  let failed = 0;
  await Promise.all(
    readable.map(async (t) => {
      const nodeId = t.nodeId!;
      const node = nodes.get(nodeId);
      const emit: Emit = (e) => {
        const line = formatLogLine(t, node?.hostname ?? nodeId, e, o);
        if (o.follow) write(e.stream, line);
        else collected.push({ line, time: e.time, stream: e.stream });
      };
      const opened = () => {
        read++;
      };
      try {
        if (nodeId === ctx.nodeId) await localTaskLogs(ctx.engine, t.id, o, emit, opened, signal);
        else if (!node) throw new Error('the node is no longer part of the swarm');
        else if (node.status === 'down') throw new Error('the node is down');
        else if (!node.address)
          throw new Error('the node joined without --advertise-addr: managers cannot reach it');
        else await remoteTaskLogs(ctx, node.address, t.id, o, emit, opened, signal);
      } catch (e) {
        if (e instanceof TsswarmError && e.code === 'not_found') return; // its container is gone
        failed++;
        if (warned.has(nodeId) || signal.aborted) return;
        warned.add(nodeId);
        const name = node ? `${node.hostname} (${nodeId.slice(0, 12)})` : nodeId.slice(0, 12);
        write('stderr', `error from node ${name}: ${(e as Error).message}\n`);
      }
    }),
  );
  if (!o.follow) {
    // RFC 3339 times in UTC with fixed nanoseconds sort as strings; the sort is stable
    collected.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    for (const c of collected) write(c.stream, c.line);
  }
  return { read, failed };
}

async function localTaskLogs(
  engine: Engine,
  taskId: string,
  o: ServiceLogsOptions,
  emit: Emit,
  opened: () => void,
  signal: AbortSignal,
): Promise<void> {
  const c = taskContainer(engine, taskId);
  if (!c) throw notFound(`no container of task ${taskId} on this node`);
  const stream = containerLogStream(engine.containers, c.id, {
    follow: o.follow,
    ...(o.tail !== undefined ? { tail: o.tail } : {}),
    ...(o.since !== undefined ? { since: o.since } : {}),
  });
  opened();
  await stream.pump(emit, signal);
}

/** Relays a task's frames from its node's API (asked with timestamps, to sort and format here). */
function remoteTaskLogs(
  ctx: ServiceLogsContext,
  address: string,
  taskId: string,
  o: ServiceLogsOptions,
  emit: Emit,
  opened: () => void,
  signal: AbortSignal,
): Promise<void> {
  const q = new URLSearchParams({ timestamps: '1' });
  if (o.follow) q.set('follow', '1');
  if (o.tail !== undefined) q.set('tail', String(o.tail));
  if (o.since !== undefined) q.set('since', o.since);
  const timeoutMs = ctx.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve();
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (err && !signal.aborted) reject(err);
      else resolve();
    };
    const req = request(
      {
        host: address,
        port: ctx.port ?? NODE_API_PORT,
        method: 'GET',
        path: `/tasks/${encodeURIComponent(taskId)}/logs?${q}`,
        ca: [ctx.creds.caCertPem],
        cert: ctx.creds.certPem,
        key: ctx.creds.keyPem,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
        agent: false,
      },
      (res) => {
        clearTimeout(timer);
        if (res.statusCode !== 200) {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            let body: unknown = text;
            try {
              body = JSON.parse(text);
            } catch {}
            done(fromWire(body, res.statusCode ?? 500));
          });
          res.on('error', (e) => done(e));
          return;
        }
        opened();
        const decoder = new FrameDecoder();
        res.on('data', (chunk: Buffer) => {
          for (const f of decoder.push(chunk)) {
            if (f.type !== Frame.stdout && f.type !== Frame.stderr) continue;
            const s = f.payload.toString('utf8');
            const sp = s.indexOf(' ');
            emit({
              stream: f.type === Frame.stderr ? 'stderr' : 'stdout',
              time: sp < 0 ? '' : s.slice(0, sp),
              line: sp < 0 ? s : s.slice(sp + 1),
            });
          }
        });
        res.on('end', () => done());
        res.on('error', (e) => done(e));
        res.on('close', () => done(res.complete ? undefined : new Error('the connection was lost')));
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`no answer from its node API within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const onAbort = () => req.destroy();
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e) => done(e));
    req.end();
  });
}
