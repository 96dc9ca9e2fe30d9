import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import {
  digestHex,
  familiarName,
  isHexIdPrefix,
  normalizeTag,
  parseReference,
  qualifiedTag,
  shortId,
  tagOf,
} from './reference.js';

const HEX = 'a'.repeat(64);

t.test('official images normalize to their familiar name', async (t) => {
  for (const ref of [
    'busybox',
    'busybox:latest',
    'library/busybox',
    'docker.io/library/busybox:latest',
    'index.docker.io/library/busybox',
  ]) {
    t.equal(normalizeTag(ref), 'busybox:latest', ref);
  }
  t.same(parseReference('busybox'), { domain: 'docker.io', path: 'library/busybox' });
});

t.test('user repositories, registries and ports keep their parts', async (t) => {
  t.equal(normalizeTag('user/app'), 'user/app:latest');
  t.equal(normalizeTag('docker.io/user/app:v1'), 'user/app:v1');
  t.equal(normalizeTag('localhost/app'), 'localhost/app:latest');
  t.equal(
    normalizeTag('registry.example.com:5000/team/app:1.2.3'),
    'registry.example.com:5000/team/app:1.2.3',
  );
  t.same(parseReference('registry:5000/a/b:c'), { domain: 'registry:5000', path: 'a/b', tag: 'c' });
  // a first component without '.', ':' or 'localhost' is a path component, not a host
  t.same(parseReference('team/app'), { domain: 'docker.io', path: 'team/app' });
  t.equal(familiarName({ domain: 'docker.io', path: 'library/a/b' }), 'library/a/b');
});

t.test('tags and digests', async (t) => {
  t.same(parseReference(`app:v1@sha256:${HEX}`), {
    domain: 'docker.io',
    path: 'library/app',
    tag: 'v1',
    digest: `sha256:${HEX}`,
  });
  t.equal(tagOf('registry:5000/app:v2'), 'v2');
  t.equal(qualifiedTag('busybox'), 'docker.io/library/busybox:latest');
  t.equal(qualifiedTag('reg.io/x/y:z'), 'reg.io/x/y:z');
  t.equal(normalizeTag('app:V1_2.3-rc'), 'app:V1_2.3-rc', 'tags may contain uppercase, _, . and -');
  t.throws(() => normalizeTag(`app@sha256:${HEX}`), /cannot contain a digest/);
});

t.test('malformed references are invalid_argument with the reason', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty reference/],
    ['Busybox', /must be lowercase/],
    ['app:', /invalid tag ""/],
    ['app:-bad', /invalid tag "-bad"/],
    [`app:${'x'.repeat(129)}`, /invalid tag/],
    ['a//b', /invalid repository name component ""/],
    ['a/-b', /invalid repository name component "-b"/],
    ['app@sha256:xyz', /digest must be/],
    ['app@md5:abcd', /digest must be/],
    [HEX, /image ID, not a repository name/],
    ['bad_host.com:99999x/app', /invalid/],
    [`${'a'.repeat(256)}`, /longer than 255/],
  ];
  for (const [ref, re] of cases) {
    try {
      parseReference(ref);
      t.fail(`"${ref}" should be refused`);
    } catch (err) {
      t.ok(err instanceof TsswarmError && err.code === 'invalid_argument', `"${ref}" is invalid_argument`);
      t.match((err as Error).message, re, ref);
    }
  }
});

t.test('separators inside path components follow Docker', async (t) => {
  for (const ok of ['a_b', 'a__b', 'a.b', 'a-b', 'a---b', 'a0/b1-c'])
    t.doesNotThrow(() => parseReference(ok), ok);
  for (const bad of ['a___b', 'a..b', 'a_', '_a', 'a.', 'a-']) t.throws(() => parseReference(bad), bad);
});

t.test('ID helpers', async (t) => {
  t.ok(isHexIdPrefix('abcd'));
  t.ok(isHexIdPrefix(HEX));
  t.notOk(isHexIdPrefix('abc'), 'shorter than 4');
  t.notOk(isHexIdPrefix('abcg'), 'not hex');
  t.notOk(isHexIdPrefix('ABCD'), 'IDs are lowercase');
  t.equal(shortId(`sha256:${HEX}`), 'aaaaaaaaaaaa');
  t.equal(digestHex(`sha256:${HEX}`), HEX);
  t.throws(() => digestHex('sha256:abc'));
});
