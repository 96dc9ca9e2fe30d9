/**
 * Long operations (pull, push, build) answer with a stream of JSON lines, as Docker's API does:
 * progress events as they happen, then `{"result": …}` or `{"error": {"code", "message"}}`.
 * Errors before the first line are ordinary HTTP errors.
 */
import type { FastifyReply } from 'fastify';
import { TsswarmError } from '../api/errors.js';

/** `run` gets a signal that aborts when the client goes away (a build stops; a pull once no client waits). */
export async function ndjson<T>(
  reply: FastifyReply,
  run: (emit: (event: object) => void, signal: AbortSignal) => Promise<T>,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const ac = new AbortController();
  raw.on('close', () => {
    if (!raw.writableFinished) ac.abort();
  });
  const emit = (e: object) => {
    if (!raw.writableEnded) raw.write(`${JSON.stringify(e)}\n`);
  };
  try {
    const result = await run(emit, ac.signal);
    emit({ result });
  } catch (err) {
    const e =
      err instanceof TsswarmError
        ? err.toJSON()
        : { code: 'internal', message: (err as Error).message ?? String(err) };
    emit({ error: e });
  }
  raw.end();
}
