import t from 'tap';
import { buildTar, encodeEntry, padding } from './tar-writer.js';
import { TarScanner } from './tarscan.js';

/** Scans `tar` fed in chunks of `size` bytes; returns the result and the problems reported. */
function scan(tar: Buffer, size: number) {
  const problems: string[] = [];
  const s = new TarScanner((why) => problems.push(why));
  for (let i = 0; i < tar.length; i += size) s.push(tar.subarray(i, i + size));
  return { ...s.finish(), problems };
}

const file = (path: string, data = 'x') => ({
  entry: { path, type: 'file' as const, size: data.length },
  data: Buffer.from(data),
});

t.test('names, whiteouts and entries, whatever the chunking', async (t) => {
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
  const tar = buildTar([
    { entry: { path: 'etc/', type: 'dir' } },
    file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'.repeat(50)),
    file(long, 'long name via pax'),
    { entry: { path: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' } },
    file('var/.wh.old'),
  ]);
  for (const size of [1, 7, 512, 513, 4096, tar.length]) {
    const r = scan(tar, size);
    t.equal(r.entries, 5, `entries (chunks of ${size})`);
    t.ok(r.hasWhiteouts, 'whiteout seen');
    t.same(r.problems, []);
  }
  t.notOk(scan(buildTar([file('a'), file('b/c')]), 100).hasWhiteouts, 'no whiteout');
});

t.test('unsafe names and broken headers are reported', async (t) => {
  t.match(scan(buildTar([file('/etc/shadow')]), 512).problems, [
    /unsafe path "\/etc\/shadow" \(absolute path\)/,
  ]);
  t.match(scan(buildTar([file('a/../../x')]), 512).problems, [
    /unsafe path "a\/..\/..\/x" \(contains ".."\)/,
  ]);
  t.match(
    scan(buildTar([{ entry: { path: 'h', type: 'hardlink', linkname: '../../etc/passwd' } }]), 512).problems,
    [/unsafe hard link target/],
  );
  const long = `${'x/'.repeat(60)}../../../escape`;
  t.match(scan(buildTar([file(long)]), 99).problems, [/unsafe path/], 'a pax name is checked too');
  const bad = buildTar([file('a')]);
  bad[0] = bad[0]! ^ 0xff;
  t.match(scan(bad, 512).problems, [/bad header checksum/]);
});

t.test('a pax size record gives the member its size (as Go writes big files)', async (t) => {
  const data = Buffer.alloc(600, 7);
  const tar = Buffer.concat([
    encodeEntry({ path: 'big', type: 'file', size: 0, pax: { size: String(data.length) } }),
    data,
    padding(data.length),
    buildTar([file('dir/.wh.gone')]),
  ]);
  const r = scan(tar, 100);
  t.same(r.problems, [], 'the content is skipped, not read as headers');
  t.equal(r.entries, 2);
  t.ok(r.hasWhiteouts, 'the member after it is seen');
});
