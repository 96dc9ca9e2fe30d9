import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { encodeFrame, Frame, FrameDecoder, resizeFrame } from '../api/frames.js';

/** Writes output frames (stdout/stderr) to the terminal; resolves with the exit code frame's value, if any. */
export function relayOutput(source: Socket | IncomingMessage): Promise<number | undefined> {
  const decoder = new FrameDecoder();
  let exitCode: number | undefined;
  return new Promise((resolve) => {
    source.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type === Frame.exit) exitCode = f.payload.readInt32BE(0);
        else {
          const out = f.type === Frame.stderr ? process.stderr : process.stdout;
          out.write(f.payload);
        }
      }
    });
    source.on('end', () => resolve(exitCode));
    source.on('close', () => resolve(exitCode));
    source.on('error', () => resolve(exitCode));
  });
}

/** Parses docker's --detach-keys ("ctrl-p,ctrl-q") into the byte sequence. */
export function parseDetachKeys(spec: string): Buffer {
  const bytes = spec.split(',').map((k) => {
    const key = k.trim().toLowerCase();
    const ctrl = /^ctrl-([a-z@[\\\]^_])$/.exec(key);
    if (ctrl) return ctrl[1]!.charCodeAt(0) & 0x1f;
    if (key.length === 1) return key.charCodeAt(0);
    throw new Error(`invalid detach key "${k}": use a letter or ctrl-<letter>`);
  });
  return Buffer.from(bytes);
}

/**
 * Sends this terminal's stdin to the stream as stdin frames. With a TTY the terminal goes
 * to raw mode, window sizes are forwarded, and the detach sequence ends the session
 * without stopping the container. Returns a function restoring the terminal.
 */
export function relayInput(
  sock: Socket,
  opts: { tty: boolean; detachKeys?: Buffer; onDetach?: () => void },
): () => void {
  const stdin = process.stdin;
  const raw = opts.tty && stdin.isTTY;
  if (raw) stdin.setRawMode(true);
  const sendSize = () => {
    if (process.stdout.isTTY) sock.write(resizeFrame(process.stdout.rows, process.stdout.columns));
  };
  if (opts.tty) {
    sendSize();
    process.stdout.on('resize', sendSize);
  }
  let matched = 0;
  const onData = (d: Buffer) => {
    if (opts.detachKeys?.length) {
      for (let i = 0; i < d.length; i++) {
        const b = d[i]!;
        matched = b === opts.detachKeys[matched] ? matched + 1 : b === opts.detachKeys[0] ? 1 : 0;
        if (matched === opts.detachKeys.length) {
          // what came before the sequence still goes to the container
          const before = d.subarray(0, Math.max(0, i + 1 - opts.detachKeys.length));
          if (before.length) sock.write(encodeFrame(Frame.stdin, before));
          opts.onDetach?.();
          return;
        }
      }
    }
    sock.write(encodeFrame(Frame.stdin, d));
  };
  stdin.on('data', onData);
  stdin.on('end', () => sock.write(encodeFrame(Frame.closeStdin)));
  return () => {
    stdin.off('data', onData);
    process.stdout.off('resize', sendSize);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
  };
}

/** The query of a logs request (container or service) from the common options. */
export function logQuery(o: { follow?: boolean; tail?: number; since?: string; timestamps?: boolean }) {
  return {
    follow: o.follow ? 1 : undefined,
    tail: o.tail,
    since: o.since,
    timestamps: o.timestamps ? 1 : undefined,
  };
}
