import t, { type Test } from 'tap';
import { cleanPath, parseDockerignore } from './dockerignore.js';

/** Asserts which of the paths are ignored (true) or not (false). */
function check(t: Test, text: string, expected: Record<string, boolean>): void {
  const m = parseDockerignore(text);
  for (const [path, ignored] of Object.entries(expected)) {
    t.equal(m.ignored(path), ignored, `${JSON.stringify(text)}: ${path} ${ignored ? 'ignored' : 'kept'}`);
  }
}

t.test('comments, blank lines, cleaning, leading slash', async (t) => {
  const m = parseDockerignore('\uFEFF# comment\n\n   \n  spaced  \n/abs\n./dot/x/../y/\n!/neg/\n #x\n');
  t.same(m.rules, [
    { pattern: 'spaced', exception: false },
    { pattern: 'abs', exception: false },
    { pattern: 'dot/y', exception: false },
    { pattern: 'neg', exception: true },
    { pattern: '#x', exception: false },
  ]);
  check(t, '# comment\n/abs\n./dot/x/../y/\n #x\n', {
    abs: true,
    'abs/file': true,
    'dot/y/z': true,
    'dot/x': false,
    '#x': true,
    '# comment': false,
    comment: false,
  });
  t.same(parseDockerignore('').rules, []);
  t.notOk(parseDockerignore('').ignored('anything'));
});

t.test('the path given is normalised', async (t) => {
  check(t, 'a/b\n', {
    './a/b': true,
    '/a/b/c': true,
    'a//b': true,
    'a/./b': true,
    'a/b/': true,
    a: false,
    '.': false,
  });
});

t.test('*, ? and character classes stay within one segment', async (t) => {
  check(t, '*.md\ntemp?\n[a-c].txt\n[^x]y\n', {
    'README.md': true,
    'docs/README.md': false,
    'temp1/file': true,
    temp12: false,
    temp: false,
    'b.txt': true,
    'd.txt': false,
    ay: true,
    xy: false,
    'dir/ay': false,
  });
  check(t, 'a*/b\n', { 'abc/b': true, 'a/b': true, 'a/x/b': false });
  check(t, 'x[/]y\n', { 'x/y': false });
});

t.test('** matches any number of directories', async (t) => {
  check(t, '**/*.go\n', { 'main.go': true, 'a/b/c/x.go': true, 'a/b/c/x.goo': false, 'vendor/x.go/f': true });
  check(t, 'a/**/b\n', { 'a/b': true, 'a/x/b': true, 'a/x/y/b/c': true, 'a/xb': false, 'c/a/b': false });
  check(t, 'foo/**\n', { 'foo/x': true, 'foo/x/y': true, foo: false, foobar: false });
  check(t, '**\n', { a: true, 'a/b': true });
  check(t, '**/node_modules\n', {
    node_modules: true,
    'a/node_modules/x/y': true,
    'a/my_node_modules': false,
  });
});

t.test('escapes and literal special characters', async (t) => {
  check(t, '\\*.txt\nfile(1).c\na+b\n\\[x\\]\n', {
    '*.txt': true,
    'a.txt': false,
    'file(1).c': true,
    'file1.c': false,
    'a+b': true,
    aab: false,
    '[x]': true,
    x: false,
  });
  check(t, 'a.b\n', { 'a.b': true, axb: false });
  check(t, '[a\\-c]\n', { a: true, '-': true, c: true, b: false });
});

t.test('a directory pattern excludes everything beneath it', async (t) => {
  check(t, 'node_modules\nbuild/out\n', {
    node_modules: true,
    'node_modules/a/b/c.js': true,
    'sub/node_modules': false,
    'build/out/x': true,
    'build/other': false,
    build: false,
  });
  check(t, 'Dockerfile\n.dockerignore\n', { Dockerfile: true, '.dockerignore': true });
});

t.test('exceptions: the last matching rule wins, a parent match counts', async (t) => {
  check(t, '*.md\n!README.md\n', { 'README.md': false, 'CHANGES.md': true, 'docs/a.md': false });
  check(t, '**/*.md\n!README.md\n', { 'README.md': false, 'docs/README.md': true });
  check(t, '!keep.md\n*.md\n', { 'keep.md': true });
  check(t, '*\n!src\n', { src: false, 'src/a/b.ts': false, lib: true, 'lib/x': true });
  check(t, 'build\n!build/keep\n', {
    build: true,
    'build/keep': false,
    'build/keep/deep/x': false,
    'build/other': true,
    'build/keeper': true,
  });
  check(t, 'build\n!build/keep\nbuild/keep/tmp\n', { 'build/keep/a': false, 'build/keep/tmp/a': true });
  check(t, '*\n!*/\n', { a: false, 'b/c': false }); // !*/ is cleaned to !*
  check(t, 'docs\n!docs/**/*.md\n', { 'docs/a.md': false, 'docs/x/y/b.md': false, 'docs/x/c.txt': true });
});

t.test('mayIncludeUnder: false only when nothing below can be re-included', async (t) => {
  const none = parseDockerignore('node_modules\n*.log\n');
  t.notOk(none.mayIncludeUnder('node_modules'), 'no exceptions: prune');
  t.ok(none.mayIncludeUnder('src'), 'not ignored: walk it');

  const m = parseDockerignore('build\n!build/keep\n!docs/x\ntmp\n');
  t.ok(m.mayIncludeUnder('build'), 'build/keep can come back');
  t.notOk(m.mayIncludeUnder('build/other'), 'build/keep does not match build/other');
  t.ok(m.mayIncludeUnder('build/keep'), 'not ignored itself');
  t.notOk(m.mayIncludeUnder('tmp'), 'no exception after the last rule matching tmp');

  const any = parseDockerignore('vendor\n!**/LICENSE\ntmp\n');
  t.ok(any.mayIncludeUnder('vendor'), '**/LICENSE could match below vendor');
  t.ok(any.mayIncludeUnder('vendor/a/b'), 'and at any depth');
  t.notOk(any.mayIncludeUnder('tmp'), 'the exception comes before tmp');
  t.notOk(any.ignored('vendor/a/LICENSE'));
  t.ok(any.ignored('vendor/a/b'));
  t.ok(any.ignored('tmp/LICENSE'));

  const before = parseDockerignore('!build/keep\nbuild\n');
  t.notOk(before.mayIncludeUnder('build'), 'an exception before the exclusion cannot re-include');
  t.ok(before.ignored('build/keep/x'));

  const wild = parseDockerignore('*\n!*/src\n');
  t.ok(wild.mayIncludeUnder('pkg'), 'a wildcard segment matching the directory');
  t.notOk(wild.mayIncludeUnder('pkg/lib'), 'src is not lib');
  t.ok(wild.mayIncludeUnder('pkg/src'), 'not ignored');
  t.notOk(wild.ignored('pkg/src/a.ts'));

  // Consistency: whenever mayIncludeUnder says false, every path below is ignored.
  const paths = [
    'build/other/a',
    'build/keep/a',
    'tmp/x/y',
    'vendor/LICENSE',
    'vendor/a/b',
    'docs/x/1',
    'docs/y',
  ];
  let pruned = 0;
  for (const matcher of [m, any, wild, none]) {
    for (const p of paths) {
      for (let at = p.indexOf('/'); at >= 0; at = p.indexOf('/', at + 1)) {
        const dir = p.slice(0, at);
        if (matcher.mayIncludeUnder(dir)) continue;
        pruned++;
        t.ok(matcher.ignored(p), `${p} is ignored, as ${dir} was pruned`);
      }
    }
  }
  t.ok(pruned > 3, 'some directories were pruned');
});

t.test('bad patterns are invalid with their line', async (t) => {
  t.throws(() => parseDockerignore('a\n!\n'), {
    code: 'invalid_argument',
    message: '.dockerignore:2: illegal exclusion pattern: "!"',
  });
  t.throws(() => parseDockerignore('# c\n[abc\n', 'ctx/.dockerignore'), {
    code: 'invalid_argument',
    message: /^ctx\/\.dockerignore:2: syntax error in pattern "\[abc"/,
  });
  t.throws(() => parseDockerignore('[z-a]\n'), { message: /^\.dockerignore:1: syntax error in pattern/ });
});

t.test('cleanPath is Go path.Clean', async (t) => {
  const cases: Array<[string, string]> = [
    ['', '.'],
    ['.', '.'],
    ['a/', 'a'],
    ['./a//b/./c/', 'a/b/c'],
    ['a/../..', '..'],
    ['../a/../../b', '../../b'],
    ['/../a', '/a'],
    ['/', '/'],
    ['//a/b/..', '/a'],
  ];
  for (const [input, want] of cases) t.equal(cleanPath(input), want, input);
});
