/**
 * The engine's image store: content-addressed blobs, layers unpacked once and shared between
 * images, and an index of image records and tags.
 *
 *   <root>/blobs/sha256/<hex>   blobs as received (configs, layer blobs, manifests)
 *   <root>/layers/<diffid-hex>/ one unpacked layer (whiteouts in overlayfs form)
 *   <root>/index.json           image records and tags (replaced atomically)
 *   <root>/tmp/                 staging for loads and deletions (emptied by init)
 *   <root>/downloads/           layer blobs of pulls not committed yet: `<hex>` verified,
 *                               `<hex>.partial` still arriving (kept, so a pull resumes)
 *
 * Every mutation runs through one in-process queue, so loads, tags and removals never interleave.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import {
  chmod,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { badArchive, conflict, invalid, notFound, TsswarmError } from '../../api/errors.js';
import { type ArchiveImage, readArchiveImages, verifyLayers } from './archive.js';
import { stageArchive } from './archive-reader.js';
import { extractLayer, LAYER_MEDIA_TYPES, unpackLayerStream } from './layer.js';
import { ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MEDIA, parseImageConfig } from './oci.js';
import { isHexIdPrefix, normalizeTag, parseReference, qualifiedTag, shortId, tagOf } from './reference.js';
import { encodeEntry, encodeHeader, endOfArchive, padding } from './tar-writer.js';
import type { BlobDescriptor, ImageRecord, StoredImage } from './types.js';

export type { ImageConfig, ImageRecord } from './types.js';

/** A layer unpacked into tmp/, waiting for `ImageStore.commit`. */
export interface StagedLayer {
  dir: string;
  mediaType: string;
  /** Bytes of the uncompressed tar stream. */
  size: number;
}

/** A fetched or built image for `ImageStore.commit`. */
export interface CommitInput {
  config: { digest: string; mediaType: string; bytes: Buffer };
  manifest?: { digest: string; mediaType: string; bytes: Buffer };
  /** Bottom-most first; `staged` absent when the store already has the layer. */
  layers: Array<{ descriptor: BlobDescriptor; staged?: { blob: string; dir: string; size: number } }>;
  tags: string[];
  /** The image this one was built on (build steps); keeps it from being pruned as dangling. */
  parent?: string;
  /** Other digests that name it (the manifest list it was picked from). */
  extraDigests?: string[];
}

export interface ImageStoreOptions {
  /** Directory the store owns, e.g. `<dataRoot>/images`. */
  root: string;
  /** The native helper; `<shimPath> whiteouts DIR` converts a layer's whiteouts to overlayfs form. */
  shimPath: string;
  /** GNU tar; default `tar` from PATH. */
  tar?: string;
}

interface IndexFile {
  version: 1;
  images: StoredImage[];
}

const INDEX_VERSION = 1;
const HEX64 = /^[a-f0-9]{64}$/;

const hexOf = (digest: string) => digest.replace(/^sha256:/, '');

export class ImageStore {
  private readonly root: string;
  private readonly shimPath: string;
  private readonly tarBin: string;
  private readonly blobsDir: string;
  private readonly layersDir: string;
  private readonly tmpDir: string;
  readonly downloadsDir: string;
  private readonly indexPath: string;
  private images = new Map<string, StoredImage>();
  private tags = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  private ready = false;

  constructor(opts: ImageStoreOptions) {
    this.root = path.resolve(opts.root);
    this.shimPath = opts.shimPath;
    this.tarBin = opts.tar ?? 'tar';
    this.blobsDir = path.join(this.root, 'blobs', 'sha256');
    this.layersDir = path.join(this.root, 'layers');
    this.tmpDir = path.join(this.root, 'tmp');
    this.downloadsDir = path.join(this.root, 'downloads');
    this.indexPath = path.join(this.root, 'index.json');
  }

  /**
   * Creates the layout if missing, empties tmp/ (leftovers of an interrupted run), reads
   * index.json, and removes layers and blobs no image references. Must run before anything else.
   */
  init(): Promise<void> {
    return this.exclusive(async () => {
      await mkdir(this.blobsDir, { recursive: true });
      await mkdir(this.layersDir, { recursive: true });
      await mkdir(this.tmpDir, { recursive: true });
      await mkdir(this.downloadsDir, { recursive: true });
      for (const e of await readdir(this.tmpDir))
        await rm(path.join(this.tmpDir, e), { recursive: true, force: true });
      let index: IndexFile = { version: INDEX_VERSION, images: [] };
      try {
        index = JSON.parse(await readFile(this.indexPath, 'utf8')) as IndexFile;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new TsswarmError(
            'internal',
            `image index ${this.indexPath} is unreadable: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
      }
      if (index.version !== INDEX_VERSION || !Array.isArray(index.images)) {
        throw new TsswarmError(
          'internal',
          `image index ${this.indexPath} has unknown version ${String(index.version)}`,
        );
      }
      const images = new Map<string, StoredImage>();
      for (const img of index.images) images.set(img.record.id, img);
      this.setState(images);
      this.ready = true;
      await this.collectGarbage();
    });
  }

  /**
   * Loads every image of an OCI image-layout archive or a `docker save` archive (legacy
   * `<id>/layer.tar` form or Docker 25+'s OCI form; plain or gzip tar; plain, gzip or zstd
   * layers). Verifies every blob's sha256 and every layer's diff_id before anything is kept.
   * A tag the archive carries moves to the loaded image. On any error nothing is left behind.
   */
  load(archivePath: string): Promise<ImageRecord[]> {
    return this.exclusive(async () => {
      this.assertReady();
      const work = await mkdtemp(path.join(this.tmpDir, 'load-'));
      const added: string[] = [];
      try {
        const stagingDir = path.join(work, 'archive');
        await mkdir(stagingDir);
        const staged = await stageArchive(archivePath, stagingDir);
        const { images } = await readArchiveImages(staged);
        const infos = await verifyLayers(images);

        // unpack the layers this store does not have yet, each once
        const unpacked = new Map<string, string>();
        for (const img of images) {
          for (const [i, layer] of img.layers.entries()) {
            const diffHex = hexOf(img.parsed.diffIds[i]!);
            if (unpacked.has(diffHex) || (await exists(path.join(this.layersDir, diffHex)))) continue;
            const dir = path.join(work, `layer-${diffHex}`);
            await mkdir(dir);
            await chmod(dir, 0o755);
            await extractLayer(layer.file.file, dir, {
              label: `"${layer.member}"`,
              shimPath: this.shimPath,
              hasWhiteouts: infos.get(layer.file.file)!.hasWhiteouts,
              tar: this.tarBin,
            });
            unpacked.set(diffHex, dir);
          }
        }

        const next = new Map(this.images);
        const tags = new Map(this.tags);
        const blobSources = new Map<string, string>();
        const loadedIds: string[] = [];
        for (const img of images) {
          const stored = this.merge(next.get(img.id), img, infos, blobSources);
          next.set(img.id, stored);
          for (const t of img.tags) moveTag(next, tags, t, img.id);
          if (!loadedIds.includes(img.id)) loadedIds.push(img.id);
        }

        // commit: blobs, then layers, then the index that makes them visible
        for (const [hex, source] of blobSources) {
          const dest = path.join(this.blobsDir, hex);
          if (await exists(dest)) continue;
          await rename(source, dest);
          added.push(dest);
        }
        for (const [diffHex, dir] of unpacked) {
          const dest = path.join(this.layersDir, diffHex);
          await rename(dir, dest);
          added.push(dest);
        }
        await this.writeIndex(next);
        this.setState(next);
        return loadedIds.map((id) => structuredClone(next.get(id)!.record));
      } catch (err) {
        for (const p of added.reverse()) await rm(p, { recursive: true, force: true });
        throw err;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });
  }

  /**
   * All images, in the order they were first loaded; without `all`, not the intermediate ones
   * (untagged images a build made another image from), as `docker images` hides them.
   */
  list(all = true): ImageRecord[] {
    const parents = this.parentsOfOthers();
    return [...this.images.values()]
      .filter((i) => all || i.record.repoTags.length > 0 || !parents.has(i.record.id))
      .map((i) => structuredClone(i.record));
  }

  /**
   * Finds an image by name[:tag] (tag defaults to latest; `docker.io/library/busybox:latest` is
   * `busybox`), name@sha256:digest (manifest digest or ID), full ID (with or without `sha256:`)
   * or an ID prefix of at least 4 hex digits. Throws notFound('no such image: REF'), or invalid
   * for a malformed reference or a prefix that matches more than one image.
   */
  resolve(ref: string): ImageRecord {
    return structuredClone(this.lookup(ref).image.record);
  }

  /** Adds tag `newRef` (name[:tag]) to the image `ref` resolves to, moving it off any other image. */
  tag(ref: string, newRef: string): Promise<void> {
    return this.exclusive(async () => {
      this.assertReady();
      const { image } = this.lookup(ref);
      const t = normalizeTag(newRef);
      if (this.tags.get(t) === image.record.id) return;
      const next = new Map([...this.images].map(([id, img]) => [id, structuredClone(img)]));
      const tags = new Map(this.tags);
      moveTag(next, tags, t, image.record.id);
      await this.writeIndex(next);
      this.setState(next);
    });
  }

  /**
   * Removes the tag `ref` names when the image has other tags; otherwise (last tag, or `ref` is
   * an ID) removes the image with all its tags. Refuses with conflict naming the container when
   * `inUse(id)` returns one — even then nothing is untagged. Layers and blobs no other image
   * references are deleted.
   */
  remove(
    ref: string,
    inUse: (imageId: string) => string | undefined,
  ): Promise<{ untagged: string[]; deleted: string[] }> {
    return this.exclusive(async () => {
      this.assertReady();
      const { image, tag } = this.lookup(ref);
      const id = image.record.id;
      const next = new Map([...this.images].map(([k, img]) => [k, structuredClone(img)]));
      if (tag !== undefined && image.record.repoTags.length > 1) {
        const img = next.get(id)!;
        img.record.repoTags = img.record.repoTags.filter((t) => t !== tag);
        await this.writeIndex(next);
        this.setState(next);
        return { untagged: [tag], deleted: [] };
      }
      const container = inUse(id);
      if (container !== undefined) {
        throw conflict(
          `unable to remove image ${ref} (${shortId(id)}): it is in use by container ${container}`,
        );
      }
      next.delete(id);
      await this.writeIndex(next);
      this.setState(next);
      await this.collectGarbage();
      return { untagged: [...image.record.repoTags], deleted: [id] };
    });
  }

  /**
   * Removes dangling images (untagged, and no image's parent), or with `all` every image no
   * container uses, then unreferenced layers and blobs and unfinished downloads. A build's
   * intermediate images hang from the image they built, so they stay until it goes.
   */
  prune(
    inUse: (imageId: string) => string | undefined,
    all: boolean,
  ): Promise<{ deleted: string[]; reclaimed: number }> {
    return this.exclusive(async () => {
      this.assertReady();
      const deleted: string[] = [];
      for (;;) {
        const parents = this.parentsOfOthers();
        const doomed = [...this.images.values()].filter(
          (i) =>
            inUse(i.record.id) === undefined &&
            (all || (i.record.repoTags.length === 0 && !parents.has(i.record.id))),
        );
        if (doomed.length === 0) break;
        const next = new Map(this.images);
        for (const d of doomed) {
          next.delete(d.record.id);
          deleted.push(d.record.id);
        }
        await this.writeIndex(next);
        this.setState(next);
        if (all) break;
      }
      let reclaimed = await this.collectGarbage();
      for (const name of await readdir(this.downloadsDir)) {
        if (this.heldDownloads.has(name.replace(/\.partial$/, ''))) continue;
        const p = path.join(this.downloadsDir, name);
        reclaimed += (await stat(p).catch(() => ({ size: 0 }))).size;
        await rm(p, { recursive: true, force: true });
      }
      return { deleted, reclaimed };
    });
  }

  /**
   * Writes one tar to `out` (and ends it): an OCI image layout (oci-layout, index.json whose
   * entries carry org.opencontainers.image.ref.name and io.containerd.image.name annotations,
   * blobs/sha256/…) plus a Docker manifest.json naming the same blobs, as Docker 25+ writes.
   * A ref that names a tag saves that tag; a ref by ID saves the image untagged.
   */
  async save(refs: string[], out: NodeJS.WritableStream): Promise<void> {
    if (refs.length === 0) throw invalid('no image to save');
    const handles = new Map<string, { fh: FileHandle; size: number }>();
    try {
      const picked = await this.exclusive(async () => {
        this.assertReady();
        const chosen = new Map<string, { image: StoredImage; tags: string[] }>();
        for (const ref of refs) {
          const { image, tag } = this.lookup(ref);
          const entry = chosen.get(image.record.id) ?? { image: structuredClone(image), tags: [] };
          if (tag !== undefined && !entry.tags.includes(tag)) entry.tags.push(tag);
          chosen.set(image.record.id, entry);
        }
        // open every blob now: a removal after the lock is released cannot pull them away
        for (const { image } of chosen.values()) {
          for (const d of [image.config, ...image.layerBlobs, ...(image.manifest ? [image.manifest] : [])]) {
            if (handles.has(d.digest)) continue;
            const file = path.join(this.blobsDir, hexOf(d.digest));
            const fh = await open(file, 'r').catch((err: Error) => {
              throw new TsswarmError('internal', `image store is missing blob ${d.digest} (${err.message})`, {
                cause: err,
              });
            });
            handles.set(d.digest, { fh, size: (await fh.stat()).size });
          }
        }
        return [...chosen.values()];
      });
      await pipeline(Readable.from(withRecordPadding(saveStream(picked, handles))), out);
    } finally {
      for (const { fh } of handles.values()) await fh.close().catch(() => undefined);
    }
  }

  /**
   * Records that image `id` was built from the images `uses` (a build's other stages): prune
   * keeps them while it exists, as it keeps an image's parent.
   */
  keepWith(id: string, uses: string[]): Promise<void> {
    return this.exclusive(async () => {
      const img = this.images.get(id);
      if (!img) return;
      const next = new Map(this.images);
      const copy = structuredClone(img);
      copy.uses = [...new Set([...(copy.uses ?? []), ...uses.filter((u) => u !== id)])];
      next.set(id, copy);
      await this.writeIndex(next);
      this.setState(next);
    });
  }

  /** Whether the store has this layer unpacked and its blob (so a pull can skip it). */
  hasLayer(diffId: string, blobDigest: string): boolean {
    return (
      existsSync(path.join(this.layersDir, hexOf(diffId))) &&
      existsSync(path.join(this.blobsDir, hexOf(blobDigest)))
    );
  }

  /** Where a stored blob is (for pushes and builds). */
  blobPath(digest: string): string {
    return path.join(this.blobsDir, hexOf(digest));
  }

  /** The stored form of an image: its blobs and manifest (generated when it came without one). */
  manifestOf(ref: string): {
    image: ImageRecord;
    /** False when the manifest was made here (the image came without one: a build, a legacy archive). */
    stored: boolean;
    manifest: Buffer;
    mediaType: string;
    config: BlobDescriptor;
    layers: BlobDescriptor[];
  } {
    const { image } = this.lookup(ref);
    const m = manifestFor(image);
    const bytes = m.bytes ?? readFileSync(path.join(this.blobsDir, hexOf(m.descriptor.digest)));
    return {
      image: structuredClone(image.record),
      stored: m.bytes === undefined,
      manifest: bytes,
      mediaType: m.descriptor.mediaType,
      config: { ...image.config },
      layers: image.layerBlobs.map((l) => ({ ...l })),
    };
  }

  /**
   * Checks a layer blob against the diff_id its image config declares and unpacks it into a new
   * directory under tmp/ (outside the store's lock, so several layers unpack at once). The
   * directory is handed to `commit`.
   */
  stageLayer(blob: string, diffId: string, label: string): Promise<StagedLayer> {
    return this.stageLayerFrom(createReadStream(blob), diffId, label);
  }

  /** stageLayer from a stream of the blob's bytes (a download unpacked as it arrives). */
  async stageLayerFrom(input: AsyncIterable<Buffer>, diffId: string, label: string): Promise<StagedLayer> {
    this.assertReady();
    const dir = await mkdtemp(path.join(this.tmpDir, 'layer-'));
    try {
      await chmod(dir, 0o755);
      const info = await unpackLayerStream(input, dir, { label, shimPath: this.shimPath, tar: this.tarBin });
      if (info.diffId !== diffId)
        throw badArchive(`layer ${label} has diff_id ${info.diffId}, its image config says ${diffId}`);
      return { dir, mediaType: LAYER_MEDIA_TYPES[info.compression], size: info.size };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Adds an image whose blobs were fetched or built and verified: the config and manifest bytes,
   * and per layer either a staged blob file and unpacked directory (moved in) or nothing (the
   * store has it, see hasLayer). Tags move to it. On any error nothing new is left in the store.
   */
  commit(input: CommitInput): Promise<ImageRecord> {
    return this.exclusive(async () => {
      this.assertReady();
      const parsed = parseImageConfig(input.config.bytes);
      if (parsed.diffIds.length !== input.layers.length)
        throw badArchive(
          `image config lists ${parsed.diffIds.length} layers, the manifest ${input.layers.length}`,
        );
      const id = input.config.digest;
      const added: string[] = [];
      try {
        const putBytes = async (digest: string, bytes: Buffer) => {
          const dest = path.join(this.blobsDir, hexOf(digest));
          if (await exists(dest)) return;
          const tmp = path.join(this.tmpDir, `blob-${hexOf(digest)}-${randomBytes(4).toString('hex')}`);
          await writeFile(tmp, bytes);
          await rename(tmp, dest);
          added.push(dest);
        };
        await putBytes(input.config.digest, input.config.bytes);
        if (input.manifest) await putBytes(input.manifest.digest, input.manifest.bytes);
        const sizes: number[] = [];
        for (const [i, l] of input.layers.entries()) {
          const diffHex = hexOf(parsed.diffIds[i]!);
          const blobDest = path.join(this.blobsDir, hexOf(l.descriptor.digest));
          const layerDest = path.join(this.layersDir, diffHex);
          if (l.staged) {
            if (!(await exists(blobDest))) {
              await rename(l.staged.blob, blobDest);
              added.push(blobDest);
            }
            if (!(await exists(layerDest))) {
              await rename(l.staged.dir, layerDest);
              added.push(layerDest);
            } else await rm(l.staged.dir, { recursive: true, force: true });
            sizes.push(l.staged.size);
          } else {
            if (!(await exists(blobDest)) || !(await exists(layerDest)))
              throw conflict(
                `layer ${parsed.diffIds[i]} was removed while the image was being added; try again`,
              );
            sizes.push(this.layerSize(parsed.diffIds[i]!));
          }
        }
        const next = new Map(this.images);
        const existing = next.get(id);
        const stored: StoredImage = existing
          ? structuredClone(existing)
          : {
              record: {
                id,
                repoTags: [],
                ...(parsed.created !== undefined ? { created: parsed.created } : {}),
                architecture: parsed.architecture,
                os: parsed.os,
                size: sizes.reduce((a, b) => a + b, 0),
                layers: [...parsed.diffIds],
                config: parsed.config,
              },
              config: {
                mediaType: input.config.mediaType,
                digest: input.config.digest,
                size: input.config.bytes.length,
              },
              layerBlobs: input.layers.map((l) => ({ ...l.descriptor })),
              layerSizes: sizes,
              ...(input.parent ? { parent: input.parent } : {}),
            };
        for (const d of input.extraDigests ?? []) {
          stored.digests ??= [];
          if (!stored.digests.includes(d)) stored.digests.push(d);
        }
        if (!stored.manifest && input.manifest) {
          stored.manifest = {
            mediaType: input.manifest.mediaType,
            digest: input.manifest.digest,
            size: input.manifest.bytes.length,
          };
        }
        next.set(id, stored);
        const tags = new Map(this.tags);
        for (const t of input.tags) moveTag(next, tags, normalizeTag(t), id);
        await this.writeIndex(next);
        this.setState(next);
        return structuredClone(next.get(id)!.record);
      } catch (err) {
        for (const p of added.reverse()) await rm(p, { recursive: true, force: true });
        throw err;
      } finally {
        for (const l of input.layers) if (l.staged) await rm(l.staged.dir, { recursive: true, force: true });
      }
    });
  }

  /** downloads/ entries of pulls in progress (hex digest → pulls holding it): prune leaves them. */
  private readonly heldDownloads = new Map<string, number>();

  holdDownloads(hexes: string[]): void {
    for (const h of hexes) this.heldDownloads.set(h, (this.heldDownloads.get(h) ?? 0) + 1);
  }

  releaseDownloads(hexes: string[]): void {
    for (const h of hexes) {
      const n = (this.heldDownloads.get(h) ?? 1) - 1;
      if (n > 0) this.heldDownloads.set(h, n);
      else this.heldDownloads.delete(h);
    }
  }

  /** Images another image was built from (its parent, or another stage of its build). */
  private parentsOfOthers(): Set<string> {
    return new Set(
      [...this.images.values()].flatMap((i) => [...(i.parent ? [i.parent] : []), ...(i.uses ?? [])]),
    );
  }

  /** The unpacked size of a layer, from any image that recorded it (0 when none did). */
  private layerSize(diffId: string): number {
    for (const img of this.images.values()) {
      const i = img.record.layers.indexOf(diffId);
      if (i >= 0 && img.layerSizes?.[i] !== undefined) return img.layerSizes[i]!;
    }
    return 0;
  }

  /** Overlay lower directories of an image (its full ID), top-most layer first. */
  layerDirs(imageId: string): string[] {
    const id = imageId.startsWith('sha256:') ? imageId : `sha256:${imageId}`;
    const img = this.images.get(id);
    if (!img) throw notFound(`no such image: ${imageId}`);
    return [...img.record.layers].reverse().map((d) => path.join(this.layersDir, hexOf(d)));
  }

  // ---------------------------------------------------------------------------------------------

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private assertReady(): void {
    if (!this.ready) throw new TsswarmError('internal', 'ImageStore.init() has not completed');
  }

  private setState(images: Map<string, StoredImage>): void {
    this.images = images;
    this.tags = new Map();
    for (const img of images.values()) for (const t of img.record.repoTags) this.tags.set(t, img.record.id);
  }

  /** The image `ref` names, and the tag it named it by (undefined for ID and digest references). */
  private lookup(ref: string): { image: StoredImage; tag?: string } {
    const r = ref.trim();
    if (r === '') throw invalid('empty image reference');
    if (r.startsWith('sha256:')) {
      const hex = r.slice(7);
      if (!isHexIdPrefix(hex))
        throw invalid(`invalid image ID "${ref}": expected sha256: and at least 4 hex digits`);
      return { image: this.byIdPrefix(hex, ref) };
    }
    let parseError: unknown;
    try {
      const p = parseReference(r);
      if (p.digest !== undefined) {
        for (const img of this.images.values()) {
          if (
            img.manifest?.digest === p.digest ||
            img.record.id === p.digest ||
            img.digests?.includes(p.digest)
          )
            return { image: img };
        }
        throw notFound(`no such image: ${ref}`);
      }
      const tag = normalizeTag(r);
      const id = this.tags.get(tag);
      if (id !== undefined) return { image: this.images.get(id)!, tag };
    } catch (err) {
      if (err instanceof TsswarmError && err.code === 'not_found') throw err;
      parseError = err;
    }
    if (isHexIdPrefix(r)) return { image: this.byIdPrefix(r, ref) };
    if (parseError) throw parseError;
    throw notFound(`no such image: ${ref}`);
  }

  private byIdPrefix(hex: string, ref: string): StoredImage {
    const matches = [...this.images.values()].filter((i) => hexOf(i.record.id).startsWith(hex));
    if (matches.length === 0) throw notFound(`no such image: ${ref}`);
    if (matches.length > 1)
      throw invalid(`ambiguous image ID prefix "${ref}": it matches ${matches.length} images`);
    return matches[0]!;
  }

  /** The stored form of an archive image, merged with what the store already has under its ID. */
  private merge(
    existing: StoredImage | undefined,
    img: ArchiveImage,
    infos: Map<string, { size: number }>,
    blobSources: Map<string, string>,
  ): StoredImage {
    const keep = (d: BlobDescriptor, source: string) => {
      blobSources.set(hexOf(d.digest), source);
      return d;
    };
    if (existing) {
      const merged = structuredClone(existing);
      // a manifest is kept only when it names exactly the blobs this image is stored with
      const sameBlobs =
        merged.layerBlobs.length === img.layers.length &&
        merged.layerBlobs.every((b, i) => b.digest === img.layers[i]!.digest) &&
        merged.config.digest === img.config.digest;
      if (!merged.manifest && img.manifest && sameBlobs) {
        merged.manifest = keep(
          { mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.file.size },
          img.manifest.file.file,
        );
      }
      return merged;
    }
    const record: ImageRecord = {
      id: img.id,
      repoTags: [],
      ...(img.parsed.created !== undefined ? { created: img.parsed.created } : {}),
      architecture: img.parsed.architecture,
      os: img.parsed.os,
      size: img.layers.reduce((sum, l) => sum + infos.get(l.file.file)!.size, 0),
      layers: [...img.parsed.diffIds],
      config: img.parsed.config,
    };
    return {
      record,
      config: keep(
        {
          mediaType: img.config.mediaType || MEDIA.ociConfig,
          digest: img.config.digest,
          size: img.config.file.size,
        },
        img.config.file.file,
      ),
      layerSizes: img.layers.map((l) => infos.get(l.file.file)!.size),
      layerBlobs: img.layers.map((l) =>
        keep({ mediaType: l.mediaType, digest: l.digest, size: l.file.size }, l.file.file),
      ),
      ...(img.manifest
        ? {
            manifest: keep(
              {
                mediaType: img.manifest.mediaType,
                digest: img.manifest.digest,
                size: img.manifest.file.size,
              },
              img.manifest.file.file,
            ),
          }
        : {}),
    };
  }

  private async writeIndex(images: Map<string, StoredImage>): Promise<void> {
    const body: IndexFile = { version: INDEX_VERSION, images: [...images.values()] };
    const tmp = `${this.indexPath}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(`${JSON.stringify(body, null, 1)}\n`);
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    try {
      await rename(tmp, this.indexPath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Deletes layers and blobs no image references (a layer is moved into tmp/ before it is
   * removed). Returns the bytes of the blobs deleted.
   */
  private async collectGarbage(): Promise<number> {
    let freed = 0;
    const layers = new Set<string>();
    const blobs = new Set<string>();
    for (const img of this.images.values()) {
      for (const d of img.record.layers) layers.add(hexOf(d));
      for (const b of [img.config, ...img.layerBlobs, ...(img.manifest ? [img.manifest] : [])])
        blobs.add(hexOf(b.digest));
    }
    for (const name of await readdir(this.layersDir)) {
      if (!HEX64.test(name) || layers.has(name)) continue;
      const doomed = path.join(this.tmpDir, `gc-${name}-${randomBytes(4).toString('hex')}`);
      await rename(path.join(this.layersDir, name), doomed);
      await rm(doomed, { recursive: true, force: true });
    }
    for (const name of await readdir(this.blobsDir)) {
      if (blobs.has(name)) continue;
      const p = path.join(this.blobsDir, name);
      freed += (await stat(p).catch(() => ({ size: 0 }))).size;
      await rm(p, { force: true });
    }
    return freed;
  }
}

/** Gives tag `t` to image `id`, taking it off whichever image had it. */
function moveTag(images: Map<string, StoredImage>, tags: Map<string, string>, t: string, id: string): void {
  const previous = tags.get(t);
  if (previous === id) return;
  if (previous !== undefined) {
    const old = images.get(previous);
    if (old) {
      const copy = structuredClone(old);
      copy.record.repoTags = copy.record.repoTags.filter((x) => x !== t);
      images.set(previous, copy);
    }
  }
  const img = images.get(id)!;
  if (!img.record.repoTags.includes(t)) {
    const copy = structuredClone(img);
    copy.record.repoTags.push(t);
    images.set(id, copy);
  }
  tags.set(t, id);
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

function jsonBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

/** The chunks of a saved archive. */
async function* saveStream(
  picked: Array<{ image: StoredImage; tags: string[] }>,
  handles: Map<string, { fh: FileHandle; size: number }>,
): AsyncGenerator<Buffer> {
  const written = new Set<string>();
  const generated = new Map<string, Buffer>();
  const indexEntries: object[] = [];
  const dockerEntries: object[] = [];
  const manifests = picked.map(({ image, tags }) => {
    const { descriptor: manifest, bytes } = manifestFor(image);
    if (bytes) generated.set(manifest.digest, bytes);
    const descriptor = {
      mediaType: manifest.mediaType || MEDIA.ociManifest,
      digest: manifest.digest,
      size: manifest.size,
    };
    if (tags.length === 0) indexEntries.push(descriptor);
    for (const t of tags) {
      indexEntries.push({
        ...descriptor,
        annotations: { [ANNOTATION_CONTAINERD_NAME]: qualifiedTag(t), [ANNOTATION_REF_NAME]: tagOf(t) },
      });
    }
    dockerEntries.push({
      Config: `blobs/sha256/${hexOf(image.config.digest)}`,
      RepoTags: tags,
      Layers: image.layerBlobs.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
    });
    return { image, manifest };
  });

  yield encodeEntry({ path: 'oci-layout', type: 'file' }, jsonBytes({ imageLayoutVersion: MEDIA.ociLayout }));
  yield encodeEntry({ path: 'blobs/', type: 'dir' });
  yield encodeEntry({ path: 'blobs/sha256/', type: 'dir' });
  for (const { image, manifest } of manifests) {
    for (const d of [...image.layerBlobs, image.config, manifest]) {
      if (written.has(d.digest)) continue;
      written.add(d.digest);
      const member = `blobs/sha256/${hexOf(d.digest)}`;
      const bytes = generated.get(d.digest);
      if (bytes) {
        yield encodeEntry({ path: member, type: 'file' }, bytes);
        continue;
      }
      const { fh, size } = handles.get(d.digest)!;
      if (size !== d.size) {
        throw new TsswarmError(
          'internal',
          `image store blob ${d.digest} has ${size} bytes, expected ${d.size}`,
        );
      }
      yield encodeHeader({ path: member, type: 'file', size });
      let pos = 0;
      while (pos < size) {
        const chunk = Buffer.allocUnsafe(Math.min(1 << 20, size - pos));
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
        if (bytesRead === 0)
          throw new TsswarmError('internal', `image store blob ${d.digest} is shorter than ${size} bytes`);
        pos += bytesRead;
        yield chunk.subarray(0, bytesRead);
      }
      yield padding(size);
    }
  }
  yield encodeEntry(
    { path: 'index.json', type: 'file' },
    jsonBytes({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: indexEntries }),
  );
  yield encodeEntry({ path: 'manifest.json', type: 'file' }, jsonBytes(dockerEntries));
}

/** An image's manifest: the one it came with, or an OCI manifest made from its blobs (with its bytes). */
function manifestFor(image: StoredImage): { descriptor: BlobDescriptor; bytes?: Buffer } {
  if (image.manifest) return { descriptor: image.manifest };
  const bytes = jsonBytes({
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: image.config.mediaType, digest: image.config.digest, size: image.config.size },
    layers: image.layerBlobs.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  return {
    descriptor: { mediaType: MEDIA.ociManifest, digest: `sha256:${sha256(bytes)}`, size: bytes.length },
    bytes,
  };
}

/** Appends the end-of-archive blocks, padded to a whole tar record. */
async function* withRecordPadding(chunks: AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
  let written = 0;
  for await (const c of chunks) {
    written += c.length;
    yield c;
  }
  yield endOfArchive(written);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
