/**
 * Reads an image archive (plain or gzip-compressed tar) into a staging directory: every regular
 * file is written there under a sequence name with its sha256 computed on the way; symlinks and
 * hard links are remembered, never created. Unsafe member names (absolute, `..`) are refused.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { badArchive } from '../../api/errors.js';

export const ARCHIVE_ERROR_PREFIX = 'invalid image archive';

/** A `badArchive` error with the common prefix. */
export const archiveError = (msg: string, cause?: unknown) =>
  badArchive(`${ARCHIVE_ERROR_PREFIX}: ${msg}`, cause);

export interface StagedFile {
  /** Location of the content in the staging directory. */
  file: string;
  /** Lowercase hex sha256 of the content. */
  sha256: string;
  size: number;
}

/**
 * Normalizes a member name ('./a//b/' → 'a/b'). Returns undefined for the archive root.
 * Throws for absolute names and names with a `..` component.
 */
export function safeMemberPath(name: string): string | undefined {
  if (name.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(name)) {
    throw archiveError(`unsafe absolute path "${name}"`);
  }
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw archiveError(`unsafe path "${name}" (contains "..")`);
  return parts.length === 0 ? undefined : parts.join('/');
}

const MAX_LINK_HOPS = 16;

export class StagedArchive {
  readonly files = new Map<string, StagedFile>();
  /** member path → member path it points to (already resolved against the link's directory). */
  readonly links = new Map<string, string>();

  /** The file at `member`, following symlinks and hard links inside the archive. */
  get(member: string): StagedFile | undefined {
    let p = safeMemberPath(member);
    for (let hop = 0; p !== undefined && hop <= MAX_LINK_HOPS; hop++) {
      const f = this.files.get(p);
      if (f) return f;
      p = this.links.get(p);
    }
    return undefined;
  }

  /** Members (files and links) directly or indirectly under `dir`. */
  membersUnder(dir: string): string[] {
    const prefix = `${dir.replace(/\/$/, '')}/`;
    return [...this.files.keys(), ...this.links.keys()].filter((p) => p.startsWith(prefix));
  }
}

/** Resolves a symlink target relative to the link's directory; undefined when it leaves the archive. */
function resolveLinkTarget(linkMember: string, target: string): string | undefined {
  if (target.startsWith('/')) return undefined;
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(linkMember), target));
  if (joined === '..' || joined.startsWith('../') || joined.startsWith('/')) return undefined;
  return joined === '.' ? undefined : joined.replace(/\/$/, '');
}

/**
 * Stages `archivePath` into `stagingDir` (which must exist and be empty).
 * Rejects with a one-line `badArchive` error for anything that is not a readable tar.
 */
export async function stageArchive(archivePath: string, stagingDir: string): Promise<StagedArchive> {
  let size: number;
  try {
    size = (await stat(archivePath)).size;
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT'
      ? archiveError(`cannot open ${archivePath}: no such file`, err)
      : archiveError(`cannot read ${archivePath}: ${(err as Error).message}`, err);
  }
  if (size === 0) throw archiveError(`${archivePath} is an empty file`);
  const staged = new StagedArchive();
  const writes: Promise<void>[] = [];
  const open = new Set<WriteStream>();
  let seq = 0;
  let entries = 0;
  const source = createReadStream(archivePath);
  const parser = new Parser({ strict: true });

  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      source.unpipe(parser);
      source.destroy();
      for (const out of open) out.destroy();
      reject(err);
    };
    source.on('error', (err: NodeJS.ErrnoException) =>
      fail(
        err.code === 'ENOENT'
          ? archiveError(`cannot open ${archivePath}: no such file`, err)
          : archiveError(`cannot read ${archivePath}: ${err.message}`, err),
      ),
    );
    parser.on('error', (err: Error & { code?: string }) => fail(describeTarError(err)));
    parser.on('entry', (entry: ReadEntry) => {
      if (failed) {
        entry.resume();
        return;
      }
      entries++;
      try {
        const member = safeMemberPath(entry.path);
        if (member === undefined) {
          entry.resume();
          return;
        }
        switch (entry.type) {
          case 'File':
          case 'OldFile':
          case 'ContiguousFile': {
            const file = path.join(stagingDir, `f${seq++}`);
            writes.push(writeEntry(entry, file, open).then((s) => void staged.files.set(member, s), fail));
            staged.links.delete(member);
            return;
          }
          case 'SymbolicLink': {
            const target = resolveLinkTarget(member, entry.linkpath ?? '');
            if (target === undefined) throw archiveError(`unsafe symlink "${member}" -> "${entry.linkpath}"`);
            staged.files.delete(member);
            staged.links.set(member, target);
            break;
          }
          case 'Link': {
            const target = safeMemberPath(entry.linkpath ?? '');
            if (target === undefined) throw archiveError(`invalid hard link "${member}"`);
            staged.files.delete(member);
            staged.links.set(member, target);
            break;
          }
          default:
            break; // directories and anything else carry no image data
        }
        entry.resume();
      } catch (err) {
        entry.resume();
        fail(err);
      }
    });
    parser.on('end', () => {
      if (failed) return;
      Promise.all(writes).then(() => {
        if (failed) return;
        if (entries === 0) fail(archiveError('empty archive (no tar entries)'));
        else resolve();
      }, fail);
    });
    source.pipe(parser);
  }).catch(async (err) => {
    await Promise.allSettled(writes);
    throw err;
  });
  return staged;
}

function describeTarError(err: Error & { code?: string }): Error {
  const msg = err.message.replace(/^TAR_[A-Z_]+: /, '');
  if (err.code === 'TAR_ENTRY_INVALID' || /checksum|base256|Unrecognized archive/i.test(msg)) {
    return archiveError(`not a tar archive or corrupt tar header (${msg})`, err);
  }
  if (/Truncated/i.test(msg) || /unexpected end of file/i.test(msg)) {
    return archiveError(`archive is truncated (${msg})`, err);
  }
  return archiveError(`unreadable tar (${msg})`, err);
}

function writeEntry(entry: ReadEntry, file: string, open: Set<WriteStream>): Promise<StagedFile> {
  return new Promise<StagedFile>((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    const out = createWriteStream(file, { flags: 'wx', mode: 0o644 });
    open.add(out);
    entry.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      size += chunk.length;
      if (!out.write(chunk)) {
        entry.pause();
        out.once('drain', () => entry.resume());
      }
    });
    entry.on('end', () => out.end());
    entry.on('error', (err: unknown) => {
      out.destroy();
      reject(err);
    });
    out.on('error', (err) => {
      entry.resume();
      reject(err);
    });
    out.on('close', () => {
      open.delete(out);
      if (size !== entry.size) {
        reject(archiveError(`archive is truncated (member "${entry.path}" is incomplete)`));
        return;
      }
      resolve({ file, sha256: hash.digest('hex'), size });
    });
  });
}
