import t from 'tap';
import { Parser, type ReadEntry } from 'tar';
import { buildTar, encodeHeader, padding } from './tar-writer.js';

interface Seen {
  path: string;
  type: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  linkpath?: string;
  body: string;
}

/** Parses a tar with node-tar (strict: any header problem fails the test). */
function parse(buf: Buffer): Promise<Seen[]> {
  return new Promise((resolve, reject) => {
    const seen: Seen[] = [];
    const p = new Parser({ strict: true });
    p.on('error', reject);
    p.on('entry', (e: ReadEntry) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () =>
        seen.push({
          path: e.path,
          type: e.type,
          mode: e.mode,
          uid: e.uid,
          gid: e.gid,
          size: e.size,
          mtime: e.mtime ? Math.floor(e.mtime.getTime() / 1000) : undefined,
          linkpath: e.linkpath,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    p.on('end', () => resolve(seen));
    p.end(buf);
  });
}

t.test('entries round-trip through a strict tar parser', async (t) => {
  const long = `${'deep/'.repeat(30)}file.txt`;
  const tar = buildTar([
    { entry: { path: 'etc', type: 'dir', mode: 0o755, mtime: 1700000000 } },
    {
      entry: { path: 'etc/passwd', type: 'file', mode: 0o600, uid: 1000, gid: 1001, mtime: 1700000001 },
      data: Buffer.from('root:x:0:0\n'),
    },
    { entry: { path: 'tmp/', type: 'dir', mode: 0o1777 } },
    { entry: { path: 'bin/sh', type: 'symlink', linkname: 'busybox' } },
    { entry: { path: 'bin/hard', type: 'hardlink', linkname: 'etc/passwd' } },
    { entry: { path: long, type: 'file' }, data: Buffer.from('long') },
    { entry: { path: 'x', type: 'symlink', linkname: `/${'t'.repeat(150)}` } },
    { entry: { path: 'caf\u00e9', type: 'file' }, data: Buffer.from('unicode') },
    { entry: { path: 'big-uid', type: 'file', uid: 4_000_000_000 }, data: Buffer.alloc(0) },
    { entry: { path: 'attr', type: 'file', pax: { 'SCHILY.xattr.user.k': 'v' } }, data: Buffer.from('a') },
  ]);
  t.equal(tar.length % 512, 0, 'whole blocks');
  t.ok(tar.subarray(-1024).equals(Buffer.alloc(1024)), 'ends with two zero blocks');
  t.equal(tar.length % 10240, 0, 'padded to whole 10 KiB records, as GNU tar writes');
  const seen = await parse(tar);
  t.same(
    seen.map((s) => [s.path, s.type]),
    [
      ['etc/', 'Directory'],
      ['etc/passwd', 'File'],
      ['tmp/', 'Directory'],
      ['bin/sh', 'SymbolicLink'],
      ['bin/hard', 'Link'],
      [long, 'File'],
      ['x', 'SymbolicLink'],
      ['caf\u00e9', 'File'],
      ['big-uid', 'File'],
      ['attr', 'File'],
    ],
  );
  const byPath = new Map(seen.map((s) => [s.path, s]));
  t.match(byPath.get('etc/passwd'), {
    mode: 0o600,
    uid: 1000,
    gid: 1001,
    mtime: 1700000001,
    body: 'root:x:0:0\n',
  });
  t.equal(byPath.get('tmp/')!.mode, 0o1777, 'sticky bit kept');
  t.equal(byPath.get('bin/sh')!.linkpath, 'busybox');
  t.equal(byPath.get('bin/hard')!.linkpath, 'etc/passwd');
  t.equal(byPath.get(long)!.body, 'long', 'long path via pax');
  t.equal(byPath.get('x')!.linkpath, `/${'t'.repeat(150)}`, 'long link target via pax');
  t.equal(byPath.get('caf\u00e9')!.body, 'unicode');
  t.equal(byPath.get('big-uid')!.uid, 4_000_000_000, 'uid beyond octal field via pax');
  t.equal(byPath.get('attr')!.body, 'a');
  // node-tar drops xattr records, so check the raw pax record (GNU tar reads it in test/images.test.ts)
  const rec = /(\d+)( SCHILY\.xattr\.user\.k=v\n)/.exec(tar.toString('latin1'));
  t.ok(rec, 'custom pax record written');
  t.equal(Number(rec![1]), rec![1]!.length + rec![2]!.length, 'pax record length counts itself');
});

t.test('output is deterministic and padded', async (t) => {
  const a = buildTar([{ entry: { path: 'f', type: 'file' }, data: Buffer.from('x') }]);
  const b = buildTar([{ entry: { path: 'f', type: 'file' }, data: Buffer.from('x') }]);
  t.ok(a.equals(b));
  t.equal(padding(0).length, 0);
  t.equal(padding(1).length, 511);
  t.equal(padding(512).length, 0);
  t.throws(() => encodeHeader({ path: 'f', type: 'file' }), /size missing/);
});
