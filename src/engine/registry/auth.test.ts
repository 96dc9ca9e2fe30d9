import t from 'tap';
import {
  basicHeader,
  decodeAuthHeader,
  decodeRegistryConfig,
  encodeAuthHeader,
  parseChallenges,
  repositoryScope,
} from './auth.js';
import { parsePlatform, pickPlatform } from './pull.js';

t.test('WWW-Authenticate challenges', async (t) => {
  t.same(
    parseChallenges(
      'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"',
    ),
    [
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example/token',
          service: 'registry.example',
          scope: 'repository:a/b:pull',
        },
      },
    ],
  );
  t.same(parseChallenges('Basic realm="tsswarm-test"'), [
    { scheme: 'basic', params: { realm: 'tsswarm-test' } },
  ]);
  t.same(
    parseChallenges('Basic realm="a, \\"quoted\\"", Bearer realm=https://t/x,service=s'),
    [
      { scheme: 'basic', params: { realm: 'a, "quoted"' } },
      { scheme: 'bearer', params: { realm: 'https://t/x', service: 's' } },
    ],
    'quoted commas and escapes; unquoted values; two challenges',
  );
  t.same(parseChallenges('Bearer scope="repository:a:pull,push"'), [
    { scheme: 'bearer', params: { scope: 'repository:a:pull,push' } },
  ]);
  t.same(parseChallenges(''), []);
});

t.test('credentials on the wire', async (t) => {
  t.equal(
    basicHeader({ username: 'u', password: 'p:w' }),
    `Basic ${Buffer.from('u:p:w').toString('base64')}`,
  );
  t.equal(basicHeader(undefined), undefined);
  t.equal(basicHeader({ identityToken: 'x' }), undefined, 'a token is not sent as Basic');
  t.equal(repositoryScope('a/b', ['pull', 'push']), 'repository:a/b:pull,push');
  const enc = encodeAuthHeader({ username: 'alice', password: 's3cret' });
  t.same(decodeAuthHeader(enc), { username: 'alice', password: 's3cret' }, 'round trip');
  t.equal(decodeAuthHeader(undefined), undefined);
  t.equal(decodeAuthHeader(Buffer.from('{}').toString('base64url')), undefined, 'empty credentials are none');
  t.throws(() => decodeAuthHeader('%%%not-base64'), /X-Registry-Auth header is not base64 JSON/);
  t.throws(() => decodeAuthHeader(Buffer.from('"str"').toString('base64url')), /not a JSON object/);
  const cfg = Buffer.from(JSON.stringify({ 'r:5000': { username: 'a', password: 'b' }, 'x:1': {} })).toString(
    'base64url',
  );
  t.same(
    decodeRegistryConfig(cfg),
    { 'r:5000': { username: 'a', password: 'b' } },
    'X-Registry-Config per host',
  );
  t.same(decodeRegistryConfig(undefined), {});
});

t.test('platforms: --platform and picking from an index', async (t) => {
  t.same(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  t.same(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  for (const bad of ['amd64', 'linux/', 'linux/amd64/v1/x', 'Linux/AMD64'])
    t.throws(() => parsePlatform(bad), /invalid platform/, bad);
  const m = (arch: string, variant?: string, mediaType = 'application/vnd.oci.image.manifest.v1+json') => ({
    mediaType,
    digest: `sha256:${arch}${variant ?? ''}`,
    size: 1,
    platform: { os: 'linux', architecture: arch, ...(variant ? { variant } : {}) },
  });
  const list = [m('arm', 'v6'), m('arm', 'v7'), m('amd64'), m('arm64', 'v8')];
  t.equal(pickPlatform(list, { os: 'linux', architecture: 'amd64' })?.digest, 'sha256:amd64');
  t.equal(pickPlatform(list, { os: 'linux', architecture: 'arm', variant: 'v7' })?.digest, 'sha256:armv7');
  t.equal(
    pickPlatform(list, { os: 'linux', architecture: 'arm64' })?.digest,
    'sha256:arm64v8',
    'no variant asked: any',
  );
  t.equal(pickPlatform(list, { os: 'windows', architecture: 'amd64' }), undefined);
  t.equal(
    pickPlatform([m('amd64', undefined, 'application/vnd.in-toto+json')], {
      os: 'linux',
      architecture: 'amd64',
    }),
    undefined,
    'attestations are not images',
  );
});
