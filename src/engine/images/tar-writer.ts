/**
 * A small, deterministic tar writer (POSIX ustar headers, pax extended headers when a field does
 * not fit). Used by `ImageStore.save` and by tests that build image layers and archives.
 */

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  /** Archive path, written as given (directories get a trailing '/'). */
  path: string;
  type: TarEntryType;
  /** Permission bits incl. setuid/setgid/sticky; default 0o644 (files) or 0o755 (dirs). */
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch; default 0 (reproducible archives). */
  mtime?: number;
  /** Byte size of a file's content; required for 'file'. */
  size?: number;
  /** Target of a symlink or hard link. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extra pax records, e.g. { 'SCHILY.xattr.user.k': 'v' }. */
  pax?: Record<string, string>;
}

const BLOCK = 512;
type RawType = TarEntryType | 'pax';
const typeflag: Record<RawType, string> = {
  pax: 'x',
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** GNU tar's default record size; archives are padded to a whole record, as GNU tar pads them. */
export const RECORD = 10240;

/**
 * The end of an archive of `written` bytes so far: two zero blocks, then zeros up to a whole
 * record (some tools, like `tar --delete`, expect whole records).
 */
export function endOfArchive(written: number): Buffer {
  const end = written + END_OF_ARCHIVE.length;
  const rest = end % RECORD;
  return Buffer.alloc(END_OF_ARCHIVE.length + (rest === 0 ? 0 : RECORD - rest));
}

/** Zero bytes that pad `size` content bytes to a whole block. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

function octalFits(value: number, width: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value < 8 ** (width - 1);
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
}

function writeString(buf: Buffer, offset: number, width: number, value: string): void {
  Buffer.from(value, 'utf8').copy(buf, offset, 0, width);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len)
    len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

function isAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

type RawEntry = Omit<TarEntry, 'type'> & { type: RawType };

function ustarHeader(e: RawEntry, fit: (k: string) => void): Buffer {
  const h = Buffer.alloc(BLOCK);
  const size = e.type === 'file' || e.type === 'pax' ? (e.size ?? 0) : 0;
  writeString(h, 0, 100, e.path);
  const mode = e.mode ?? (e.type === 'dir' ? 0o755 : 0o644);
  writeOctal(h, 100, 8, mode & 0o7777);
  for (const [key, off, val] of [
    ['uid', 108, e.uid ?? 0],
    ['gid', 116, e.gid ?? 0],
  ] as const) {
    if (octalFits(val, 8)) writeOctal(h, off, 8, val);
    else fit(key);
  }
  if (octalFits(size, 12)) writeOctal(h, 124, 12, size);
  else fit('size');
  const mtime = e.mtime ?? 0;
  if (octalFits(mtime, 12)) writeOctal(h, 136, 12, mtime);
  else fit('mtime');
  h.write(typeflag[e.type], 156, 1, 'ascii');
  writeString(h, 157, 100, e.linkname ?? '');
  h.write('ustar\x0000', 257, 8, 'binary');
  writeString(h, 265, 32, e.uname ?? '');
  writeString(h, 297, 32, e.gname ?? '');
  writeOctal(h, 329, 8, e.devmajor ?? 0);
  writeOctal(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/**
 * The header block(s) of one entry: a pax extended header first when the path or link name is
 * longer than 100 bytes or not ASCII, when a number does not fit its octal field, or when the
 * entry carries pax records of its own.
 */
export function encodeHeader(entry: TarEntry): Buffer {
  if (entry.type === 'file' && entry.size === undefined)
    throw new Error(`tar entry ${entry.path}: size missing`);
  const path = entry.type === 'dir' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path;
  const pax: Record<string, string> = { ...(entry.pax ?? {}) };
  if (Buffer.byteLength(path) > 100 || !isAscii(path)) pax.path = path;
  if (entry.linkname !== undefined && (Buffer.byteLength(entry.linkname) > 100 || !isAscii(entry.linkname))) {
    pax.linkpath = entry.linkname;
  }
  const e = { ...entry, path };
  const values: Record<string, number> = {
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    size: entry.size ?? 0,
    mtime: entry.mtime ?? 0,
  };
  const main = ustarHeader(e, (key) => {
    pax[key] = String(values[key]);
  });
  if (Object.keys(pax).length === 0) return main;
  const body = Buffer.from(
    Object.entries(pax)
      .map(([k, v]) => paxRecord(k, v))
      .join(''),
    'utf8',
  );
  const base = path.replace(/\/$/, '').split('/').pop() ?? 'entry';
  const paxHeader = ustarHeader(
    { path: `PaxHeader/${base}`.slice(0, 99), type: 'pax', size: body.length, mode: 0o644 },
    () => {
      throw new Error('pax header too large');
    },
  );
  return Buffer.concat([paxHeader, body, padding(body.length), main]);
}

/** One whole entry (header, content, padding) as a buffer. */
export function encodeEntry(entry: TarEntry, data?: Buffer): Buffer {
  const content = data ?? Buffer.alloc(0);
  const e = entry.type === 'file' ? { ...entry, size: content.length } : entry;
  return Buffer.concat([encodeHeader(e), content, padding(content.length)]);
}

/** A whole archive in memory; entries are written in the order given. */
export function buildTar(entries: Array<{ entry: TarEntry; data?: Buffer }>): Buffer {
  const body = Buffer.concat(entries.map(({ entry, data }) => encodeEntry(entry, data)));
  return Buffer.concat([body, endOfArchive(body.length)]);
}
