/**
 * Layer blobs: checking one (compression, diff_id, member names) and unpacking one with GNU tar,
 * whiteouts converted to overlayfs form by the native helper.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants, open } from 'node:fs/promises';
import { Duplex, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { precondition, TsswarmError } from '../../api/errors.js';
import { archiveError } from './archive-reader.js';
import { TarScanner } from './tarscan.js';

export type Compression = 'none' | 'gzip' | 'zstd';

export const LAYER_MEDIA_TYPES: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

export interface LayerInfo {
  /** 'sha256:<hex>' of the uncompressed tar stream. */
  diffId: string;
  /** Bytes of the uncompressed tar stream. */
  size: number;
  compression: Compression;
  /** Whether any member is an AUFS-style whiteout (`.wh.NAME` or `.wh..wh..opq`). */
  hasWhiteouts: boolean;
}

/** Detects the compression of a blob from its first bytes. */
export async function detectCompression(file: string): Promise<Compression | 'bzip2' | 'xz'> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(6);
    const { bytesRead } = await fh.read(head, 0, 6, 0);
    const b = head.subarray(0, bytesRead);
    if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (b.length >= 4 && b.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
    if (b.length >= 3 && b.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
    if (b.length >= 6 && b.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    return 'none';
  } finally {
    await fh.close();
  }
}

/** A readable of the decompressed content; zstd goes through the `zstd` program, as GNU tar does. */
function decompressed(
  file: string,
  compression: Compression,
  label: string,
): { stream: NodeJS.ReadableStream; done: Promise<void> } {
  if (compression === 'none') return { stream: createReadStream(file), done: Promise.resolve() };
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    const src = createReadStream(file);
    src.on('error', (e) => gunzip.destroy(e));
    return { stream: src.pipe(gunzip), done: Promise.resolve() };
  }
  const { child, done } = zstd(['-d', '-c', '-q', '--', file], label, 'ignore');
  return { stream: child.stdout!, done };
}

/** `zstd ARGS` as a child process, and its end: a clear error when it fails or is missing. */
function zstd(
  args: string[],
  label: string,
  stdin: 'pipe' | 'ignore',
): { child: ChildProcess; done: Promise<void> } {
  const child = spawn('zstd', args, { stdio: [stdin, 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? archiveError('zstd-compressed layer but the zstd program is not installed', err)
          : err,
      ),
    );
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(
            archiveError(
              `layer ${label} cannot be decompressed (zstd: ${firstLine(stderr) || `exit status ${code}`})`,
            ),
          ),
    );
  });
  return { child, done };
}

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ''
  );
}

function unsafeMember(name: string): string | undefined {
  if (name.startsWith('/')) return 'absolute path';
  if (name.split('/').includes('..')) return 'contains ".."';
  return undefined;
}

/**
 * Reads a layer blob once: decompresses it, hashes the tar stream (its diff_id), and parses it
 * to refuse corrupt tar data and unsafe member names. `label` names the layer in errors.
 */
export async function inspectLayer(file: string, label: string): Promise<LayerInfo> {
  const detected = await detectCompression(file);
  if (detected === 'bzip2' || detected === 'xz') {
    throw archiveError(
      `layer ${label} is ${detected}-compressed; only plain, gzip and zstd layers are supported`,
    );
  }
  const compression: Compression = detected;
  const hash = createHash('sha256');
  let size = 0;
  let hasWhiteouts = false;
  let entries = 0;
  let problem: Error | undefined;
  let waiting: (() => void) | undefined;
  const flag = (err: Error) => {
    problem ??= err;
    const w = waiting;
    waiting = undefined;
    w?.();
  };
  const parser = new Parser({ strict: true });
  const parsed = new Promise<void>((resolve) => {
    parser.on('error', (err: Error) => {
      flag(
        archiveError(
          `layer ${label} is not a valid tar stream (${err.message.replace(/^TAR_[A-Z_]+: /, '')})`,
        ),
      );
      resolve();
    });
    parser.on('entry', (entry: ReadEntry) => {
      entries++;
      const bad = unsafeMember(entry.path);
      if (bad) flag(archiveError(`layer ${label} has an unsafe path "${entry.path}" (${bad})`));
      if (entry.type === 'Link' && entry.linkpath !== undefined) {
        if (unsafeMember(entry.linkpath)) {
          flag(archiveError(`layer ${label} has an unsafe hard link target "${entry.linkpath}"`));
        }
      }
      const base = entry.path.replace(/\/$/, '').split('/').pop() ?? '';
      if (base.startsWith('.wh.')) hasWhiteouts = true;
      entry.resume();
    });
    parser.on('end', () => resolve());
    parser.on('close', () => resolve());
  });
  const { stream, done } = decompressed(file, compression, label);
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      // once the tar data is known bad, only the hash is finished (to drain the source)
      if (problem || parser.write(chunk)) {
        cb();
        return;
      }
      waiting = () => cb();
      parser.once('drain', () => {
        const w = waiting;
        waiting = undefined;
        w?.();
      });
    },
    final(cb) {
      if (problem) {
        cb();
        return;
      }
      parser.end();
      parsed.then(() => cb());
    },
  });
  try {
    await Promise.all([pipeline(stream, sink), done]);
  } catch (err) {
    if (err instanceof TsswarmError) throw err;
    const msg = (err as Error).message;
    throw archiveError(
      /unexpected end of file/i.test(msg)
        ? `layer ${label} is truncated (${compression} stream ends early)`
        : `layer ${label} cannot be decompressed (${msg})`,
      err,
    );
  }
  if (problem) throw problem;
  if (entries === 0 && size > 0) throw archiveError(`layer ${label} is not a tar stream`);
  return { diffId: `sha256:${hash.digest('hex')}`, size, compression, hasWhiteouts };
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 4 << 20 }, (err, _stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr) }));
      else resolve();
    });
  });
}

/**
 * Unpacks a layer blob into `dir` (which must exist and be empty) with GNU tar, keeping numeric
 * owners, permissions and xattrs, then converts whiteouts with `<shimPath> whiteouts DIR` when
 * the layer has any.
 */
export async function extractLayer(
  blob: string,
  dir: string,
  opts: { label: string; shimPath: string; hasWhiteouts: boolean; tar?: string },
): Promise<void> {
  try {
    await run(opts.tar ?? 'tar', [
      '-x',
      '--numeric-owner',
      '-p',
      '--xattrs',
      '--xattrs-include=*',
      '-f',
      blob,
      '-C',
      dir,
    ]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw archiveError(
      `layer ${opts.label} could not be unpacked: ${firstLine(stderr) || (err as Error).message}`,
      err,
    );
  }
  if (opts.hasWhiteouts) await convertWhiteouts(dir, opts);
}

/** Turns a layer's AUFS whiteouts into overlayfs form with `<shimPath> whiteouts DIR`. */
async function convertWhiteouts(dir: string, opts: { label: string; shimPath: string }): Promise<void> {
  try {
    await access(opts.shimPath, constants.X_OK);
  } catch {
    throw precondition(
      `layer ${opts.label} has whiteouts but the helper ${opts.shimPath} is missing or not executable (run the setup step to build it)`,
    );
  }
  try {
    await run(opts.shimPath, ['whiteouts', dir]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new TsswarmError(
      'internal',
      `converting whiteouts of layer ${opts.label} failed: ${firstLine(stderr) || (err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Unpacks a layer from a stream in one pass: the compression is detected from its first bytes,
 * the decompressed tar stream is hashed (its diff_id), its headers are checked (TarScanner) and
 * it is fed to GNU tar unpacking into `dir` (which must exist and be empty); whiteouts are then
 * converted. On any error `dir`'s content is the caller's to remove.
 */
export async function unpackLayerStream(
  input: AsyncIterable<Buffer>,
  dir: string,
  opts: { label: string; shimPath: string; tar?: string },
): Promise<LayerInfo> {
  const it = input[Symbol.asyncIterator]();
  try {
    return await unpackFrom(it, dir, opts);
  } catch (err) {
    await it.return?.().catch(() => undefined); // the source (a file, a download) is released
    throw err;
  }
}

async function unpackFrom(
  it: AsyncIterator<Buffer>,
  dir: string,
  opts: { label: string; shimPath: string; tar?: string },
): Promise<LayerInfo> {
  const head: Buffer[] = [];
  let headLen = 0;
  let ended = false;
  while (headLen < 6) {
    const n = await it.next();
    if (n.done) {
      ended = true;
      break;
    }
    head.push(n.value);
    headLen += n.value.length;
  }
  const first = Buffer.concat(head);
  let compression: Compression = 'none';
  if (first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b) compression = 'gzip';
  else if (first.length >= 4 && first.readUInt32BE(0) === 0x28b52ffd) compression = 'zstd';
  else if (first.length >= 3 && first.toString('latin1', 0, 3) === 'BZh')
    throw archiveError(
      `layer ${opts.label} is bzip2-compressed; only plain, gzip and zstd layers are supported`,
    );
  else if (
    first.length >= 6 &&
    first.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
  )
    throw archiveError(
      `layer ${opts.label} is xz-compressed; only plain, gzip and zstd layers are supported`,
    );
  async function* source(): AsyncGenerator<Buffer> {
    if (first.length) yield first;
    if (ended) return;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value;
    }
  }
  const tarChild = spawn(
    opts.tar ?? 'tar',
    ['-x', '--numeric-owner', '-p', '--xattrs', '--xattrs-include=*', '-f', '-', '-C', dir],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let tarErr = '';
  tarChild.stderr.on('data', (d: Buffer) => {
    tarErr += d.toString();
  });
  const tarDone = new Promise<number>((resolve, reject) => {
    tarChild.on('error', reject);
    tarChild.on('close', (code) => resolve(code ?? 1));
  });
  tarDone.catch(() => undefined); // awaited below; a spawn failure must not go unhandled meanwhile
  let problem: Error | undefined;
  const scanner = new TarScanner((why) => {
    problem ??= archiveError(`layer ${opts.label} ${why}`);
  });
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      size += chunk.length;
      scanner.push(chunk);
      if (problem) cb(problem);
      else cb(null, chunk);
    },
  });
  let zstdDone: Promise<void> = Promise.resolve();
  const stages: NodeJS.ReadWriteStream[] = [];
  if (compression === 'gzip') stages.push(createGunzip({ chunkSize: 1 << 18 }));
  else if (compression === 'zstd') {
    const z = zstd(['-d', '-c', '-q'], opts.label, 'pipe');
    zstdDone = z.done;
    stages.push(Duplex.from({ writable: z.child.stdin!, readable: z.child.stdout! }));
  }
  try {
    // GNU tar may stop reading at the end-of-archive blocks: the rest is still hashed
    let tarGone = false;
    tarChild.stdin.on('error', () => {
      tarGone = true;
    });
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        if (tarGone || tarChild.stdin.destroyed) return cb();
        if (tarChild.stdin.write(chunk)) return cb();
        const go = () => {
          tarChild.stdin.off('close', go);
          tarChild.stdin.off('drain', go);
          cb();
        };
        tarChild.stdin.once('drain', go);
        tarChild.stdin.once('close', go);
      },
      final(cb) {
        if (tarGone || tarChild.stdin.destroyed) return cb();
        tarChild.stdin.end(() => cb());
      },
    });
    const streams = [Readable.from(source()), ...stages, tap, sink] as unknown as Parameters<typeof pipeline>;
    await Promise.all([pipeline(...streams), zstdDone]);
  } catch (err) {
    tarChild.kill('SIGKILL');
    await tarDone.catch(() => undefined);
    if (problem) throw problem;
    if (err instanceof TsswarmError) throw err;
    const msg = (err as Error).message;
    throw archiveError(
      /unexpected end of file/i.test(msg)
        ? `layer ${opts.label} is truncated (${compression} stream ends early)`
        : `layer ${opts.label} cannot be read (${msg})`,
      err,
    );
  }
  const code = await tarDone;
  if (problem) throw problem;
  const scan = scanner.finish();
  if (code !== 0)
    throw archiveError(
      `layer ${opts.label} could not be unpacked: ${firstLine(tarErr) || `tar exit ${code}`}`,
    );
  if (scan.entries === 0 && size > 0 && !isZeroTail(size))
    throw archiveError(`layer ${opts.label} is not a tar stream`);
  if (scan.hasWhiteouts) await convertWhiteouts(dir, opts);
  return { diffId: `sha256:${hash.digest('hex')}`, size, compression, hasWhiteouts: scan.hasWhiteouts };
}

/** An empty archive (end-of-archive blocks only) is a valid, empty layer. */
function isZeroTail(size: number): boolean {
  return size % 512 === 0;
}
