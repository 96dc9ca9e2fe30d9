/**
 * Layer blobs: checking one (compression, diff_id, member names) and unpacking one with GNU tar,
 * whiteouts converted to overlayfs form by the native helper.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants, open } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { precondition, TsswarmError } from '../../api/errors.js';
import { archiveError } from './archive-reader.js';

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
  const child = spawn('zstd', ['-d', '-c', '-q', '--', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
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
  return { stream: child.stdout, done };
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
  if (!opts.hasWhiteouts) return;
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
