import t, { type Test } from 'tap';
import { TsswarmError } from '../../api/errors.js';
import {
  parseDescriptor,
  parseDockerManifest,
  parseImageConfig,
  parseOciIndex,
  parseOciManifest,
} from './oci.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

function badArchive(t: Test, fn: () => unknown, re: RegExp, what: string) {
  try {
    fn();
    t.fail(`${what}: should throw`);
  } catch (err) {
    t.ok(err instanceof TsswarmError && err.code === 'bad_archive', `${what}: bad_archive`);
    t.match((err as Error).message, /^invalid image archive: /, `${what}: prefixed`);
    t.match((err as Error).message, re, what);
    t.notMatch((err as Error).message, /\n/, `${what}: one line`);
  }
}

t.test('image config: runtime fields are picked and type-checked', async (t) => {
  const cfg = parseImageConfig(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: {
        Env: ['PATH=/bin'],
        Cmd: ['sh'],
        Entrypoint: null,
        WorkingDir: '/srv',
        User: 'app',
        Labels: { a: 'b' },
        StopSignal: 'SIGQUIT',
        ExposedPorts: { '80/tcp': {} },
        Volumes: { '/data': {} },
        Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9, Retries: 3 },
        AttachStdin: false,
        OnBuild: null,
      },
      rootfs: { type: 'layers', diff_ids: [D('1'), D('2')] },
    }),
  );
  t.same(cfg, {
    architecture: 'amd64',
    os: 'linux',
    created: '2024-01-01T00:00:00Z',
    config: {
      Env: ['PATH=/bin'],
      Cmd: ['sh'],
      WorkingDir: '/srv',
      User: 'app',
      Labels: { a: 'b' },
      StopSignal: 'SIGQUIT',
      ExposedPorts: { '80/tcp': {} },
      Volumes: { '/data': {} },
      Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9, Retries: 3 },
    },
    diffIds: [D('1'), D('2')],
  });
  t.notOk('AttachStdin' in cfg.config, 'unknown fields are dropped');
  t.same(parseImageConfig('{"rootfs":{"type":"layers","diff_ids":[]}}').config, {}, 'config may be absent');
});

t.test('image config: what is wrong is named', async (t) => {
  const rootfs = { type: 'layers', diff_ids: [] };
  badArchive(t, () => parseImageConfig('{'), /image config is not valid JSON/, 'bad json');
  badArchive(t, () => parseImageConfig('[]'), /image config is not an object/, 'array');
  badArchive(t, () => parseImageConfig('{}'), /has no rootfs/, 'no rootfs');
  badArchive(
    t,
    () => parseImageConfig('{"rootfs":{"type":"x","diff_ids":[]}}'),
    /rootfs.type is "x"/,
    'rootfs type',
  );
  badArchive(
    t,
    () => parseImageConfig('{"rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}'),
    /malformed diff_id/,
    'diff id',
  );
  badArchive(
    t,
    () => parseImageConfig(JSON.stringify({ rootfs, config: { Env: 'PATH=/bin' } })),
    /Env must be a list of strings/,
    'env',
  );
  badArchive(
    t,
    () => parseImageConfig(JSON.stringify({ rootfs, config: { Labels: { a: 1 } } })),
    /Labels must map strings/,
    'labels',
  );
  badArchive(
    t,
    () => parseImageConfig(JSON.stringify({ rootfs, config: { User: 0 } })),
    /User must be a string/,
    'user',
  );
  badArchive(t, () => parseImageConfig(JSON.stringify({ rootfs, os: 7 })), /os must be a string/, 'os');
  badArchive(
    t,
    () => parseImageConfig(JSON.stringify({ rootfs, config: { Healthcheck: { Interval: '5s' } } })),
    /Healthcheck.Interval must be a number/,
    'healthcheck',
  );
});

t.test('descriptors: sha256 only, sizes required', async (t) => {
  t.same(
    parseDescriptor(
      {
        mediaType: 'x',
        digest: D('a'),
        size: 3,
        annotations: { k: 'v' },
        platform: { os: 'linux', architecture: 'amd64', extra: 1 },
      },
      'd',
    ),
    {
      mediaType: 'x',
      digest: D('a'),
      size: 3,
      annotations: { k: 'v' },
      platform: { os: 'linux', architecture: 'amd64' },
    },
  );
  badArchive(
    t,
    () => parseDescriptor({ digest: `sha512:${'a'.repeat(128)}`, size: 1 }, 'desc'),
    /desc uses unsupported digest/,
    'sha512',
  );
  badArchive(
    t,
    () => parseDescriptor({ digest: 'sha256:abc', size: 1 }, 'desc'),
    /malformed digest/,
    'short',
  );
  badArchive(t, () => parseDescriptor({ digest: D('a') }, 'desc'), /no valid size/, 'size');
  badArchive(t, () => parseDescriptor({ digest: D('a'), size: -1 }, 'desc'), /no valid size/, 'negative');
  badArchive(
    t,
    () => parseDescriptor({ digest: D('a'), size: 1, annotations: { k: 1 } }, 'desc'),
    /malformed annotations/,
    'annotations',
  );
});

t.test('index and manifest documents', async (t) => {
  const idx = parseOciIndex({ schemaVersion: 2, manifests: [{ mediaType: 'm', digest: D('b'), size: 9 }] });
  t.equal(idx.manifests.length, 1);
  badArchive(
    t,
    () => parseOciIndex({ schemaVersion: 1, manifests: [] }),
    /schemaVersion 1, expected 2/,
    'version',
  );
  badArchive(t, () => parseOciIndex({ schemaVersion: 2 }), /no manifests list/, 'no manifests');
  badArchive(
    t,
    () => parseOciIndex({ schemaVersion: 2, manifests: [{ size: 1 }] }),
    /index.json manifests\[0\] has no digest/,
    'entry',
  );
  const m = parseOciManifest(
    { schemaVersion: 2, config: { digest: D('c'), size: 1 }, layers: [{ digest: D('d'), size: 2 }] },
    'manifest X',
  );
  t.equal(m.layers[0]!.digest, D('d'));
  badArchive(
    t,
    () => parseOciManifest({ schemaVersion: 2, layers: [] }, 'manifest X'),
    /manifest X config is not a descriptor/,
    'no config',
  );
});

t.test('docker manifest.json', async (t) => {
  t.same(parseDockerManifest([{ Config: 'c.json', RepoTags: null, Layers: ['a/layer.tar'] }]), [
    { Config: 'c.json', RepoTags: [], Layers: ['a/layer.tar'] },
  ]);
  badArchive(t, () => parseDockerManifest({}), /manifest.json is not a list/, 'object');
  badArchive(t, () => parseDockerManifest([{ Layers: [] }]), /entry 0 has no Config/, 'config');
  badArchive(t, () => parseDockerManifest([{ Config: 'c', Layers: [1] }]), /entry 0 has no Layers/, 'layers');
  badArchive(
    t,
    () => parseDockerManifest([{ Config: 'c', Layers: [], RepoTags: 'x' }]),
    /malformed RepoTags/,
    'tags',
  );
});
