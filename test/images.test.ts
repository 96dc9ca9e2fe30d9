/**
 * Image store against real archives, real GNU tar, real files (run as root).
 * Whiteout conversion uses the real helper: $TSSWARM_SHIM or <repo>/build/tsswarm-shim.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { TsswarmError } from '../src/api/errors.js';
import { ImageStore } from '../src/engine/images/store.js';
import { buildTar } from '../src/engine/images/tar-writer.js';
import {
  BASE_CONFIG,
  BASE_NAME,
  buildImage,
  buildLayer,
  buildTestImages,
  COW,
  COW_NAME,
  makeImage,
  rawLayer,
  shimPath,
  type TestImages,
  tempDir,
  writeDockerArchive,
  writeOciArchive,
} from './lib/images.js';

const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const hex = (id: string) => id.replace(/^sha256:/, '');

interface Ctx {
  dir: string;
  imgs: TestImages;
  root: string;
  store: ImageStore;
}

async function setup(t: Test): Promise<Ctx> {
  const dir = await tempDir(t, 'images');
  const imgs = await buildTestImages(path.join(dir, 'archives'));
  const root = path.join(dir, 'store');
  const store = new ImageStore({ root, shimPath: shimPath() });
  await store.init();
  return { dir, imgs, root, store };
}

/** Every path under `root` with type, mode, owner, size, device and content hash — for before/after comparison. */
async function listing(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string) => {
    const st = await lstat(p);
    const rel = path.relative(root, p) || '.';
    let extra = '';
    if (st.isFile()) extra = sha256(await readFile(p));
    else if (st.isSymbolicLink()) extra = `-> ${await readlink(p)}`;
    else if (st.isCharacterDevice()) extra = `dev ${st.rdev}`;
    out.push(`${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '' : st.size} ${extra}`);
    if (st.isDirectory()) for (const e of (await readdir(p)).sort()) await walk(path.join(p, e));
  };
  await walk(root);
  return out;
}

async function layerCount(root: string): Promise<number> {
  return (await readdir(path.join(root, 'layers'))).length;
}

async function expectBadArchive(t: Test, p: Promise<unknown>, re: RegExp, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: load should fail`);
  } catch (err) {
    t.ok(err instanceof TsswarmError, `${what}: typed error`);
    t.equal((err as TsswarmError).code, 'bad_archive', `${what}: bad_archive`);
    t.match((err as Error).message, /^invalid image archive: /, `${what}: says the archive is invalid`);
    t.notMatch((err as Error).message, /\n/, `${what}: one line`);
    t.match((err as Error).message, re, `${what}: says what is wrong`);
  }
}

t.test('loads an OCI layout archive and unpacks its layer', async (t) => {
  const { imgs, root, store } = await setup(t);
  const [rec, ...more] = await store.load(imgs.base.ociArchive);
  t.equal(more.length, 0);
  t.same(rec, {
    id: imgs.base.id,
    repoTags: [BASE_NAME],
    created: '2024-01-01T00:00:00Z',
    architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    os: 'linux',
    size: imgs.base.size,
    layers: imgs.base.diffIds,
    config: BASE_CONFIG,
  });
  t.same(store.list(), [rec]);
  const [dir] = store.layerDirs(imgs.base.id);
  t.equal(dir, path.join(root, 'layers', hex(imgs.base.diffIds[0]!)));
  const bb = await stat(path.join(dir!, 'bin/busybox'));
  t.equal(bb.mode & 0o777, 0o755, 'busybox executable');
  t.equal(bb.size, (await stat('/bin/busybox')).size);
  t.equal(await readlink(path.join(dir!, 'bin/sh')), 'busybox', 'applet symlink');
  t.equal((await stat(path.join(dir!, 'tmp'))).mode & 0o7777, 0o1777, 'sticky /tmp');
  t.equal((await stat(path.join(dir!, 'root'))).mode & 0o777, 0o700);
  const home = await stat(path.join(dir!, 'home/app'));
  t.same([home.uid, home.gid], [1000, 1000], 'numeric owner kept');
  t.match(await readFile(path.join(dir!, 'etc/passwd'), 'utf8'), /^app:x:1000:1000:/m);
  // the busybox in the layer runs
  const { stdout } = await run(path.join(dir!, 'bin/busybox'), ['echo', 'hello']);
  t.equal(stdout, 'hello\n');
  // blobs are stored as received, named by their digest: gzip layer + config + manifest
  const blobs = await readdir(path.join(root, 'blobs/sha256'));
  t.equal(blobs.length, 3);
  for (const b of blobs)
    t.equal(sha256(await readFile(path.join(root, 'blobs/sha256', b))), b, `blob ${b} content-addressed`);
  t.ok(blobs.includes(hex(imgs.base.id)), 'config blob kept under the image id');
  t.same(await readdir(path.join(root, 'tmp')), [], 'no staging left');
});

t.test('loads a legacy docker save archive; the shared base layer is unpacked once', async (t) => {
  const { imgs, root, store } = await setup(t);
  await store.load(imgs.base.dockerArchive);
  const baseDir = store.layerDirs(imgs.base.id)[0]!;
  const before = await stat(baseDir);
  const beforeFile = await stat(path.join(baseDir, 'etc/motd'));
  t.equal(await layerCount(root), 1);

  const [cow] = await store.load(imgs.cow.dockerArchive);
  t.equal(cow!.id, imgs.cow.id);
  t.same(cow!.repoTags, [COW_NAME]);
  t.same(cow!.layers, imgs.cow.diffIds);
  t.same(cow!.config.Labels, { 'org.tsswarm.test': 'cow' });
  t.equal(await layerCount(root), 2, 'two layers for two images sharing one');
  const dirs = store.layerDirs(imgs.cow.id);
  t.equal(dirs.length, 2);
  t.equal(dirs[1], baseDir, 'bottom layer of cow is the base layer dir');
  const after = await stat(baseDir);
  t.equal(after.ino, before.ino, 'base layer dir not replaced');
  t.equal(after.ctimeMs, before.ctimeMs, 'base layer dir not touched');
  t.equal(
    (await stat(path.join(baseDir, 'etc/motd'))).ino,
    beforeFile.ino,
    'base layer files not re-extracted',
  );
  t.equal(
    await readFile(path.join(dirs[0]!, 'etc/motd'), 'utf8'),
    COW.modified.after,
    'top layer has the modified file',
  );
  t.equal(
    await readFile(path.join(baseDir, 'etc/motd'), 'utf8'),
    COW.modified.before,
    'base layer unchanged',
  );
});

t.test('whiteouts become 0/0 char devices and opaque dirs get the overlay xattr', async (t) => {
  const { imgs, store } = await setup(t);
  await store.load(imgs.cow.ociArchive);
  const [top, base] = store.layerDirs(imgs.cow.id);
  const wh = await lstat(path.join(top!, COW.deleted.path));
  t.ok(wh.isCharacterDevice(), 'whiteout is a char device');
  t.equal(wh.rdev, 0, 'device 0/0');
  const opaque = path.join(top!, COW.opaque.dir);
  const { stdout } = await run('getfattr', [
    '--absolute-names',
    '-n',
    'trusted.overlay.opaque',
    '--only-values',
    opaque,
  ]);
  t.equal(stdout, 'y', 'trusted.overlay.opaque=y');
  const names = await readdir(path.join(top!, 'srv'));
  t.same(
    names.filter((n) => n.startsWith('.wh.')),
    [],
    'no .wh. files left',
  );
  t.same(await readdir(opaque), ['new.txt'], 'opaque dir keeps only its own files');
  t.equal(await readFile(path.join(top!, COW.added.path), 'utf8'), COW.added.content);
  // the lower layer is left alone
  t.equal(await readFile(path.join(base!, COW.deleted.path), 'utf8'), COW.deleted.content);
  t.same((await readdir(path.join(base!, COW.opaque.dir))).sort(), ['old-1.txt', 'old-2.txt']);
  await t.rejects(
    run('getfattr', ['--absolute-names', '-n', 'trusted.overlay.opaque', path.join(base!, COW.opaque.dir)]),
  );
});

t.test('every archive form loads to the same image IDs', async (t) => {
  const { dir, imgs } = await setup(t);
  const a = path.join(dir, 'extra');
  const cowImg = buildImage({
    name: COW_NAME,
    layers: imgs.cow.layers,
    config: { ...BASE_CONFIG, Labels: { 'org.tsswarm.test': 'cow' } },
  });
  t.equal(cowImg.id, imgs.cow.id, 'helper is deterministic');
  const forms: Array<[string, string]> = [
    ['both, OCI, gzip layers', imgs.both.ociArchive],
    ['both, docker legacy, symlinked shared layer', imgs.both.dockerArchive],
  ];
  const docker25 = path.join(a, 'docker25.tar');
  await writeDockerArchive(docker25, [imgs.base, cowImg], { form: 'oci' });
  forms.push(['both, Docker 25+ OCI-inside form', docker25]);
  const gz = path.join(a, 'both.tar.gz');
  await writeOciArchive(gz, [imgs.base, cowImg], { gzip: true });
  forms.push(['gzip-compressed archive', gz]);
  const zst = path.join(a, 'zstd.tar');
  await writeOciArchive(zst, [imgs.base, cowImg], { compression: 'zstd' });
  forms.push(['zstd layers', zst]);
  const gzLegacy = path.join(a, 'legacy-gzip-layers.tar.gz');
  await writeDockerArchive(gzLegacy, [imgs.base, cowImg], { compression: 'gzip', gzip: true });
  forms.push(['legacy form, gzip layer.tar, gzip archive', gzLegacy]);
  const refname = path.join(a, 'refname.tar');
  await writeOciArchive(refname, [imgs.base, cowImg], { naming: 'refname' });
  forms.push(['OCI named by ref.name only', refname]);
  for (const [i, [what, archive]] of forms.entries()) {
    const store = new ImageStore({ root: path.join(dir, `s${i}`), shimPath: shimPath() });
    await store.init();
    const loaded = await store.load(archive);
    t.same(
      loaded.map((r) => [r.id, r.repoTags, r.layers.length]),
      [
        [imgs.base.id, [BASE_NAME], 1],
        [imgs.cow.id, [COW_NAME], 2],
      ],
      what,
    );
    t.equal(await layerCount(path.join(dir, `s${i}`)), 2, `${what}: 2 layers`);
  }
  // untagged images load untagged
  const none = path.join(a, 'unnamed.tar');
  await writeOciArchive(none, [imgs.base], { naming: 'none' });
  const store = new ImageStore({ root: path.join(dir, 'unnamed'), shimPath: shimPath() });
  await store.init();
  t.same(
    (await store.load(none)).map((r) => [r.id, r.repoTags]),
    [[imgs.base.id, []]],
  );
});

t.test('resolve by name, tag, ID and ID prefix', async (t) => {
  const { imgs, store } = await setup(t);
  await store.load(imgs.both.ociArchive);
  const id = imgs.base.id;
  for (const ref of [
    BASE_NAME,
    'tsswarm-test/base',
    'docker.io/tsswarm-test/base:latest',
    'index.docker.io/tsswarm-test/base',
    id,
    hex(id),
    `sha256:${hex(id).slice(0, 12)}`,
    hex(id).slice(0, 12),
    hex(id).slice(0, 4),
  ]) {
    t.equal(store.resolve(ref).id, id, ref);
  }
  t.equal(store.resolve(COW_NAME).id, imgs.cow.id);
  const err = (ref: string) => {
    try {
      store.resolve(ref);
      return undefined;
    } catch (e) {
      return e as TsswarmError;
    }
  };
  t.match(err('tsswarm-test/base:nope'), {
    code: 'not_found',
    message: 'no such image: tsswarm-test/base:nope',
  });
  t.match(err('nosuch'), { code: 'not_found', message: 'no such image: nosuch' });
  const unused = ['0000', '1111', 'ffff', 'abab'].find(
    (p) => !hex(id).startsWith(p) && !hex(imgs.cow.id).startsWith(p),
  )!;
  t.match(err(unused), { code: 'not_found' });
  t.match(err('abc'), { code: 'not_found' }, 'a 3-digit prefix is a name, not an ID');
  t.match(err('Upper'), { code: 'invalid_argument', message: /lowercase/ });
  t.match(err(''), { code: 'invalid_argument' });
  t.match(err('sha256:xyz'), { code: 'invalid_argument' });
});

t.test('an ID prefix matching two images is ambiguous', async (t) => {
  const { dir, store } = await setup(t);
  const layer = buildLayer({ '/hello': 'hi\n' });
  // find two configs whose IDs share their first 4 hex digits (about 300 tries on average)
  const seen = new Map<string, number>();
  let pair: [number, number] | undefined;
  for (let i = 0; !pair; i++) {
    const p = hex(buildImage({ layers: [layer], config: { Labels: { n: String(i) } } }).id).slice(0, 4);
    const j = seen.get(p);
    if (j !== undefined) pair = [j, i];
    else seen.set(p, i);
  }
  const images = pair.map((n) =>
    buildImage({ name: `amb:${n}`, layers: [layer], config: { Labels: { n: String(n) } } }),
  );
  const archive = path.join(dir, 'amb.tar');
  await writeOciArchive(archive, images);
  await store.load(archive);
  const prefix = hex(images[0]!.id).slice(0, 4);
  t.throws(() => store.resolve(prefix), {
    code: 'invalid_argument',
    message: /ambiguous image ID prefix "[0-9a-f]{4}": it matches 2 images/,
  });
  t.equal(store.resolve(hex(images[1]!.id).slice(0, 20)).id, images[1]!.id, 'a longer prefix is unique');
});

t.test('tag adds a name and moves it off another image', async (t) => {
  const { imgs, root, store } = await setup(t);
  await store.load(imgs.both.dockerArchive);
  await store.tag(BASE_NAME, 'registry.local:5000/team/app:v1');
  await store.tag(hex(imgs.base.id).slice(0, 8), 'shared');
  t.same(store.resolve('shared').repoTags, [BASE_NAME, 'registry.local:5000/team/app:v1', 'shared:latest']);
  await store.tag(COW_NAME, 'shared:latest');
  t.equal(store.resolve('shared').id, imgs.cow.id, 'tag moved');
  t.notOk(store.resolve(BASE_NAME).repoTags.includes('shared:latest'));
  await t.rejects(store.tag('nosuch', 'x'), { code: 'not_found' });
  await t.rejects(store.tag(BASE_NAME, 'Bad Name'), { code: 'invalid_argument' });
  // the index survives a restart
  const again = new ImageStore({ root, shimPath: shimPath() });
  await again.init();
  t.same(again.list(), store.list());
});

t.test('remove untags, refuses images in use, deletes unused layers and blobs', async (t) => {
  const { imgs, root, store } = await setup(t);
  await store.load(imgs.both.ociArchive);
  await store.tag(COW_NAME, 'cow-alias:1');
  const blobsBefore = (await readdir(path.join(root, 'blobs/sha256'))).length;
  const inUse = (id: string) => (id === imgs.cow.id ? 'web-1' : undefined);

  // one of two tags: just untagged, even though a container uses the image
  t.same(await store.remove('cow-alias:1', inUse), { untagged: ['cow-alias:1'], deleted: [] });
  t.same(store.resolve(imgs.cow.id).repoTags, [COW_NAME]);

  // last tag of an image in use: refused, nothing changes
  const snap = await listing(root);
  await t.rejects(store.remove(COW_NAME, inUse), { code: 'conflict', message: /in use by container web-1/ });
  await t.rejects(store.remove(imgs.cow.id, inUse), { code: 'conflict', message: /web-1/ });
  t.same(await listing(root), snap, 'store unchanged after refusal');

  // the last tag goes with the image; the shared base layer stays
  const topDir = store.layerDirs(imgs.cow.id)[0]!;
  t.same(await store.remove(COW_NAME, () => undefined), { untagged: [COW_NAME], deleted: [imgs.cow.id] });
  t.throws(() => store.resolve(COW_NAME), { code: 'not_found' });
  await t.rejects(stat(topDir), { code: 'ENOENT' }, 'cow-only layer removed');
  t.equal(await layerCount(root), 1);
  await stat(store.layerDirs(imgs.base.id)[0]!);
  const blobsAfter = await readdir(path.join(root, 'blobs/sha256'));
  t.equal(blobsAfter.length, blobsBefore - 3, 'cow config, manifest and top layer blob removed');
  t.notOk(blobsAfter.includes(hex(imgs.cow.id)));

  // by ID: the image goes with all its tags
  await store.tag(BASE_NAME, 'other:tag');
  t.same(await store.remove(hex(imgs.base.id).slice(0, 10), () => undefined), {
    untagged: [BASE_NAME, 'other:tag'],
    deleted: [imgs.base.id],
  });
  t.same(store.list(), []);
  t.same(await readdir(path.join(root, 'layers')), []);
  t.same(await readdir(path.join(root, 'blobs/sha256')), []);
  t.same(await readdir(path.join(root, 'tmp')), []);
  await t.rejects(
    store.remove('nosuch', () => undefined),
    { code: 'not_found' },
  );
});

t.test('save writes an OCI layout plus manifest.json that loads back to the same images', async (t) => {
  const { dir, imgs, store } = await setup(t);
  await store.load(imgs.base.dockerArchive); // plain layers, no manifest received
  await store.load(imgs.cow.ociArchive); // gzip layers and a manifest
  const out = path.join(dir, 'saved.tar');
  await store.save([BASE_NAME, imgs.cow.id], createWriteStream(out));

  // other tools read it: GNU tar lists an OCI layout and a docker manifest
  const { stdout } = await run('tar', ['-tf', out]);
  const members = stdout.trim().split('\n');
  for (const m of ['oci-layout', 'index.json', 'manifest.json', 'blobs/sha256/'])
    t.ok(members.includes(m), `has ${m}`);
  await run('tar', ['-xf', out, '-C', dir, 'index.json', 'manifest.json']);
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
  t.match(index, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json' });
  t.same(
    index.manifests.map((m: { annotations?: Record<string, string> }) => m.annotations ?? null),
    [
      {
        'io.containerd.image.name': 'docker.io/tsswarm-test/base:latest',
        'org.opencontainers.image.ref.name': 'latest',
      },
      null,
    ],
    'tagged ref annotated, ID ref untagged',
  );
  const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
  t.same(manifest[0].RepoTags, [BASE_NAME]);
  t.equal(manifest[0].Config, `blobs/sha256/${hex(imgs.base.id)}`);
  t.same(manifest[1].RepoTags, []);

  // docker path (manifest.json)
  const second = new ImageStore({ root: path.join(dir, 'second'), shimPath: shimPath() });
  await second.init();
  const loaded = await second.load(out);
  t.same(
    loaded.map((r) => [r.id, r.repoTags]),
    [
      [imgs.base.id, [BASE_NAME]],
      [imgs.cow.id, []],
    ],
  );
  t.same(second.resolve(imgs.cow.id), { ...store.resolve(imgs.cow.id), repoTags: [] });
  // OCI path: the same archive without manifest.json
  await run('tar', ['--delete', '-f', out, 'manifest.json']);
  const third = new ImageStore({ root: path.join(dir, 'third'), shimPath: shimPath() });
  await third.init();
  t.same(
    (await third.load(out)).map((r) => [r.id, r.repoTags]),
    [
      [imgs.base.id, [BASE_NAME]],
      [imgs.cow.id, []],
    ],
  );
  // saving by tag then loading keeps every tag and the received manifest
  const out2 = path.join(dir, 'saved2.tar');
  await third.save([BASE_NAME, imgs.cow.id], createWriteStream(out2));
  await run('tar', ['-xf', out2, '-C', dir, 'index.json']);
  const index2 = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
  t.same(
    index2.manifests.map((m: { digest: string }) => m.digest),
    index.manifests.map((m: { digest: string }) => m.digest),
    'manifests stable across round trips',
  );
  await t.rejects(store.save(['nosuch'], createWriteStream(path.join(dir, 'x.tar'))), { code: 'not_found' });
  await t.rejects(store.save([], createWriteStream(path.join(dir, 'y.tar'))), { code: 'invalid_argument' });
});

t.test('xattrs, hard links and setuid bits survive unpacking', async (t) => {
  const { dir, store } = await setup(t);
  const img = await makeImage(dir, {
    name: 'attrs:1',
    layers: [
      {
        '/bin/tool': { content: '#!/bin/sh\n', mode: 0o4755 },
        '/data/file': { content: 'x', xattrs: { 'user.tsswarm': 'hello' }, uid: 123, gid: 456 },
        '/data/link': { hardlink: '/data/file' },
      },
    ],
  });
  await store.load(img.ociArchive);
  const [d] = store.layerDirs(img.id);
  t.equal((await stat(path.join(d!, 'bin/tool'))).mode & 0o7777, 0o4755, 'setuid kept');
  const f = await stat(path.join(d!, 'data/file'));
  t.same([f.uid, f.gid, f.nlink], [123, 456, 2]);
  t.equal((await stat(path.join(d!, 'data/link'))).ino, f.ino, 'hard link');
  const { stdout } = await run('getfattr', [
    '--absolute-names',
    '-n',
    'user.tsswarm',
    '--only-values',
    path.join(d!, 'data/file'),
  ]);
  t.equal(stdout, 'hello', 'xattr kept');
});

t.test('bad archives are refused with one clear line and leave the store unchanged', async (t) => {
  const { dir, imgs, root, store } = await setup(t);
  await store.load(imgs.base.ociArchive);
  const snap = await listing(root);
  const bad = path.join(dir, 'bad');
  await mkdir(bad);
  const write = async (name: string, data: Buffer) => {
    const p = path.join(bad, name);
    await writeFile(p, data);
    return p;
  };

  const cowOci = await readFile(imgs.cow.ociArchive);
  const cases: Array<[string, Promise<string>, RegExp]> = [
    ['truncated archive', write('trunc.tar', cowOci.subarray(0, Math.floor(cowOci.length / 2))), /truncated/],
    [
      'truncated gzip archive',
      (async () => {
        const gz = path.join(bad, 'full.tar.gz');
        await writeOciArchive(gz, [imgs.cow], { gzip: true });
        const b = await readFile(gz);
        return write('trunc.tar.gz', b.subarray(0, b.length - 4096));
      })(),
      /truncated/,
    ],
    [
      'garbage',
      write('garbage.tar', Buffer.from(Array.from({ length: 20000 }, (_, i) => (i * 7919) % 251))),
      /not a tar archive/,
    ],
    ['empty file', write('empty.tar', Buffer.alloc(0)), /is an empty file/],
    ['nonexistent file', Promise.resolve(path.join(bad, 'does-not-exist.tar')), /no such file/],
    [
      'tar without image',
      write('plain.tar', buildTar([{ entry: { path: 'hello.txt', type: 'file' }, data: Buffer.from('hi') }])),
      /neither manifest.json .* nor index.json/,
    ],
    [
      'blob that does not match its digest',
      (async () => {
        // flip one byte inside the config blob; the name still claims the old digest
        const b = Buffer.from(cowOci);
        const at = b.indexOf('"os":"linux"');
        b.write('"os":"linuX"', at, 'latin1');
        return write('digest.tar', b);
      })(),
      new RegExp(`blob sha256:${hex(imgs.cow.id)} does not match its digest`),
    ],
    [
      'layer whose content does not match its diff_id',
      (async () => {
        const legacy = path.join(bad, 'legacy.tar');
        await writeDockerArchive(legacy, [imgs.cow]);
        const b = await readFile(legacy);
        const at = b.indexOf(COW.added.content);
        b.write('X', at, 'latin1');
        return write('diffid.tar', b);
      })(),
      /layer ".*\/layer.tar" of image sha256:[0-9a-f]{64} has diff_id sha256:[0-9a-f]{64}, its config says/,
    ],
    [
      'member path with ../',
      write(
        'dotdot.tar',
        buildTar([
          { entry: { path: 'manifest.json', type: 'file' }, data: Buffer.from('[]') },
          { entry: { path: '../escaped', type: 'file' }, data: Buffer.from('pwned') },
        ]),
      ),
      /unsafe path "\.\.\/escaped"/,
    ],
    [
      'absolute member path',
      write(
        'abs.tar',
        buildTar([{ entry: { path: '/etc/evil', type: 'file' }, data: Buffer.from('pwned') }]),
      ),
      /unsafe absolute path "\/etc\/evil"/,
    ],
    [
      'symlink leaving the archive',
      write(
        'symlink.tar',
        buildTar([{ entry: { path: 'manifest.json', type: 'symlink', linkname: '../../etc/passwd' } }]),
      ),
      /unsafe symlink "manifest.json"/,
    ],
    [
      'layer with a ../ member',
      (async () => {
        const evil = buildImage({
          name: 'evil:1',
          layers: [rawLayer([{ entry: { path: '../../escape', type: 'file' }, data: Buffer.from('x') }])],
        });
        const p = path.join(bad, 'evil-layer.tar');
        await writeOciArchive(p, [evil]);
        return p;
      })(),
      /layer "blobs\/sha256\/[0-9a-f]{64}" has an unsafe path "\.\.\/\.\.\/escape"/,
    ],
    [
      'layer with an absolute member',
      (async () => {
        const evil = buildImage({
          name: 'evil:2',
          layers: [rawLayer([{ entry: { path: '/etc/shadow', type: 'file' }, data: Buffer.from('x') }])],
        });
        const p = path.join(bad, 'abs-layer.tar');
        await writeDockerArchive(p, [evil]);
        return p;
      })(),
      /has an unsafe path "\/etc\/shadow" \(absolute path\)/,
    ],
    [
      'missing blob',
      (async () => {
        const src = path.join(bad, 'src.tar');
        await writeOciArchive(src, [imgs.cow]);
        const p = path.join(bad, 'missing.tar');
        await run('cp', [src, p]);
        await run('tar', ['--delete', '-f', p, `blobs/sha256/${hex(imgs.cow.id)}`]);
        return p;
      })(),
      new RegExp(
        `config blob of manifest sha256:[0-9a-f]{64} sha256:${hex(imgs.cow.id)} is missing from the archive`,
      ),
    ],
    [
      'layer that is not a tar stream',
      (async () => {
        const junk = Buffer.from('this is not a tar stream at all'.repeat(40));
        const img = buildImage({ name: 'junk:1', layers: [{ tar: junk, diffId: `sha256:${sha256(junk)}` }] });
        const p = path.join(bad, 'junk-layer.tar');
        await writeOciArchive(p, [img], { compression: 'none' });
        return p;
      })(),
      /layer "blobs\/sha256\/[0-9a-f]{64}" is not a valid tar stream/,
    ],
    [
      'layer with a truncated gzip stream',
      (async () => {
        const full = gzipSync(imgs.cow.layers[1]!.tar);
        const cut = full.subarray(0, full.length - 100); // digests in the archive describe these bytes
        const img = buildImage({ name: 'cut:1', layers: [{ tar: cut, diffId: `sha256:${sha256(cut)}` }] });
        const p = path.join(bad, 'cut-layer.tar');
        await writeDockerArchive(p, [img]);
        return p;
      })(),
      /layer ".*\/layer.tar" is truncated \(gzip stream ends early\)/,
    ],
    [
      'config with more diff_ids than layers',
      (async () => {
        const img = buildImage({ name: 'short:1', layers: [imgs.cow.layers[0]!] });
        const cfg = JSON.parse(img.configBytes.toString());
        cfg.rootfs.diff_ids.push(imgs.cow.diffIds[1]);
        const configBytes = Buffer.from(JSON.stringify(cfg));
        const p = path.join(bad, 'count.tar');
        await writeDockerArchive(p, [{ ...img, configBytes, id: `sha256:${sha256(configBytes)}` }]);
        return p;
      })(),
      /lists 1 layers but its config has 2 diff_ids/,
    ],
    [
      'invalid tag in manifest.json',
      (async () => {
        const p = path.join(bad, 'badtag.tar');
        await writeDockerArchive(p, [{ ...imgs.base, tags: ['Not/Valid'] }]);
        return p;
      })(),
      /invalid image name "Not\/Valid"/,
    ],
  ];
  for (const [what, file, re] of cases) {
    await expectBadArchive(t, store.load(await file), re, what);
    t.same(await listing(root), snap, `${what}: store unchanged`);
  }
  await t.rejects(lstat(path.join(dir, 'escaped')), { code: 'ENOENT' }, 'nothing written outside');
  await t.rejects(lstat(path.join(root, 'escaped')), { code: 'ENOENT' });
  t.same(
    store.list().map((r) => r.id),
    [imgs.base.id],
    'in-memory state unchanged',
  );
});

t.test('a failure while unpacking the second image rolls back the first', async (t) => {
  const { dir, imgs, root, store } = await setup(t);
  const snap = await listing(root);
  // node-tar accepts this layer (a safe hard link), GNU tar cannot unpack it (no target)
  const broken = buildImage({
    name: 'broken:1',
    layers: [rawLayer([{ entry: { path: 'data/link', type: 'hardlink', linkname: 'data/missing' } }])],
  });
  const archive = path.join(dir, 'two.tar');
  await writeOciArchive(archive, [imgs.base, broken]);
  await expectBadArchive(t, store.load(archive), /layer .* could not be unpacked/, 'unpack failure');
  t.same(await listing(root), snap, 'no layer, blob or index left');
  t.same(store.list(), []);
  // the store still works afterwards
  t.equal((await store.load(imgs.base.ociArchive))[0]!.id, imgs.base.id);
});

t.test('concurrent loads and removals are serialised', async (t) => {
  const { imgs, root, store } = await setup(t);
  const results = await Promise.allSettled([
    store.load(imgs.base.ociArchive),
    store.load(imgs.cow.dockerArchive),
    store.load(imgs.both.ociArchive),
    store.remove(BASE_NAME, () => undefined),
    store.load(imgs.base.dockerArchive),
  ]);
  t.same(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'],
  );
  t.same(
    store
      .list()
      .map((r) => r.id)
      .sort(),
    [imgs.base.id, imgs.cow.id].sort(),
  );
  t.equal(await layerCount(root), 2);
  const again = new ImageStore({ root, shimPath: shimPath() });
  await again.init();
  t.same(again.list(), store.list(), 'index on disk matches memory');
});

t.test('init cleans leftovers of an interrupted run', async (t) => {
  const { imgs, root, store } = await setup(t);
  await store.load(imgs.base.ociArchive);
  await run('mkdir', [
    '-p',
    path.join(root, 'tmp/load-stale/archive'),
    path.join(root, 'layers', 'f'.repeat(64)),
  ]);
  await writeFile(path.join(root, 'blobs/sha256', 'e'.repeat(64)), 'orphan');
  const again = new ImageStore({ root, shimPath: shimPath() });
  await again.init();
  t.same(await readdir(path.join(root, 'tmp')), []);
  t.same(await readdir(path.join(root, 'layers')), [hex(imgs.base.diffIds[0]!)]);
  t.notOk((await readdir(path.join(root, 'blobs/sha256'))).includes('e'.repeat(64)));
  t.same(again.list(), store.list());
});
