/**
 * Test images, built at test time from /bin/busybox (nothing binary is committed).
 *
 *   const imgs = await buildTestImages(dir);
 *   await store.load(imgs.base.ociArchive);      // or .dockerArchive
 *
 * `base`: busybox + an applet symlink for each `busybox --list` name in /bin, /etc/passwd (root,
 * nobody 65534, app 1000:1000), /etc/group, /tmp (1777), /root, /home/app, a few files the cow
 * image changes; Env PATH=..., Cmd ["sh"].
 * `cow`: base's layer (byte-identical, so shared) plus a layer that adds, modifies and deletes
 * files (one whiteout file, one opaque directory) — see COW for what to expect in a container.
 *
 * Every image is written as an OCI image-layout archive (gzip layers) and a legacy `docker save`
 * archive (plain layer.tar, duplicate layers as symlinks like Docker writes them).
 * `makeImage` builds custom images from a file list; `buildLayer`, `buildImage`,
 * `writeOciArchive` and `writeDockerArchive` are the pieces, for tests that need odd archives.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { buildTar, type TarEntry } from '../../src/engine/images/tar-writer.js';
import type { ImageConfig } from '../../src/engine/images/types.js';

export type { TarEntry } from '../../src/engine/images/tar-writer.js';

/** What a path in a layer is. Paths are absolute-looking ('/etc/motd'); parents are added as 0755 dirs. */
export type FileSpec =
  | string
  | Buffer
  | { content: string | Buffer; mode?: number; uid?: number; gid?: number; xattrs?: Record<string, string> }
  | { symlink: string; uid?: number; gid?: number }
  | { hardlink: string }
  | { dir: true; mode?: number; uid?: number; gid?: number }
  /** Deletes the path from lower layers: written as `.wh.<name>`. */
  | { whiteout: true }
  /** A directory whose lower-layer content is hidden: written as DIR/ + DIR/.wh..wh..opq. */
  | { opaque: true; mode?: number; uid?: number; gid?: number };

export type Compression = 'none' | 'gzip' | 'zstd';

export interface Layer {
  /** The uncompressed layer tar. */
  tar: Buffer;
  /** 'sha256:<hex>' of `tar`. */
  diffId: string;
}

export interface ImageSpec {
  /** First tag, e.g. 'tsswarm-test/app:latest'. Omit for an untagged image. */
  name?: string;
  /** More tags. */
  tags?: string[];
  layers: Array<Layer | Record<string, FileSpec>>;
  config?: ImageConfig;
  architecture?: string;
  os?: string;
  created?: string;
}

export interface BuiltImage {
  tags: string[];
  /** 'sha256:<hex of config>' — the ID a store must compute. */
  id: string;
  configBytes: Buffer;
  layers: Layer[];
  diffIds: string[];
  /** Sum of the uncompressed layer tar sizes. */
  size: number;
}

export interface TestImage extends BuiltImage {
  name: string;
  /** OCI image layout archive, gzip-compressed layers. */
  ociArchive: string;
  /** Legacy `docker save` archive (<id>/layer.tar, uncompressed). */
  dockerArchive: string;
}

/** Fixed mtime for every entry, so archives (and image IDs) are reproducible. */
export const MTIME = 1_700_000_000;
export const CREATED = '2024-01-01T00:00:00Z';

export const BASE_NAME = 'tsswarm-test/base:latest';
export const COW_NAME = 'tsswarm-test/cow:latest';
export const BASE_CONFIG: ImageConfig = { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] };

export const USERS = {
  root: { uid: 0, gid: 0, home: '/root' },
  nobody: { uid: 65534, gid: 65534, home: '/nonexistent' },
  app: { uid: 1000, gid: 1000, home: '/home/app' },
} as const;

/** What the cow image's second layer does to base, as seen from inside a container. */
export const COW = {
  modified: {
    path: '/etc/motd',
    before: 'welcome to the tsswarm base image\n',
    after: 'motd changed by the cow layer\n',
  },
  added: { path: '/srv/added.txt', content: 'added by the cow layer\n' },
  deleted: { path: '/srv/remove-me.txt', content: 'this file is deleted by the cow layer\n' },
  kept: { path: '/srv/keep.txt', content: 'kept\n' },
  opaque: {
    dir: '/srv/opaque',
    hidden: { '/srv/opaque/old-1.txt': 'old 1\n', '/srv/opaque/old-2.txt': 'old 2\n' } as Record<
      string,
      string
    >,
    visible: { '/srv/opaque/new.txt': 'new in the opaque dir\n' } as Record<string, string>,
  },
} as const;

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The repository root (the directory with package.json above this file, compiled or not). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found above test/lib');
    dir = up;
  }
  return dir;
}

/** The native helper tests must use: $TSSWARM_SHIM, else <repo>/build/tsswarm-shim. */
export function shimPath(): string {
  return process.env.TSSWARM_SHIM ?? path.join(repoRoot(), 'build', 'tsswarm-shim');
}

/**
 * A fresh directory /tmp/tsswarm-test-<random>/<label>, removed (with its parent) when the test
 * ends, pass or fail.
 */
export async function tempDir(t: { teardown(fn: () => unknown): void }, label = 'work'): Promise<string> {
  const top = path.join('/tmp', `tsswarm-test-${randomBytes(6).toString('hex')}`);
  const dir = path.join(top, label);
  await mkdir(dir, { recursive: true });
  t.teardown(() => rm(top, { recursive: true, force: true }));
  return dir;
}

function rel(p: string): string {
  return p.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** Builds an uncompressed layer tar from a file list (entries sorted, parents first). */
export function buildLayer(files: Record<string, FileSpec>): Layer {
  const entries = new Map<string, { entry: TarEntry; data?: Buffer }>();
  const addParents = (p: string) => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!entries.has(dir))
        entries.set(dir, { entry: { path: `${dir}/`, type: 'dir', mode: 0o755, mtime: MTIME } });
    }
  };
  const put = (p: string, entry: TarEntry, data?: Buffer) => {
    addParents(p);
    entries.set(p, data ? { entry, data } : { entry });
  };
  for (const [key, spec] of Object.entries(files)) {
    const p = rel(key);
    if (p === '') throw new Error('buildLayer: empty path');
    if (typeof spec === 'string' || Buffer.isBuffer(spec)) {
      put(p, { path: p, type: 'file', mode: 0o644, mtime: MTIME }, Buffer.from(spec));
    } else if ('content' in spec) {
      const pax = spec.xattrs
        ? Object.fromEntries(Object.entries(spec.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v]))
        : undefined;
      put(
        p,
        {
          path: p,
          type: 'file',
          mode: spec.mode ?? 0o644,
          uid: spec.uid ?? 0,
          gid: spec.gid ?? 0,
          mtime: MTIME,
          ...(pax ? { pax } : {}),
        },
        Buffer.from(spec.content),
      );
    } else if ('symlink' in spec) {
      put(p, {
        path: p,
        type: 'symlink',
        linkname: spec.symlink,
        mode: 0o777,
        uid: spec.uid,
        gid: spec.gid,
        mtime: MTIME,
      });
    } else if ('hardlink' in spec) {
      put(p, { path: p, type: 'hardlink', linkname: rel(spec.hardlink), mode: 0o644, mtime: MTIME });
    } else if ('dir' in spec) {
      put(p, {
        path: `${p}/`,
        type: 'dir',
        mode: spec.mode ?? 0o755,
        uid: spec.uid,
        gid: spec.gid,
        mtime: MTIME,
      });
    } else if ('whiteout' in spec) {
      const wh = path.posix.join(path.posix.dirname(p), `.wh.${path.posix.basename(p)}`);
      put(wh, { path: wh, type: 'file', mode: 0o644, mtime: MTIME }, Buffer.alloc(0));
    } else if ('opaque' in spec) {
      put(p, {
        path: `${p}/`,
        type: 'dir',
        mode: spec.mode ?? 0o755,
        uid: spec.uid,
        gid: spec.gid,
        mtime: MTIME,
      });
      const marker = `${p}/.wh..wh..opq`;
      put(marker, { path: marker, type: 'file', mode: 0o644, mtime: MTIME }, Buffer.alloc(0));
    }
  }
  const sorted = [...entries.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
  return rawLayer(sorted);
}

/** A layer from raw tar entries, written exactly as given (for malformed or hostile layers). */
export function rawLayer(entries: Array<{ entry: TarEntry; data?: Buffer }>): Layer {
  const tar = buildTar(entries);
  return { tar, diffId: `sha256:${sha256(tar)}` };
}

function hostArch(): string {
  return ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;
}

/** Builds the config (and so the ID) of an image; no files are written. */
export function buildImage(spec: ImageSpec): BuiltImage {
  const layers = spec.layers.map((l) =>
    'tar' in l && Buffer.isBuffer(l.tar) ? (l as Layer) : buildLayer(l as Record<string, FileSpec>),
  );
  const diffIds = layers.map((l) => l.diffId);
  const config = {
    architecture: spec.architecture ?? hostArch(),
    os: spec.os ?? 'linux',
    created: spec.created ?? CREATED,
    config: spec.config ?? BASE_CONFIG,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map((_, i) => ({
      created: spec.created ?? CREATED,
      created_by: `tsswarm test layer ${i}`,
    })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  return {
    tags: [...(spec.name ? [spec.name] : []), ...(spec.tags ?? [])],
    id: `sha256:${sha256(configBytes)}`,
    configBytes,
    layers,
    diffIds,
    size: layers.reduce((s, l) => s + l.tar.length, 0),
  };
}

function compress(tar: Buffer, c: Compression): Buffer {
  if (c === 'gzip') return gzipSync(tar);
  if (c === 'zstd') return execFileSync('zstd', ['-q', '-c', '-3'], { input: tar, maxBuffer: 1 << 30 });
  return tar;
}

const LAYER_TYPES: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** 'app:v1' → 'docker.io/library/app:v1'; 'a/b:t' → 'docker.io/a/b:t'; 'reg:5000/a:t' kept. */
function qualified(tag: string): string {
  const slash = tag.indexOf('/');
  const first = slash < 0 ? '' : tag.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost') return tag;
  return slash < 0 ? `docker.io/library/${tag}` : `docker.io/${tag}`;
}

type Entries = Array<{ entry: TarEntry; data?: Buffer }>;
const file = (p: string, data: Buffer | string): { entry: TarEntry; data: Buffer } => ({
  entry: { path: p, type: 'file', mode: 0o644, mtime: MTIME },
  data: Buffer.from(data),
});
const dir = (p: string): { entry: TarEntry } => ({
  entry: { path: p, type: 'dir', mode: 0o755, mtime: MTIME },
});

export interface OciArchiveOptions {
  /** Layer compression; default gzip. */
  compression?: Compression;
  /** How index.json names images: containerd + ref.name annotations (default, as Docker 25+),
   * only a full 'name:tag' in ref.name (as skopeo writes), or no names at all. */
  naming?: 'docker' | 'refname' | 'none';
  /** gzip the whole archive. */
  gzip?: boolean;
  /** Also write a Docker manifest.json (Docker 25+'s form). */
  dockerManifest?: boolean;
}

function ociEntries(
  images: BuiltImage[],
  opts: OciArchiveOptions,
): { entries: Entries; blobPaths: Map<BuiltImage, { config: string; layers: string[] }> } {
  const compression = opts.compression ?? 'gzip';
  const entries: Entries = [
    file('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' })),
    dir('blobs/'),
    dir('blobs/sha256/'),
  ];
  const written = new Set<string>();
  const blob = (data: Buffer) => {
    const hex = sha256(data);
    if (!written.has(hex)) {
      written.add(hex);
      entries.push(file(`blobs/sha256/${hex}`, data));
    }
    return { digest: `sha256:${hex}`, size: data.length, path: `blobs/sha256/${hex}` };
  };
  const index: object[] = [];
  const blobPaths = new Map<BuiltImage, { config: string; layers: string[] }>();
  for (const img of images) {
    const layers = img.layers.map((l) => ({
      mediaType: LAYER_TYPES[compression],
      ...blob(compress(l.tar, compression)),
    }));
    const config = blob(img.configBytes);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: config.digest,
          size: config.size,
        },
        layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
      }),
    );
    const m = blob(manifest);
    const descriptor = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: m.digest,
      size: m.size,
    };
    const naming = opts.naming ?? 'docker';
    if (img.tags.length === 0 || naming === 'none') index.push(descriptor);
    else {
      for (const t of img.tags) {
        const annotations =
          naming === 'docker'
            ? {
                'io.containerd.image.name': qualified(t),
                'org.opencontainers.image.ref.name': t.slice(t.lastIndexOf(':') + 1),
              }
            : { 'org.opencontainers.image.ref.name': t };
        index.push({ ...descriptor, annotations });
      }
    }
    blobPaths.set(img, { config: config.path, layers: layers.map((l) => l.path) });
  }
  entries.push(
    file(
      'index.json',
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: index,
      }),
    ),
  );
  return { entries, blobPaths };
}

async function writeArchive(out: string, entries: Entries, gzip?: boolean): Promise<void> {
  const tar = buildTar(entries);
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, gzip ? gzipSync(tar) : tar);
}

/** Writes an OCI image-layout archive holding `images`. */
export async function writeOciArchive(
  out: string,
  images: BuiltImage[],
  opts: OciArchiveOptions = {},
): Promise<void> {
  const { entries, blobPaths } = ociEntries(images, opts);
  if (opts.dockerManifest) {
    entries.push(
      file(
        'manifest.json',
        JSON.stringify(
          images.map((img) => ({
            Config: blobPaths.get(img)!.config,
            RepoTags: img.tags,
            Layers: blobPaths.get(img)!.layers,
          })),
        ),
      ),
    );
  }
  await writeArchive(out, entries, opts.gzip);
}

export interface DockerArchiveOptions {
  /** Compression of each layer.tar; default none (as `docker save` writes). */
  compression?: Compression;
  /** 'legacy': <v1id>/layer.tar + <hex>.json (Docker < 25); 'oci': Docker 25+ (OCI layout + manifest.json). */
  form?: 'legacy' | 'oci';
  /** gzip the whole archive. */
  gzip?: boolean;
}

/**
 * Writes a `docker save` archive. In the legacy form every image gets its own layer directories
 * and a layer already written for another image becomes a symlink `../<v1id>/layer.tar`, as
 * Docker writes them.
 */
export async function writeDockerArchive(
  out: string,
  images: BuiltImage[],
  opts: DockerArchiveOptions = {},
): Promise<void> {
  if (opts.form === 'oci') {
    await writeOciArchive(out, images, {
      compression: opts.compression ?? 'none',
      dockerManifest: true,
      gzip: opts.gzip,
    });
    return;
  }
  const compression = opts.compression ?? 'none';
  const entries: Entries = [];
  const manifest: object[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const layerFileOf = new Map<string, string>();
  for (const img of images) {
    const configHex = img.id.slice(7);
    entries.push(file(`${configHex}.json`, img.configBytes));
    let parent: string | undefined;
    const layerPaths: string[] = [];
    for (const [i, layer] of img.layers.entries()) {
      const v1 = sha256(`${img.id} ${i} ${parent ?? ''}`);
      const layerPath = `${v1}/layer.tar`;
      entries.push(dir(`${v1}/`), file(`${v1}/VERSION`, '1.0'));
      entries.push(
        file(`${v1}/json`, JSON.stringify({ id: v1, ...(parent ? { parent } : {}), created: CREATED })),
      );
      const firstCopy = layerFileOf.get(layer.diffId);
      if (firstCopy) {
        entries.push({
          entry: { path: layerPath, type: 'symlink', linkname: `../${firstCopy}`, mode: 0o777, mtime: MTIME },
        });
      } else {
        entries.push(file(layerPath, compress(layer.tar, compression)));
        layerFileOf.set(layer.diffId, layerPath);
      }
      layerPaths.push(layerPath);
      parent = v1;
    }
    manifest.push({
      Config: `${configHex}.json`,
      RepoTags: img.tags.length ? img.tags : null,
      Layers: layerPaths,
    });
    for (const t of img.tags) {
      const colon = t.lastIndexOf(':');
      repositories[t.slice(0, colon)] = {
        ...(repositories[t.slice(0, colon)] ?? {}),
        [t.slice(colon + 1)]: parent!,
      };
    }
  }
  entries.push(file('manifest.json', JSON.stringify(manifest)));
  if (Object.keys(repositories).length > 0) entries.push(file('repositories', JSON.stringify(repositories)));
  await writeArchive(out, entries, opts.gzip);
}

function slug(s: string): string {
  return s.replace(/[^a-zA-Z0-9_.-]+/g, '_');
}

/**
 * Builds a custom image and writes it to `<dir>/<name>.oci.tar` (gzip layers) and
 * `<dir>/<name>.docker.tar` (legacy, plain layers).
 */
export async function makeImage(
  dirPath: string,
  spec: ImageSpec & { ociCompression?: Compression; dockerCompression?: Compression },
): Promise<TestImage> {
  const img = buildImage(spec);
  const name = img.tags[0] ?? img.id;
  const base = path.join(dirPath, slug(img.tags[0] ?? img.id.slice(7, 19)));
  const ociArchive = `${base}.oci.tar`;
  const dockerArchive = `${base}.docker.tar`;
  await writeOciArchive(ociArchive, [img], { compression: spec.ociCompression ?? 'gzip' });
  await writeDockerArchive(dockerArchive, [img], { compression: spec.dockerCompression ?? 'none' });
  return { ...img, name, ociArchive, dockerArchive };
}

let busyboxCache: Promise<{ binary: Buffer; applets: string[] }> | undefined;

function busybox(): Promise<{ binary: Buffer; applets: string[] }> {
  busyboxCache ??= (async () => {
    const binary = await readFile('/bin/busybox');
    const list = await new Promise<string>((resolve, reject) =>
      execFile('/bin/busybox', ['--list'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    const applets = list
      .split('\n')
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== 'busybox' && !s.includes('/'));
    return { binary, applets };
  })();
  return busyboxCache;
}

/** The base image's file list. */
export async function baseFiles(): Promise<Record<string, FileSpec>> {
  const { binary, applets } = await busybox();
  const files: Record<string, FileSpec> = {
    '/bin': { dir: true },
    '/bin/busybox': { content: binary, mode: 0o755 },
    '/sbin': { dir: true },
    '/usr/bin': { dir: true },
    '/usr/sbin': { dir: true },
    '/dev': { dir: true },
    '/proc': { dir: true, mode: 0o555 },
    '/sys': { dir: true, mode: 0o555 },
    '/var': { dir: true },
    '/etc/passwd':
      'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n',
    '/etc/group': 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\n',
    '/etc/motd': COW.modified.before,
    '/tmp': { dir: true, mode: 0o1777 },
    '/root': { dir: true, mode: 0o700 },
    '/home': { dir: true },
    '/home/app': { dir: true, mode: 0o755, uid: 1000, gid: 1000 },
    [COW.deleted.path]: COW.deleted.content,
    [COW.kept.path]: COW.kept.content,
    [COW.opaque.dir]: { dir: true },
    ...COW.opaque.hidden,
  };
  for (const a of applets) files[`/bin/${a}`] = { symlink: 'busybox' };
  return files;
}

/** The cow image's second layer. */
export function cowFiles(): Record<string, FileSpec> {
  return {
    [COW.modified.path]: COW.modified.after,
    [COW.added.path]: COW.added.content,
    [COW.deleted.path]: { whiteout: true },
    [COW.opaque.dir]: { opaque: true },
    ...COW.opaque.visible,
  };
}

export interface TestImages {
  base: TestImage;
  cow: TestImage;
  /** Both images in one archive of each form (the base layer written once). */
  both: { ociArchive: string; dockerArchive: string };
}

/** Builds the base and cow images into `dir` (see the file comment). */
export async function buildTestImages(dirPath: string): Promise<TestImages> {
  await mkdir(dirPath, { recursive: true });
  const baseLayer = buildLayer(await baseFiles());
  const base = await makeImage(dirPath, { name: BASE_NAME, layers: [baseLayer], config: BASE_CONFIG });
  const cow = await makeImage(dirPath, {
    name: COW_NAME,
    layers: [baseLayer, buildLayer(cowFiles())],
    config: { ...BASE_CONFIG, Labels: { 'org.tsswarm.test': 'cow' } },
  });
  const both = {
    ociArchive: path.join(dirPath, 'both.oci.tar'),
    dockerArchive: path.join(dirPath, 'both.docker.tar'),
  };
  await writeOciArchive(both.ociArchive, [base, cow]);
  await writeDockerArchive(both.dockerArchive, [base, cow]);
  return { base, cow, both };
}
