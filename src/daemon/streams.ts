import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { TsswarmError } from '../api/errors.js';
import { encodeFrame, exitFrame, Frame, FrameDecoder } from '../api/frames.js';
import type { ExecRequest } from '../engine/containers/manager.js';
import { signalNumber } from '../engine/containers/signals.js';
import type { Engine } from '../engine/engine.js';

const ROUTE = /^\/containers\/([^/?]+)\/(attach|exec)(\?.*)?$/;

function refuse(socket: Duplex, err: unknown): void {
  const e = err instanceof TsswarmError ? err : new TsswarmError('internal', (err as Error).message);
  const body = JSON.stringify(e.toJSON());
  socket.end(
    `HTTP/1.1 ${e.httpStatus} Error\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * HTTP upgrades for interactive streams, as the docker API hijacks connections:
 * `POST /containers/ID/attach` relays the shim's attach stream; `POST /containers/ID/exec`
 * (the request in the x-tsswarm-exec header, base64 JSON) runs a process and relays its
 * stdio as frames, ending with an exit frame.
 */
export async function handleUpgrade(
  engine: Engine,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const m = ROUTE.exec(req.url ?? '');
  if (!m || req.method !== 'POST')
    return refuse(socket, new TsswarmError('not_found', `no such stream endpoint: ${req.url}`));
  const [, id, kind] = m;
  socket.on('error', () => {});
  try {
    if (kind === 'attach') {
      const shim = await engine.containers.attach(decodeURIComponent(id!));
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nupgrade: tsswarm-stream\r\nconnection: Upgrade\r\n\r\n',
      );
      if (head.length) shim.write(head);
      socket.pipe(shim);
      shim.pipe(socket);
      shim.on('error', () => socket.destroy());
      shim.on('close', () => socket.end());
      socket.on('close', () => shim.destroy());
      return;
    }
    const header = req.headers['x-tsswarm-exec'];
    let request: ExecRequest;
    try {
      request = JSON.parse(Buffer.from(String(header ?? ''), 'base64').toString('utf8')) as ExecRequest;
    } catch {
      throw new TsswarmError('invalid_argument', 'exec request header is missing or not valid JSON');
    }
    const child = await engine.containers.exec(decodeURIComponent(id!), request);
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: tsswarm-stream\r\nconnection: Upgrade\r\n\r\n',
    );
    const decoder = new FrameDecoder();
    const control = child.stdio[3] as NodeJS.WritableStream | null;
    const onInput = (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === Frame.stdin) child.stdin?.write(f.payload);
        else if (f.type === Frame.closeStdin) child.stdin?.end();
        else if (f.type === Frame.resize && control && f.payload.length >= 4) {
          control.write(`resize ${f.payload.readUInt16BE(0)} ${f.payload.readUInt16BE(2)}\n`);
        }
      }
    };
    if (head.length) onInput(head);
    socket.on('data', onInput);
    child.stdin?.on('error', () => {});
    (control as unknown as Duplex | null)?.on?.('error', () => {});
    child.stdout?.on('data', (d: Buffer) => socket.write(encodeFrame(Frame.stdout, d)));
    child.stderr?.on('data', (d: Buffer) => socket.write(encodeFrame(Frame.stderr, d)));
    socket.on('close', () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    child.on('close', (code, signal) => {
      const status = code ?? (signal ? 128 + signalNumber(signal) : 255);
      socket.end(exitFrame(status));
    });
  } catch (err) {
    refuse(socket, err);
  }
}
