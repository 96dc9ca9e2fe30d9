/**
 * Turns a container's overlayfs upper dir into an image layer blob (gzip-compressed tar), as a
 * Dockerfile builder does after a RUN step.
 *
 *   const blob = await writeLayerFromDir(`${bundle}/upper`, '/path/to/layer.tar.gz', {
 *     exclude: (rel) => rel === 'etc/hostname' || rel === 'etc/hosts' || rel === 'etc/resolv.conf',
 *   });
 *
 * The walk is deterministic (entries sorted by their bytes, parents before children), never
 * follows symlinks and streams file content: the tar stream is hashed (diff_id), gzip-compressed,
 * hashed again (digest) and written to `dest` in one pass.
 *
 * Overlayfs → OCI conversion:
 * - a character device 0/0 (an overlayfs whiteout) becomes an empty file `DIR/.wh.NAME`
 *   (mode 0, uid/gid 0). Whiteouts are never archived as hard links, although overlayfs shares one
 *   whiteout inode between many of them.
 * - a directory with `trusted.overlay.opaque=y` is followed by an empty file `DIR/.wh..wh..opq`.
 * - `trusted.overlay.*` xattrs are never archived; `user.*` and `security.capability` are, as
 *   `SCHILY.xattr.*` pax records (values as raw bytes, as GNU tar and Docker write them).
 * - an upper dir that depends on its lower dirs for content (`trusted.overlay.metacopy` files or
 *   `trusted.overlay.redirect` directories, only made with the metacopy/redirect_dir overlay
 *   options) is refused: its diff cannot be taken from the upper dir alone.
 *
 * Xattrs come from one `getfattr -R` run over the whole dir (package `attr`), restricted to the
 * names that matter; reading `trusted.*` needs root (CAP_SYS_ADMIN).
 *
 * Sockets are skipped (tar cannot hold them); the root of `dir` itself is not archived. File names
 * and symlink targets must be valid UTF-8.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, createWriteStream, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { TsswarmError } from '../../api/errors.js';
import { encodeHeader, endOfArchive, padding, type TarEntry } from '../images/tar-writer.js';

export interface LayerBlob {
  /** The blob written (`dest`). */
  file: string;
  /** 'sha256:<hex>' of the gzip blob. */
  digest: string;
  /** 'sha256:<hex>' of the uncompressed tar stream. */
  diffId: string;
  /** Bytes of the gzip blob. */
  size: number;
  /** Bytes of the uncompressed tar stream. */
  tarSize: number;
  /** No entry was written (the tar holds only its end-of-archive blocks). */
  empty: boolean;
}

export interface LayerDiffOptions {
  /**
   * Called for every path below `dir` (relative, no leading './' or '/', no trailing '/'; whiteouts
   * under the name they delete, with the device's stats); `true` leaves the path out, and a
   * directory's whole subtree with it.
   */
  exclude?: (rel: string, st: Stats) => boolean;
  /** zlib level 0-9; default 6. */
  gzipLevel?: number;
}

const BLOCK = 512;
/** Coalesce headers and small chunks into writes of about this size. */
const CHUNK = 256 * 1024;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

/** Xattr names read from the upper dir: the archived ones and the overlayfs ones that matter. */
const XATTR_PATTERN = '^(user\\.|security\\.capability$|trusted\\.overlay\\.(opaque|metacopy|redirect)$)';
const archivedXattr = (name: string) => name.startsWith('user.') || name === 'security.capability';

type Xattrs = Map<string, Buffer>;

const unsupported = (msg: string) => new TsswarmError('unsupported', msg);
const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(raw: Buffer, where: string): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw unsupported(
      `layer diff: ${where}: name is not valid UTF-8 (${JSON.stringify(raw.toString('latin1'))})`,
    );
  }
}

/** getfattr writes `\`, CR, LF (and `=` in attribute names) as `\ooo`; everything else raw. */
function unescapeGetfattr(s: string): Buffer {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'latin1');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(Number.parseInt(raw.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(c);
  }
  return Buffer.from(bytes);
}

/**
 * The interesting xattrs of everything under `root` (one `getfattr -R` run), keyed by path
 * relative to `root` ('' for root itself).
 */
async function readXattrs(root: string): Promise<Map<string, Xattrs>> {
  const out = new Map<string, Xattrs>();
  const child = spawn(
    'getfattr',
    [
      '--dump',
      '--match',
      XATTR_PATTERN,
      '--no-dereference',
      '--absolute-names',
      '--encoding',
      'base64',
      '--recursive',
      '--physical',
      '--',
      root,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new TsswarmError(
              'precondition',
              'layer diff: the getfattr program (package attr) is not installed',
              {
                cause: err,
              },
            )
          : err,
      ),
    );
    child.on('close', (code) => resolve(code));
  });
  const lines = createInterface({
    input: child.stdout.setEncoding('latin1'),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  try {
    await parseDump(lines, root, out);
  } catch (err) {
    child.kill();
    await exited.catch(() => {});
    throw err;
  }
  const code = await exited;
  if (code !== 0) throw new Error(`layer diff: getfattr ${root} failed (exit ${code}): ${stderr.trim()}`);
  return out;
}

async function parseDump(
  lines: AsyncIterable<string>,
  root: string,
  out: Map<string, Xattrs>,
): Promise<void> {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  let current: Xattrs | undefined;
  for await (const line of lines) {
    if (line.startsWith('# file: ')) {
      const file = decodeName(unescapeGetfattr(line.slice('# file: '.length)), 'xattrs');
      const rel =
        file === root || `${file}/` === prefix
          ? ''
          : file.startsWith(prefix)
            ? file.slice(prefix.length)
            : null;
      if (rel === null) throw new Error(`layer diff: getfattr reported a path outside ${root}: ${file}`);
      current = new Map();
      out.set(rel, current);
    } else if (line !== '' && current) {
      const eq = line.indexOf('=');
      const name = unescapeGetfattr(eq < 0 ? line : line.slice(0, eq)).toString('utf8');
      const value = eq < 0 ? '' : line.slice(eq + 1);
      if (value !== '' && !value.startsWith('0s'))
        throw new Error(`layer diff: unexpected getfattr value for ${name}: ${value}`);
      current.set(name, Buffer.from(value.slice(2), 'base64'));
    }
  }
}

/** One pax record with a raw-bytes value: "<len> <key>=<value>\n". */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3;
  let len = rest + 1;
  while (String(len).length + rest !== len) len = String(len).length + rest;
  return Buffer.concat([Buffer.from(`${len} ${key}=`, 'utf8'), value, Buffer.from('\n')]);
}

function setChecksum(h: Buffer): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
}

/**
 * The header block(s) of an entry. Xattr values are binary (security.capability is), which the
 * tar writer's string pax records cannot carry: they are appended to its pax records (path,
 * linkpath, big numbers) here as raw bytes, under a pax header of our own.
 */
function header(entry: TarEntry, xattrs: Array<[string, Buffer]>): Buffer {
  const plain = encodeHeader(entry);
  if (xattrs.length === 0) return plain;
  const main = plain.subarray(plain.length - BLOCK);
  const records: Buffer[] = [];
  if (plain.length > BLOCK) {
    const size = Number.parseInt(plain.toString('ascii', 124, 135), 8);
    records.push(plain.subarray(BLOCK, BLOCK + size));
  }
  for (const [name, value] of xattrs) records.push(paxRecord(`SCHILY.xattr.${name}`, value));
  const body = Buffer.concat(records);
  const base = entry.path.replace(/\/$/, '').split('/').pop() ?? '';
  const paxName = `PaxHeader/${base.replace(/[^\x20-\x7e]/g, '_')}`.slice(0, 99);
  const paxHeader = Buffer.from(
    encodeHeader({ path: paxName, type: 'file', size: body.length, mode: 0o644 }),
  );
  if (paxHeader.length !== BLOCK) throw new Error('layer diff: pax header too large');
  paxHeader.write('x', 156, 1, 'ascii');
  setChecksum(paxHeader);
  return Buffer.concat([paxHeader, body, padding(body.length), main]);
}

/** Linux dev_t → major/minor (glibc's encoding). */
function devNumbers(rdev: number): { devmajor: number; devminor: number } {
  const r = BigInt(rdev);
  return {
    devmajor: Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn)),
    devminor: Number((r & 0xffn) | ((r >> 12n) & ~0xffn & 0xffffffffn)),
  };
}

const seconds = (st: Stats) => Math.floor(st.mtimeMs / 1000);

interface WalkState {
  root: string;
  xattrs: Map<string, Xattrs>;
  exclude?: LayerDiffOptions['exclude'];
  /** dev:ino → archive path of the first link written. */
  links: Map<string, string>;
  entries: number;
}

async function* fileContent(abs: string, size: number, rel: string): AsyncGenerator<Buffer> {
  const fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let left = size;
    while (left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
      const { bytesRead } = await fh.read(buf, 0, buf.length, size - left);
      if (bytesRead === 0) throw new Error(`layer diff: ${rel} shrank while it was archived`);
      left -= bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

async function* walkDir(s: WalkState, relDir: string): AsyncGenerator<Buffer> {
  const absDir = relDir === '' ? s.root : path.join(s.root, relDir);
  const names = (await readdir(absDir, { encoding: 'buffer' })).sort(Buffer.compare);
  for (const raw of names) {
    const name = decodeName(raw, path.join(relDir, raw.toString('latin1')));
    const rel = relDir === '' ? name : `${relDir}/${name}`;
    yield* walkEntry(s, rel, path.join(absDir, name), name, relDir);
  }
}

async function* walkEntry(
  s: WalkState,
  rel: string,
  abs: string,
  name: string,
  relDir: string,
): AsyncGenerator<Buffer> {
  const st = await lstat(abs);
  if (st.isSocket()) return;
  if (s.exclude?.(rel, st)) return;
  const xa = s.xattrs.get(rel);
  const archived: Array<[string, Buffer]> = xa
    ? [...xa]
        .filter(([k]) => archivedXattr(k))
        .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    : [];
  const mtime = seconds(st);
  const owner = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime };

  if (st.isCharacterDevice() && st.rdev === 0) {
    s.entries++;
    const wh = `${relDir === '' ? '' : `${relDir}/`}${WHITEOUT_PREFIX}${name}`;
    yield header({ path: wh, type: 'file', size: 0, mode: 0, uid: 0, gid: 0, mtime }, []);
    return;
  }

  if (st.isDirectory()) {
    if (xa?.has('trusted.overlay.redirect'))
      throw unsupported(
        `layer diff: ${rel} is a redirected overlayfs directory (redirect_dir); cannot take a diff`,
      );
    s.entries++;
    yield header({ path: `${rel}/`, type: 'dir', ...owner }, archived);
    if (xa?.get('trusted.overlay.opaque')?.toString('latin1') === 'y')
      yield header(
        { path: `${rel}/${OPAQUE_MARKER}`, type: 'file', size: 0, mode: 0, uid: 0, gid: 0, mtime },
        [],
      );
    yield* walkDir(s, rel);
    return;
  }

  if (st.nlink > 1) {
    const big = await lstat(abs, { bigint: true });
    const key = `${big.dev}:${big.ino}`;
    const first = s.links.get(key);
    if (first !== undefined) {
      s.entries++;
      yield header({ path: rel, type: 'hardlink', linkname: first, ...owner }, []);
      return;
    }
    s.links.set(key, rel);
  }

  if (st.isFile()) {
    if (xa?.has('trusted.overlay.metacopy'))
      throw unsupported(`layer diff: ${rel} is an overlayfs metacopy file (metacopy=on); cannot take a diff`);
    s.entries++;
    yield header({ path: rel, type: 'file', size: st.size, ...owner }, archived);
    yield* fileContent(abs, st.size, rel);
    const pad = padding(st.size);
    if (pad.length > 0) yield pad;
    return;
  }

  if (st.isSymbolicLink()) {
    const target = decodeName(await readlink(abs, { encoding: 'buffer' }), `symlink target of ${rel}`);
    s.entries++;
    yield header({ path: rel, type: 'symlink', linkname: target, ...owner }, archived);
    return;
  }

  const type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : null;
  if (type === null) throw new Error(`layer diff: ${rel}: unknown file type (mode ${st.mode.toString(8)})`);
  s.entries++;
  yield header({ path: rel, type, ...owner, ...(type === 'fifo' ? {} : devNumbers(st.rdev)) }, archived);
}

/**
 * Writes `dir` (an overlayfs upper dir) as a gzip-compressed OCI layer to `dest`. On failure
 * `dest` is removed.
 */
export async function writeLayerFromDir(
  dir: string,
  dest: string,
  opts: LayerDiffOptions = {},
): Promise<LayerBlob> {
  const root = path.resolve(dir);
  const rootSt = await lstat(root);
  if (!rootSt.isDirectory())
    throw new TsswarmError('invalid_argument', `layer diff: ${dir} is not a directory`);
  const xattrs = await readXattrs(root);
  const state: WalkState = { root, xattrs, exclude: opts.exclude, links: new Map(), entries: 0 };

  const tarHash = createHash('sha256');
  const blobHash = createHash('sha256');
  let tarSize = 0;
  let size = 0;

  async function* tarStream(): AsyncGenerator<Buffer> {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const take = () => {
      const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      return out;
    };
    for await (const chunk of walkDir(state, '')) {
      tarSize += chunk.length;
      tarHash.update(chunk);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= CHUNK) yield take();
    }
    const end = endOfArchive(tarSize);
    tarSize += end.length;
    tarHash.update(end);
    pending.push(end);
    pendingBytes += end.length;
    yield take();
  }

  async function* count(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of src) {
      size += chunk.length;
      blobHash.update(chunk);
      yield chunk;
    }
  }

  try {
    await pipeline(tarStream, createGzip({ level: opts.gzipLevel ?? 6 }), count, createWriteStream(dest));
  } catch (err) {
    await rm(dest, { force: true });
    throw err;
  }
  return {
    file: dest,
    digest: `sha256:${blobHash.digest('hex')}`,
    diffId: `sha256:${tarHash.digest('hex')}`,
    size,
    tarSize,
    empty: state.entries === 0,
  };
}
