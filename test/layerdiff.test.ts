/**
 * writeLayerFromDir on a real overlayfs upper dir (needs root): changes made through an overlay
 * mount become an OCI layer with AUFS-style whiteouts, checked with the `tar` npm parser, GNU tar
 * and a round trip through `tar -x --xattrs`.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, type Stats } from 'node:fs';
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Parser, type ReadEntry } from 'tar';
import { writeLayerFromDir } from '../src/engine/build/layerdiff.js';

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const run = (cmd: string, args: string[]) =>
  execFileSync(cmd, args, { maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } });

interface Listed {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkpath?: string;
  devmaj: number;
  devmin: number;
  content: Buffer;
}

/** Every entry of an uncompressed tar, in archive order, parsed by the `tar` npm package. */
async function listTar(tarBuf: Buffer): Promise<Listed[]> {
  const out: Listed[] = [];
  const parser = new Parser({ strict: true });
  const done = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
  });
  parser.on('entry', (e: ReadEntry) => {
    const chunks: Buffer[] = [];
    e.on('data', (c: Buffer) => chunks.push(c));
    e.on('end', () =>
      out.push({
        path: e.path,
        type: e.type,
        mode: e.header.mode ?? -1,
        uid: e.header.uid ?? -1,
        gid: e.header.gid ?? -1,
        size: e.size ?? 0,
        linkpath: e.linkpath,
        devmaj: e.header.devmaj,
        devmin: e.header.devmin,
        content: Buffer.concat(chunks),
      }),
    );
  });
  parser.end(tarBuf);
  await done;
  return out;
}

/** Depth-first order: compare path components bytewise, a directory before its content. */
function treeOrder(a: string, b: string): number {
  const pa = a.replace(/\/$/, '').split('/');
  const pb = b.replace(/\/$/, '').split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i]!), Buffer.from(pb[i]!));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

const xattrHex = (file: string, name: string) =>
  run('getfattr', ['-h', '--absolute-names', '-e', 'hex', '--only-values', '-n', name, file]).toString('hex');

/** A unique /tmp/tsswarm-test-ldiff-<hex>; removed at teardown (after unmounting what `mounts` holds). */
async function workDir(t: {
  teardown(fn: () => unknown): void;
}): Promise<{ top: string; mounts: Set<string> }> {
  const top = path.join('/tmp', `tsswarm-test-ldiff-${randomBytes(6).toString('hex')}`);
  await mkdir(top, { recursive: true });
  const mounts = new Set<string>();
  t.teardown(async () => {
    for (const m of mounts) {
      try {
        run('umount', [m]);
      } catch {
        run('umount', ['-l', m]);
      }
    }
    await rm(top, { recursive: true, force: true });
  });
  return { top, mounts };
}

t.test('an overlayfs upper dir becomes an OCI layer', async (t) => {
  const { top, mounts } = await workDir(t);
  const [L, U, W, M] = ['lower', 'upper', 'work', 'merged'].map((d) => path.join(top, d)) as [
    string,
    string,
    string,
    string,
  ];
  for (const d of [L, U, W, M]) await mkdir(d);

  // Lower: what the image already has.
  const lower: Record<string, string> = {
    'etc/motd': 'old motd\n',
    'etc/old.conf': 'to be deleted\n',
    'srv/keep.txt': 'kept\n',
    'srv/remove-me.txt': 'to be deleted too\n',
    'srv/opaque/old-1.txt': 'old 1\n',
    'srv/opaque/old-2.txt': 'old 2\n',
    'usr/bin/tool': '#!/bin/sh\necho tool\n',
  };
  for (const [p, c] of Object.entries(lower)) {
    await mkdir(path.dirname(path.join(L, p)), { recursive: true });
    await writeFile(path.join(L, p), c);
  }
  await mkdir(path.join(L, 'tmp'));

  const opts = `lowerdir=${L},upperdir=${U},workdir=${W}`;
  try {
    run('mount', ['-t', 'overlay', 'overlay', '-o', `${opts},index=off`, M]);
  } catch {
    run('mount', ['-t', 'overlay', 'overlay', '-o', opts, M]);
  }
  mounts.add(M);

  // Changes, as a RUN step would make them.
  const m = (p: string) => path.join(M, p);
  const big = randomBytes(3 * 1024 * 1024 + 123);
  const longRel = `deep/${'d'.repeat(70)}/${'f'.repeat(70)}.txt`;
  await writeFile(m('etc/motd'), 'new motd\n');
  await writeFile(m('srv/added.txt'), 'added\n');
  await writeFile(m('srv/héllo.txt'), 'non-ascii name\n');
  await mkdir(m('data'));
  await writeFile(m('data/big.bin'), big);
  await mkdir(path.dirname(m(longRel)), { recursive: true });
  await writeFile(m(longRel), 'long path\n');
  await symlink('../etc/motd', m('srv/link'));
  await writeFile(m('srv/hl-a'), 'hard linked\n');
  await link(m('srv/hl-a'), m('srv/hl-b'));
  await chmod(m('usr/bin/tool'), 0o4755);
  await writeFile(m('srv/owned.txt'), 'owned by app\n');
  await chown(m('srv/owned.txt'), 1000, 1000);
  await mkdir(m('srv/shared'), { mode: 0o755 });
  await chmod(m('srv/shared'), 0o3777);
  await rm(m('srv/remove-me.txt'));
  await rm(m('etc/old.conf'));
  await rm(m('srv/opaque'), { recursive: true });
  await mkdir(m('srv/opaque'));
  await writeFile(m('srv/opaque/new.txt'), 'new in the opaque dir\n');
  run('mkfifo', [m('srv/fifo')]);
  run('mknod', [m('srv/null'), 'c', '1', '3']);
  run('mknod', [m('srv/loop'), 'b', '7', '300']);
  await writeFile(m('usr/bin/capped'), 'capable\n');
  await chmod(m('usr/bin/capped'), 0o755);
  // cap_setuid (bit 7) permitted + effective, v2: a binary value with bytes >= 0x80 and NULs.
  run('setfattr', [
    '-n',
    'security.capability',
    '-v',
    '0x0100000280000000000000000000000000000000',
    m('usr/bin/capped'),
  ]);
  run('setfattr', ['-n', 'user.note', '-v', 'hello', m('srv/added.txt')]);
  run('setfattr', ['-n', 'user.long', '-v', 'on a long path', m(longRel)]);
  await writeFile(m('etc/hostname'), 'placeholder\n');
  await mkdir(m('tmp/cache/sub'), { recursive: true });
  await writeFile(m('tmp/cache/sub/x'), 'cache\n');
  await writeFile(m('tmp/kept'), 'tmp file\n');

  run('umount', [M]);
  mounts.delete(M);

  // The upper dir really holds overlayfs whiteouts and an opaque dir.
  const wst = await lstat(path.join(U, 'srv/remove-me.txt'));
  t.ok(wst.isCharacterDevice() && wst.rdev === 0, 'upper: the deleted file is a 0/0 char device');
  t.equal(
    xattrHex(path.join(U, 'srv/opaque'), 'trusted.overlay.opaque'),
    '79',
    'upper: srv/opaque is opaque',
  );
  t.notOk(existsSync(path.join(U, 'srv/keep.txt')), 'upper: untouched lower files are not in the upper dir');
  const capHex = xattrHex(path.join(U, 'usr/bin/capped'), 'security.capability');
  t.equal(capHex.length, 40, 'upper: the capability xattr is set');

  const excluded: Array<[string, Stats]> = [];
  const exclude = (rel: string, st: Stats) => {
    excluded.push([rel, st]);
    return rel === 'etc/hostname' || rel === 'tmp/cache';
  };
  const dest = path.join(top, 'layer.tar.gz');
  const blob = await writeLayerFromDir(U, dest, { exclude });

  // Hashes and sizes.
  const gz = await readFile(dest);
  const tarBuf = run('gunzip', ['-c', dest]);
  t.equal(blob.file, dest);
  t.equal(blob.digest, sha256(gz), 'digest is the sha256 of the blob');
  t.equal(blob.size, gz.length, 'size is the blob size');
  t.equal(blob.diffId, sha256(tarBuf), 'diffId is the sha256 of the uncompressed tar');
  t.equal(blob.tarSize, tarBuf.length, 'tarSize is the uncompressed size');
  t.equal(blob.tarSize % 10240, 0, 'the tar is padded to whole records');
  t.equal(blob.empty, false);

  // The exclude callback.
  const seen = excluded.map(([rel]) => rel);
  t.ok(
    seen.includes('etc/hostname') && seen.includes('tmp/cache'),
    'exclude sees the placeholder and the dir',
  );
  t.notOk(
    seen.some((rel) => rel.startsWith('tmp/cache/')),
    'an excluded directory is not descended into',
  );
  t.notOk(
    seen.some((rel) => rel.startsWith('/') || rel.startsWith('./') || rel.endsWith('/')),
    'exclude gets clean relative paths',
  );
  const whSeen = excluded.find(([rel]) => rel === 'srv/remove-me.txt');
  t.ok(whSeen?.[1].isCharacterDevice(), 'exclude sees a whiteout under the deleted name, with its stats');

  // Entries, as the tar npm parser sees them.
  const entries = await listTar(tarBuf);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const names = entries.map((e) => e.path);
  t.equal(new Set(names).size, names.length, 'no path is archived twice');
  t.notOk(
    names.some((n) => n.startsWith('/') || n.startsWith('./')),
    'paths are relative, without ./',
  );
  for (const gone of ['etc/hostname', 'tmp/cache/', 'tmp/cache/sub/', 'tmp/cache/sub/x', 'srv/keep.txt'])
    t.notOk(byPath.has(gone), `${gone} is not in the layer`);
  t.ok(byPath.has('tmp/kept'), 'siblings of excluded paths are kept');
  t.ok(
    names.indexOf('srv/') < names.indexOf('srv/added.txt') &&
      names.indexOf('etc/') < names.indexOf('etc/motd'),
    'directories come before their content',
  );
  const plain = names.filter((n) => !n.includes('.wh.'));
  t.same(plain, [...plain].sort(treeOrder), 'a depth-first walk, siblings sorted by their bytes');

  const motd = byPath.get('etc/motd');
  t.equal(motd?.type, 'File');
  t.equal(motd?.content.toString(), 'new motd\n', 'modified file content');
  t.equal(byPath.get('srv/héllo.txt')?.content.toString(), 'non-ascii name\n', 'non-ASCII name (pax path)');
  t.equal(byPath.get(longRel)?.content.toString(), 'long path\n', 'long path (pax path)');
  t.ok(byPath.get('data/big.bin')?.content.equals(big), 'a multi-MB file is archived whole');

  for (const wh of ['srv/.wh.remove-me.txt', 'etc/.wh.old.conf']) {
    const e = byPath.get(wh);
    t.equal(e?.type, 'File', `${wh}: whiteout is a regular file`);
    t.equal(e?.size, 0, `${wh}: empty`);
    t.equal(e?.mode, 0, `${wh}: mode 0`);
    t.equal(e?.uid, 0);
    t.equal(e?.gid, 0);
  }
  t.notOk(byPath.has('srv/remove-me.txt'), 'the whiteout device itself is not archived');

  const opq = names.indexOf('srv/opaque/');
  t.ok(opq >= 0, 'the recreated dir is archived');
  t.equal(names[opq + 1], 'srv/opaque/.wh..wh..opq', 'the opaque marker follows its dir');
  t.equal(byPath.get('srv/opaque/.wh..wh..opq')?.size, 0);
  t.equal(byPath.get('srv/opaque/new.txt')?.content.toString(), 'new in the opaque dir\n');
  t.notOk(byPath.has('srv/opaque/old-1.txt'), 'hidden lower content is not archived');

  t.equal(byPath.get('srv/hl-a')?.type, 'File', 'first hard link path is a file');
  t.equal(byPath.get('srv/hl-b')?.type, 'Link', 'second hard link path is a link entry');
  t.equal(byPath.get('srv/hl-b')?.linkpath, 'srv/hl-a', 'pointing at the first path');
  t.same(
    entries.filter((e) => e.type === 'Link').map((e) => e.path),
    ['srv/hl-b'],
    'no other hard links (whiteouts sharing an inode are not links)',
  );

  t.equal(byPath.get('usr/bin/tool')?.mode, 0o4755, 'setuid mode');
  t.equal(byPath.get('srv/shared/')?.mode, 0o3777, 'setgid + sticky dir mode');
  t.equal(byPath.get('srv/owned.txt')?.uid, 1000, 'uid');
  t.equal(byPath.get('srv/owned.txt')?.gid, 1000, 'gid');
  t.equal(byPath.get('srv/link')?.type, 'SymbolicLink');
  t.equal(byPath.get('srv/link')?.linkpath, '../etc/motd', 'symlink target');
  t.equal(byPath.get('srv/fifo')?.type, 'FIFO');
  t.equal(byPath.get('srv/null')?.type, 'CharacterDevice');
  t.same([byPath.get('srv/null')?.devmaj, byPath.get('srv/null')?.devmin], [1, 3], 'char device numbers');
  t.equal(byPath.get('srv/loop')?.type, 'BlockDevice');
  t.same([byPath.get('srv/loop')?.devmaj, byPath.get('srv/loop')?.devmin], [7, 300], 'block device numbers');

  // Xattrs in the raw tar: user.* and security.capability as pax records, never trusted.overlay.*.
  t.ok(tarBuf.includes('SCHILY.xattr.user.note=hello\n'), 'user xattr pax record');
  const capRecord = Buffer.concat([
    Buffer.from('SCHILY.xattr.security.capability='),
    Buffer.from(capHex, 'hex'),
    Buffer.from('\n'),
  ]);
  t.ok(tarBuf.includes(capRecord), 'security.capability pax record, raw bytes');
  t.notOk(tarBuf.includes('trusted.overlay'), 'no trusted.overlay.* xattr is archived');

  // GNU tar reads it.
  const listing = run('tar', ['-tvzf', dest]).toString();
  t.match(listing, /^hrw-r--r-- 0\/0 .* srv\/hl-b link to srv\/hl-a$/m, 'GNU tar: hard link');
  t.match(listing, /^-rwsr-xr-x 0\/0 .* usr\/bin\/tool$/m, 'GNU tar: setuid file');
  t.match(listing, /^-rw-r--r-- 1000\/1000 .* srv\/owned\.txt$/m, 'GNU tar: owner');
  t.match(listing, /^l.* srv\/link -> \.\.\/etc\/motd$/m, 'GNU tar: symlink');
  t.match(listing, /^---------- 0\/0 +0 .* srv\/\.wh\.remove-me\.txt$/m, 'GNU tar: whiteout file');
  const gnuNames = run('tar', ['--quoting-style=literal', '-tzf', dest])
    .toString()
    .split('\n')
    .filter(Boolean);
  t.same(gnuNames, names, 'GNU tar and the tar package list the same entries');

  // Same input, same layer.
  const again = await writeLayerFromDir(U, path.join(top, 'again.tar.gz'), { exclude });
  t.equal(again.diffId, blob.diffId, 'deterministic diffId');
  t.equal(again.digest, blob.digest, 'deterministic digest');

  // Without exclude the placeholders are archived.
  const all = await writeLayerFromDir(U, path.join(top, 'all.tar.gz'));
  const allNames = (await listTar(run('gunzip', ['-c', path.join(top, 'all.tar.gz')]))).map((e) => e.path);
  t.ok(allNames.includes('etc/hostname') && allNames.includes('tmp/cache/sub/x'), 'no exclude: everything');
  t.not(all.diffId, blob.diffId);

  // Round trip through GNU tar.
  const X = path.join(top, 'extracted');
  await mkdir(X);
  run('tar', ['-x', '--numeric-owner', '-p', '--xattrs', '--xattrs-include=*', '-f', dest, '-C', X]);
  const x = (p: string) => path.join(X, p);
  t.equal(await readFile(x('etc/motd'), 'utf8'), 'new motd\n', 'extracted: modified file');
  t.ok((await readFile(x('data/big.bin'))).equals(big), 'extracted: big file');
  t.equal(await readFile(x(longRel), 'utf8'), 'long path\n', 'extracted: long path');
  t.equal((await stat(x('usr/bin/tool'))).mode & 0o7777, 0o4755, 'extracted: setuid');
  t.equal((await stat(x('srv/shared'))).mode & 0o7777, 0o3777, 'extracted: setgid/sticky dir');
  const owned = await stat(x('srv/owned.txt'));
  t.same([owned.uid, owned.gid], [1000, 1000], 'extracted: owner');
  t.equal(await readlink(x('srv/link')), '../etc/motd', 'extracted: symlink');
  t.equal((await stat(x('srv/hl-a'))).ino, (await stat(x('srv/hl-b'))).ino, 'extracted: hard link');
  t.ok((await lstat(x('srv/fifo'))).isFIFO(), 'extracted: fifo');
  const nul = await lstat(x('srv/null'));
  t.ok(
    nul.isCharacterDevice() && nul.rdev === (await lstat(path.join(U, 'srv/null'))).rdev,
    'extracted: device',
  );
  t.equal((await lstat(x('srv/.wh.remove-me.txt'))).size, 0, 'extracted: whiteout marker file');
  t.ok(existsSync(x('srv/opaque/.wh..wh..opq')), 'extracted: opaque marker');
  t.equal(
    xattrHex(x('srv/added.txt'), 'user.note'),
    Buffer.from('hello').toString('hex'),
    'extracted: user xattr',
  );
  t.equal(
    xattrHex(x(longRel), 'user.long'),
    Buffer.from('on a long path').toString('hex'),
    'extracted: xattr + pax path',
  );
  t.equal(xattrHex(x('usr/bin/capped'), 'security.capability'), capHex, 'extracted: capability');
});

t.test('empty layers, gzip level, errors', async (t) => {
  const { top } = await workDir(t);
  const emptyDir = path.join(top, 'empty');
  await mkdir(emptyDir);
  const e = await writeLayerFromDir(emptyDir, path.join(top, 'empty.tar.gz'));
  t.equal(e.empty, true, 'an empty dir gives an empty layer');
  const eTar = run('gunzip', ['-c', path.join(top, 'empty.tar.gz')]);
  t.equal(run('tar', ['-tzf', path.join(top, 'empty.tar.gz')]).toString(), '', 'GNU tar: no entries');
  t.equal(e.diffId, sha256(eTar));
  t.equal(e.tarSize, eTar.length);
  t.ok(eTar.equals(Buffer.alloc(10240)), 'only the end-of-archive record');

  const some = path.join(top, 'some');
  await mkdir(path.join(some, 'etc'), { recursive: true });
  await writeFile(path.join(some, 'etc/hostname'), 'x\n');
  const ex = await writeLayerFromDir(some, path.join(top, 'ex.tar.gz'), { exclude: (rel) => rel === 'etc' });
  t.equal(ex.empty, true, 'everything excluded: empty');
  t.equal(ex.diffId, e.diffId, 'the same empty tar');

  const l6 = await writeLayerFromDir(some, path.join(top, 'l6.tar.gz'));
  const l0 = await writeLayerFromDir(some, path.join(top, 'l0.tar.gz'), { gzipLevel: 0 });
  t.equal(l6.empty, false);
  t.equal(l0.diffId, l6.diffId, 'gzip level does not change diffId');
  t.not(l0.digest, l6.digest, 'but changes the blob');
  t.ok(l0.size > l6.size, 'level 0 stores');

  // A redirected overlayfs dir (redirect_dir=on) cannot be diffed from the upper dir alone.
  const redir = path.join(top, 'redir');
  await mkdir(path.join(redir, 'moved'), { recursive: true });
  run('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/orig', path.join(redir, 'moved')]);
  const bad = path.join(top, 'bad.tar.gz');
  await t.rejects(writeLayerFromDir(redir, bad), { code: 'unsupported' }, 'redirect dirs are refused');
  t.notOk(existsSync(bad), 'no partial blob is left');

  await t.rejects(writeLayerFromDir(path.join(top, 'missing'), path.join(top, 'm.tar.gz')), {
    code: 'ENOENT',
  });
});
