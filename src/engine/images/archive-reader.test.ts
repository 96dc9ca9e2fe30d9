import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import { StagedArchive, safeMemberPath } from './archive-reader.js';

t.test('member names are normalized', async (t) => {
  t.equal(safeMemberPath('./manifest.json'), 'manifest.json');
  t.equal(safeMemberPath('blobs//sha256/./abc/'), 'blobs/sha256/abc');
  t.equal(safeMemberPath('./'), undefined, 'the archive root');
  t.equal(safeMemberPath('a..b/c...'), 'a..b/c...', 'dots inside names are fine');
});

t.test('absolute names and .. components are refused', async (t) => {
  for (const [name, re] of [
    ['/etc/passwd', /unsafe absolute path "\/etc\/passwd"/],
    ['../x', /unsafe path "\.\.\/x" \(contains "\.\."\)/],
    ['a/../../x', /unsafe path/],
    ['a/..', /unsafe path/],
    ['C:\\x', /unsafe absolute path/],
  ] as const) {
    try {
      safeMemberPath(name);
      t.fail(`${name} should be refused`);
    } catch (err) {
      t.ok(err instanceof TsswarmError && err.code === 'bad_archive', `${name}: bad_archive`);
      t.match((err as Error).message, re, name);
    }
  }
});

t.test('lookups follow links inside the archive and stop on loops', async (t) => {
  const s = new StagedArchive();
  const f = { file: '/staging/f0', sha256: 'a'.repeat(64), size: 1 };
  s.files.set('one/layer.tar', f);
  s.links.set('two/layer.tar', 'one/layer.tar');
  s.links.set('three/layer.tar', 'two/layer.tar');
  s.links.set('loop/a', 'loop/b');
  s.links.set('loop/b', 'loop/a');
  t.equal(s.get('./one/layer.tar'), f);
  t.equal(s.get('three/layer.tar'), f, 'chains of links');
  t.equal(s.get('loop/a'), undefined, 'a loop finds nothing');
  t.equal(s.get('missing'), undefined);
  t.same(s.membersUnder('one').sort(), ['one/layer.tar']);
});
