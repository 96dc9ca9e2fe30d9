/**
 * COPY and ADD sources: finding them under a root (the build context, or a stage's file
 * system for `--from`) with Docker's rules — paths cleaned and kept inside the root, `*`, `?`
 * and `[…]` wildcards — their checksum for the build cache, and laying them out at their
 * destination in a staging directory that becomes the step's layer.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { chmod, cp, lchown, lstat, mkdir, open, readdir, readlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { invalid } from '../../api/errors.js';

const run = promisify(execFile);

export interface Source {
  /** Path relative to the root, as matched. */
  rel: string;
  abs: string;
  stat: Stats;
}

const GLOB = /[*?[]/;

/** A regexp for one path segment of a wildcard pattern (filepath.Match syntax). */
function segmentRegExp(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) throw invalid(`invalid wildcard pattern "${seg}"`);
      let body = seg.slice(i + 1, end);
      if (body.startsWith('^')) body = `!${body.slice(1)}`;
      re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
      i = end;
    } else if (c === '\\' && i + 1 < seg.length) {
      re += seg[++i]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    } else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * `rel` resolved inside `root` the way the image (or context) sees it: symlinks on the way are
 * followed with absolute targets taken from `root` and `..` stopping at `root` (Docker's
 * FollowSymlinkInScope), so nothing outside `root` is ever reached. The last component is
 * followed too when `followLast`. Returns the path relative to `root` ('' for the root).
 */
export async function resolveInRoot(root: string, rel: string, followLast: boolean): Promise<string> {
  const queue = rel.split('/').filter((p) => p !== '' && p !== '.');
  const cur: string[] = [];
  let hops = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '..') {
      cur.pop();
      continue;
    }
    const abs = path.join(root, ...cur, part);
    const st = await lstat(abs).catch(() => undefined);
    if (st?.isSymbolicLink() && (queue.length > 0 || followLast)) {
      if (++hops > 40) throw invalid(`too many levels of symbolic links in ${rel}`);
      const target = await readlink(abs);
      if (target.startsWith('/')) cur.length = 0;
      queue.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
      continue;
    }
    cur.push(part);
  }
  return cur.join('/');
}

/**
 * Gives the directories on the way to `rel` in `stage` (a layer being made) the mode, owner and
 * times they have in the image (`view`), so the layer does not change them (a COPY into /tmp
 * keeps /tmp's 1777). Directories the image lacks keep what they were made with.
 */
export async function mirrorParents(
  stage: string,
  rel: string,
  view: string | undefined,
  includeLast: boolean,
): Promise<void> {
  if (!view) return;
  const parts = rel.split('/').filter((p) => p !== '');
  const upTo = includeLast ? parts.length : parts.length - 1;
  for (let i = 1; i <= upTo; i++) {
    const sub = parts.slice(0, i).join('/');
    const img = await lstat(path.join(view, sub)).catch(() => undefined);
    const mine = await lstat(path.join(stage, sub)).catch(() => undefined);
    if (!img?.isDirectory() || !mine?.isDirectory()) continue;
    await lchown(path.join(stage, sub), img.uid, img.gid);
    await chmod(path.join(stage, sub), img.mode & 0o7777);
    await utimes(path.join(stage, sub), img.atime, img.mtime);
  }
}

/** Cleans a source path; one that leaves the root is refused. */
export function cleanSource(src: string, what: string): string {
  const cleaned = path.posix.normalize(`/${src}`).slice(1);
  if (src.split('/').includes('..') && path.posix.normalize(src).startsWith('..'))
    throw invalid(`${what} failed: forbidden path outside the build context: ${src}`);
  return cleaned === '' ? '.' : cleaned;
}

/**
 * The sources one COPY/ADD argument names (wildcards expanded); none found is an error. Paths
 * are resolved inside `root` (symlinks on the way cannot lead out of it); a source that is
 * itself a symlink is copied as the link.
 */
export async function findSources(root: string, src: string, what: string): Promise<Source[]> {
  const rel = cleanSource(src, what);
  const at = async (r: string): Promise<Source | undefined> => {
    const inRoot = await resolveInRoot(root, r, false);
    const abs = inRoot === '' ? root : path.join(root, inRoot);
    const st = await lstat(abs).catch(() => undefined);
    return st ? { rel: r, abs, stat: st } : undefined;
  };
  if (!GLOB.test(rel)) {
    const found = await at(rel);
    if (!found)
      throw invalid(`${what} failed: file not found in build context or excluded by .dockerignore: ${src}`);
    return [found];
  }
  const segs = rel.split('/');
  let found: string[] = [''];
  for (const seg of segs) {
    const next: string[] = [];
    for (const base of found) {
      if (!GLOB.test(seg)) {
        const p = base ? `${base}/${seg}` : seg;
        if (await at(p)) next.push(p);
        continue;
      }
      const re = segmentRegExp(seg);
      const dir = path.join(root, await resolveInRoot(root, base, true));
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const n of names.sort()) if (re.test(n)) next.push(base ? `${base}/${n}` : n);
    }
    found = next;
  }
  if (found.length === 0)
    throw invalid(`${what} failed: no source files were specified: ${src} matches nothing`);
  const out: Source[] = [];
  for (const f of found) {
    const s2 = await at(f);
    if (s2) out.push(s2);
  }
  return out;
}

async function fileHash(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) h.update(c);
  return h.digest('hex');
}

/**
 * The cache checksum of sources: every file's path (relative to its source), type, mode and
 * content (a symlink's target). Owners and times are left out, as Docker leaves them out.
 */
export async function checksumSources(sources: Source[]): Promise<string> {
  const h = createHash('sha256');
  const visit = async (abs: string, rel: string, st: Stats) => {
    h.update(`${rel}\0${st.mode.toString(8)}\0`);
    if (st.isSymbolicLink()) h.update(`link:${await readlink(abs)}\0`);
    else if (st.isFile()) h.update(`file:${await fileHash(abs)}\0`);
    else if (st.isDirectory()) {
      for (const n of (await readdir(abs)).sort()) {
        const p = path.join(abs, n);
        await visit(p, `${rel}/${n}`, await lstat(p));
      }
    }
  };
  for (const s of sources) await visit(s.abs, s.rel, s.stat);
  return h.digest('hex');
}

/** uid:gid for `--chown`, names looked up in the image's /etc/passwd and /etc/group. */
export async function resolveChown(
  chown: string,
  readImageFile: (p: string) => Promise<string | undefined>,
): Promise<{ uid: number; gid: number }> {
  const [user, group] = chown.split(':');
  const lookup = async (name: string, file: string, kind: string): Promise<number> => {
    if (/^\d+$/.test(name)) return Number(name);
    const text = (await readImageFile(file)) ?? '';
    for (const line of text.split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
    }
    throw invalid(`unable to find ${kind} ${name}: no matching entries in ${file}`);
  };
  if (!user) throw invalid(`invalid --chown "${chown}": use USER[:GROUP]`);
  const uid = await lookup(user, '/etc/passwd', 'user');
  let gid = uid;
  if (group) gid = await lookup(group, '/etc/group', 'group');
  else if (!/^\d+$/.test(user)) {
    // a user name without a group: the user's primary group
    const text = (await readImageFile('/etc/passwd')) ?? '';
    const f = text
      .split('\n')
      .find((l) => l.split(':')[0] === user)
      ?.split(':');
    if (f?.[3] && /^\d+$/.test(f[3])) gid = Number(f[3]);
  }
  return { uid, gid };
}

async function chownTree(p: string, uid: number, gid: number): Promise<void> {
  await lchown(p, uid, gid);
  const st = await lstat(p);
  if (st.isDirectory()) for (const n of await readdir(p)) await chownTree(path.join(p, n), uid, gid);
}

async function chmodTree(p: string, mode: number): Promise<void> {
  const st = await lstat(p);
  if (st.isSymbolicLink()) return;
  await chmod(p, mode);
  if (st.isDirectory()) for (const n of await readdir(p)) await chmodTree(path.join(p, n), mode);
}

/** Whether a file is a tar archive ADD unpacks (plain, gzip, bzip2 or xz). */
export async function isArchive(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(265);
    const { bytesRead } = await fh.read(b, 0, 265, 0);
    if (bytesRead >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true;
    if (bytesRead >= 3 && b.toString('latin1', 0, 3) === 'BZh') return true;
    if (bytesRead >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])))
      return true;
    return bytesRead >= 262 && b.toString('latin1', 257, 262) === 'ustar';
  } finally {
    await fh.close();
  }
}

export interface PlaceOptions {
  /** Absolute destination in the image (already joined with WORKDIR). */
  dest: string;
  /** The destination names a directory (ends with '/', or is one in the image). */
  destIsDir: boolean;
  owner: { uid: number; gid: number };
  chmod?: number;
  /** ADD: local tar archives are unpacked at the destination. */
  unpack: boolean;
  what: string;
}

/** Lays the sources out under `stage` as they will be in the image. */
export async function placeSources(stage: string, sources: Source[], o: PlaceOptions): Promise<void> {
  if (sources.length > 1 && !o.destIsDir)
    throw invalid(
      `${o.what} failed: with more than one source file, the destination must be a directory and end with a /`,
    );
  const destRel = o.dest.replace(/^\/+/, '');
  const touched: string[] = [];
  for (const s of sources) {
    if (s.stat.isDirectory()) {
      const target = path.join(stage, destRel);
      await mkdir(target, { recursive: true });
      for (const n of await readdir(s.abs)) {
        await cp(path.join(s.abs, n), path.join(target, n), {
          recursive: true,
          preserveTimestamps: true,
          verbatimSymlinks: true,
        });
        touched.push(path.join(target, n));
      }
      touched.push(target);
    } else if (o.unpack && s.stat.isFile() && (await isArchive(s.abs))) {
      const target = path.join(stage, destRel);
      await mkdir(target, { recursive: true });
      await run('tar', ['-x', '--no-same-owner', '-f', s.abs, '-C', target]).catch(
        (err: { stderr?: string }) => {
          throw invalid(
            `${o.what} failed: cannot unpack ${s.rel}: ${(err.stderr ?? '').trim().split('\n')[0]}`,
          );
        },
      );
      for (const n of await readdir(target)) touched.push(path.join(target, n));
    } else {
      const target = o.destIsDir
        ? path.join(stage, destRel, path.basename(s.rel))
        : path.join(stage, destRel);
      await mkdir(path.dirname(target), { recursive: true });
      await cp(s.abs, target, { preserveTimestamps: true, verbatimSymlinks: true });
      touched.push(target);
    }
  }
  for (const p of touched) {
    await chownTree(p, o.owner.uid, o.owner.gid);
    if (o.chmod !== undefined) await chmodTree(p, o.chmod);
  }
}
