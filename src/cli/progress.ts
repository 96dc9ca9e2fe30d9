/**
 * Renders the JSON-lines progress of pull, push and build. On a terminal each layer keeps one
 * line that is rewritten in place; otherwise a line is printed when a layer's status changes.
 */
import type { IncomingMessage } from 'node:http';
import { fromWire } from '../api/errors.js';
import { humanBytes } from './render.js';

interface Event {
  id?: string;
  status?: string;
  current?: number;
  total?: number;
  stream?: string;
  result?: unknown;
  error?: { code: string; message: string };
}

function line(e: Event): string {
  const head = e.id ? `${e.id}: ${e.status ?? ''}` : (e.status ?? '');
  if (e.current === undefined || !e.total) return head;
  const width = 30;
  const done = Math.min(width, Math.round((e.current / e.total) * width));
  return `${head} [${'='.repeat(Math.max(0, done - 1))}${done ? '>' : ''}${' '.repeat(width - done)}] ${humanBytes(e.current)}/${humanBytes(e.total)}`;
}

/** Follows a progress stream to its end; returns the result or throws the error it ended with. */
export async function followProgress<T>(
  res: IncomingMessage,
  out: NodeJS.WriteStream = process.stdout,
  quiet = false,
): Promise<T> {
  const tty = out.isTTY === true && !quiet;
  const order: string[] = [];
  const shown = new Map<string, string>();
  let buf = '';
  let result: T | undefined;
  let error: Event['error'];
  const onEvent = (e: Event) => {
    if (e.error) {
      error = e.error;
      return;
    }
    if ('result' in e) {
      result = e.result as T;
      return;
    }
    if (quiet) return;
    if (e.stream !== undefined) {
      out.write(e.stream);
      return;
    }
    if (!e.id) {
      out.write(`${line(e)}\n`);
      if (tty) order.length = 0;
      return;
    }
    const text = line(e);
    if (tty) {
      let i = order.indexOf(e.id);
      if (i < 0) {
        order.push(e.id);
        out.write(`${text}\n`);
        return;
      }
      const up = order.length - i;
      out.write(`\x1b[${up}A\r\x1b[2K${text}\r\x1b[${up}B`);
      i = 0;
      return;
    }
    if (shown.get(e.id) === e.status) return;
    shown.set(e.id, e.status ?? '');
    out.write(`${e.id}: ${e.status ?? ''}\n`);
  };
  res.setEncoding('utf8');
  for await (const chunk of res as AsyncIterable<string>) {
    buf += chunk;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const l = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (l) onEvent(JSON.parse(l) as Event);
      nl = buf.indexOf('\n');
    }
  }
  if (buf.trim()) onEvent(JSON.parse(buf) as Event);
  if (error) throw fromWire(error, 500);
  if (result === undefined)
    throw fromWire({ code: 'internal', message: 'the daemon ended the stream without a result' }, 500);
  return result;
}
