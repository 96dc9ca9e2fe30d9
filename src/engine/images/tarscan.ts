/**
 * A streaming scan of tar headers (ustar, pax `path`/`linkpath` records, GNU long names) that
 * checks what a layer holds without unpacking it in JavaScript: member names must be relative
 * and free of `..`, hard-link targets too; whiteouts (`.wh.*`) are noted. Contents are skipped.
 * Much cheaper than a full parser: it only looks at one 512-byte header per member.
 */

export interface ScanResult {
  entries: number;
  hasWhiteouts: boolean;
}

const BLOCK = 512;

function cstr(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

function octal(b: Buffer, start: number, len: number): number {
  if (b[start]! & 0x80) {
    // base-256 (GNU) for large sizes
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = cstr(b, start, len).trim();
  return s === '' ? 0 : Number.parseInt(s, 8);
}

function paxRecords(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(data.toString('latin1', i, sp));
    if (!Number.isInteger(len) || len <= 0) break;
    const rec = data.toString('utf8', sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

export class TarScanner {
  private buf = Buffer.alloc(0);
  /** Bytes of the current member's content still to skip (incl. padding). */
  private skip = 0;
  /** Content of a pax or GNU long-name member being collected. */
  private collect?: { kind: 'pax' | 'longname' | 'longlink'; size: number; parts: Buffer[]; got: number };
  private nextPath?: string;
  private nextLink?: string;
  /** A pax `size` record: the next member's real size (≥ 8 GiB, or written so by Go's tar). */
  private nextSize?: number;
  private zeros = 0;
  private done = false;
  private readonly result: ScanResult = { entries: 0, hasWhiteouts: false };

  /** `problem` is called once with the first thing wrong (the caller refuses the layer). */
  constructor(private readonly problem: (why: string) => void) {}

  push(chunk: Buffer): void {
    if (this.done) return;
    let c = chunk;
    while (c.length > 0 && !this.done) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, c.length);
        if (this.collect) {
          const want = this.collect.size - this.collect.got;
          if (want > 0) {
            const part = c.subarray(0, Math.min(n, want));
            this.collect.parts.push(part);
            this.collect.got += part.length;
          }
        }
        this.skip -= n;
        c = c.subarray(n);
        if (this.skip === 0 && this.collect) this.finishCollect();
        continue;
      }
      const need = BLOCK - this.buf.length;
      if (c.length < need) {
        this.buf = Buffer.concat([this.buf, c]);
        return;
      }
      const header = this.buf.length ? Buffer.concat([this.buf, c.subarray(0, need)]) : c.subarray(0, BLOCK);
      this.buf = Buffer.alloc(0);
      c = c.subarray(need);
      this.header(header);
    }
  }

  private finishCollect(): void {
    const col = this.collect!;
    this.collect = undefined;
    const data = Buffer.concat(col.parts);
    if (col.kind === 'pax') {
      const r = paxRecords(data);
      if (r.path !== undefined) this.nextPath = r.path;
      if (r.linkpath !== undefined) this.nextLink = r.linkpath;
      if (r.size !== undefined && /^\d+$/.test(r.size)) this.nextSize = Number(r.size);
    } else if (col.kind === 'longname') this.nextPath = cstr(data, 0, data.length);
    else this.nextLink = cstr(data, 0, data.length);
  }

  private header(h: Buffer): void {
    if (h.every((x) => x === 0)) {
      if (++this.zeros >= 2) this.done = true;
      return;
    }
    this.zeros = 0;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (sum !== octal(h, 148, 8)) {
      this.problem('is not a valid tar stream (bad header checksum)');
      this.done = true;
      return;
    }
    const type = String.fromCharCode(h[156]! || 0x30);
    const isMember = type !== 'x' && type !== 'L' && type !== 'K' && type !== 'g';
    const size = isMember && this.nextSize !== undefined ? this.nextSize : octal(h, 124, 12);
    if (isMember) this.nextSize = undefined;
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'L' || type === 'K') {
      this.collect = {
        kind: type === 'x' ? 'pax' : type === 'L' ? 'longname' : 'longlink',
        size,
        parts: [],
        got: 0,
      };
      this.skip = padded;
      if (padded === 0) this.finishCollect();
      return;
    }
    if (type === 'g') {
      this.skip = padded;
      return;
    }
    const magic = h.toString('latin1', 257, 262);
    const prefix = magic === 'ustar' ? cstr(h, 345, 155) : '';
    const name = this.nextPath ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    const link = this.nextLink ?? cstr(h, 157, 100);
    this.nextPath = undefined;
    this.nextLink = undefined;
    this.result.entries++;
    const bad = unsafe(name);
    if (bad) this.problem(`has an unsafe path "${name}" (${bad})`);
    if (type === '1' && unsafe(link)) this.problem(`has an unsafe hard link target "${link}"`);
    const base = name.replace(/\/$/, '').split('/').pop() ?? '';
    if (base.startsWith('.wh.')) this.result.hasWhiteouts = true;
    // regular and contiguous files carry content, and GNU sparse files their stored data
    this.skip = type === '0' || type === '7' || type === 'S' ? padded : 0;
  }

  finish(): ScanResult {
    return { ...this.result };
  }
}

function unsafe(name: string): string | undefined {
  if (name.startsWith('/')) return 'absolute path';
  if (name.split('/').includes('..')) return 'contains ".."';
  return undefined;
}
