/**
 * The stream framing shared by the shim, the daemon and the CLI for attach and exec:
 * each frame is [1 byte type][4 bytes big-endian length][payload].
 * Output: type 1 stdout, 2 stderr, 3 exit (payload: 4-byte BE exit code).
 * Input:  type 0 stdin data, 1 resize (rows u16 BE, cols u16 BE), 2 close stdin.
 */
export const Frame = {
  stdin: 0,
  resize: 1,
  closeStdin: 2,
  stdout: 1,
  stderr: 2,
  exit: 3,
} as const;

export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

export function resizeFrame(rows: number, cols: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt16BE(rows, 0);
  p.writeUInt16BE(cols, 2);
  return encodeFrame(Frame.resize, p);
}

export function exitFrame(code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeInt32BE(code, 0);
  return encodeFrame(Frame.exit, p);
}

/** Incremental decoder: feed chunks, get whole frames back. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Array<{ type: number; payload: Buffer }> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Array<{ type: number; payload: Buffer }> = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 5 + len) break;
      out.push({ type: this.buf.readUInt8(0), payload: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}
