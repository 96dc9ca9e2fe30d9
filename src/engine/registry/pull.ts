/**
 * `image pull`: manifest (an index picks the platform's manifest), config, then the layers in
 * parallel — each downloaded into the store's downloads/ (a `.partial` file resumes with a
 * Range request), verified by digest, checked against its diff_id and unpacked — and one
 * commit. A layer the store has is not fetched; a finished download an interrupted pull left
 * is not fetched again. One pull per reference (and one download per blob) runs at a time on a
 * node; later callers share it and its progress.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Transform, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { invalid, notFound, registryError, TsswarmError } from '../../api/errors.js';
import {
  type Descriptor,
  hostPlatform,
  isIndexType,
  isManifestType,
  MEDIA,
  type Platform,
  parseJson,
  parseOciIndex,
  parseOciManifest,
} from '../images/oci.js';
import { normalizeTag, parseReference } from '../images/reference.js';
import type { ImageRecord, ImageStore, StagedLayer } from '../images/store.js';
import type { RegistryCredentials } from './auth.js';
import { Repository, sha256Hex } from './client.js';
import { type SharedWork, SharedWorks } from './shared.js';
import { type RegistryOptions, RegistrySession } from './transport.js';

/** One progress line, Docker's shape: a layer's id (12 hex) or none for the whole image. */
export interface ProgressEvent {
  id?: string;
  status: string;
  current?: number;
  total?: number;
}

export interface PullOptions {
  creds?: RegistryCredentials;
  platform?: Platform;
  onProgress?: (e: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface PullResult {
  image: ImageRecord;
  /** Digest of what the reference named (an index's digest when it named an index). */
  digest: string;
  /** The tag the image got ('' for a digest reference). */
  tag: string;
}

const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

/**
 * A pass-through that counts bytes (from `start`), calls `onChunk` with each chunk and the count,
 * and `report` with the count at most every 200 ms (progress lines).
 */
export function progressCounter(
  start: number,
  onChunk: (chunk: Buffer, count: number) => void,
  report: (count: number) => void,
): Transform {
  let count = start;
  let last = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      count += chunk.length;
      onChunk(chunk, count);
      const now = Date.now();
      if (now - last > 200) {
        last = now;
        report(count);
      }
      cb(null, chunk);
    },
  });
}

/** `os/arch[/variant]`, as `--platform` takes it. */
export function parsePlatform(s: string | undefined): Platform {
  if (!s) return hostPlatform();
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_]+$/.test(p)))
    throw invalid(`invalid platform "${s}": use os/arch[/variant], e.g. linux/amd64`);
  return { os: parts[0], architecture: parts[1], ...(parts[2] ? { variant: parts[2] } : {}) };
}

/** The manifest of an index for a platform (a variant is matched only when asked for). */
export function pickPlatform(manifests: Descriptor[], p: Platform): Descriptor | undefined {
  const images = manifests.filter((m) => isManifestType(m.mediaType) || !m.mediaType);
  const fits = images.filter(
    (m) =>
      m.platform?.os === p.os &&
      m.platform?.architecture === p.architecture &&
      (p.variant === undefined || m.platform?.variant === p.variant),
  );
  return fits[0];
}

export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

async function hashFile(file: string): Promise<{ hash: ReturnType<typeof createHash>; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(c);
    size += c.length;
  }
  return { hash, size };
}

const sizeOf = (p: string) =>
  stat(p)
    .then((s) => s.size)
    .catch(() => -1);

export class ImagePuller {
  private readonly pulls = new SharedWorks<PullResult>();
  /** Per pull: who follows its progress, and the last event of each layer (replayed to joiners). */
  private readonly followers = new WeakMap<
    SharedWork<PullResult>,
    { listeners: Set<(e: ProgressEvent) => void>; last: Map<string, ProgressEvent> }
  >();
  private readonly downloads = new SharedWorks<{ file: string; staged: StagedLayer }>();
  /** How many pulls hold each staged (unpacked, not yet committed) layer directory. */
  private readonly stagedUsers = new Map<string, number>();

  constructor(
    private readonly store: ImageStore,
    private readonly registry: RegistryOptions = {},
    private readonly concurrency = 4,
  ) {}

  /**
   * Pulls `ref`; a pull of the same reference already running is joined instead. `o.signal`
   * ends this caller's wait; the pull itself stops when every caller's signal has aborted (its
   * finished downloads and the partial one are kept for the next pull).
   */
  pull(ref: string, o: PullOptions = {}): Promise<PullResult> {
    const p = parseReference(ref.trim());
    // a pull with other credentials is another pull (it may be allowed what this one is not)
    const who = o.creds ? sha256Hex(Buffer.from(JSON.stringify(o.creds))).slice(0, 16) : '';
    const key = `${p.domain}/${p.path}${p.digest ? `@${p.digest}` : `:${p.tag ?? 'latest'}`}|${JSON.stringify(o.platform ?? {})}|${who}`;
    const listeners = new Set<(e: ProgressEvent) => void>();
    const last = new Map<string, ProgressEvent>();
    const { work, created } = this.pulls.obtain(key, (signal) =>
      this.run(ref.trim(), { ...o, signal }, (e) => {
        last.set(e.id ?? '', e);
        for (const l of listeners) l(e);
      }),
    );
    if (created) this.followers.set(work, { listeners, last });
    const followers = this.followers.get(work)!;
    if (!created) for (const e of followers.last.values()) o.onProgress?.(e);
    const listener = o.onProgress;
    if (listener) followers.listeners.add(listener);
    return work.join(o.signal).finally(() => {
      if (listener) followers.listeners.delete(listener);
    });
  }

  private async run(ref: string, o: PullOptions, emit: (e: ProgressEvent) => void): Promise<PullResult> {
    const p = parseReference(ref);
    const reference = p.digest ?? p.tag ?? 'latest';
    const session = new RegistrySession(p.domain, o.creds, this.registry);
    try {
      const repo = new Repository(session, p.path);
      const display = p.digest ? reference : `${reference}`;
      emit({ status: `Pulling from ${p.path.replace(/^library\//, '')}${p.digest ? '' : `:${display}`}` });
      const top = await repo.manifest(reference, o.signal);
      let m = top;
      if (isIndexType(top.mediaType)) {
        const index = parseOciIndex(parseJson(top.bytes, 'manifest list'), `manifest list ${repo.name}`);
        const platform: Platform = o.platform ?? hostPlatform();
        const pick = pickPlatform(index.manifests, platform);
        const want = `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
        if (!pick)
          throw notFound(
            `no matching manifest for ${want} in the manifest list of ${repo.name}:${reference}`,
          );
        m = await repo.manifest(pick.digest, o.signal);
      }
      if (!isManifestType(m.mediaType))
        throw registryError(
          `${repo.name}:${reference} is a ${m.mediaType || 'document of unknown type'}, not an image`,
        );
      const manifest = parseOciManifest(parseJson(m.bytes, 'manifest'), `manifest ${m.digest}`);
      const configType = manifest.config.mediaType;
      if (configType !== MEDIA.ociConfig && configType !== MEDIA.dockerConfig)
        throw registryError(`${repo.name}:${reference} is an artifact (${configType}), not an image`);
      const configBytes = await repo.blobBytes(
        manifest.config.digest,
        manifest.config.size,
        `config ${manifest.config.digest}`,
        o.signal,
      );
      const cfg = parseJson(configBytes, 'image config') as { rootfs?: { diff_ids?: string[] } };
      const diffIds = cfg.rootfs?.diff_ids ?? [];
      if (diffIds.length !== manifest.layers.length)
        throw registryError(
          `image config of ${repo.name} lists ${diffIds.length} layers, its manifest ${manifest.layers.length}`,
        );

      // downloads/ entries of this pull are kept from `image prune` until it is committed; the
      // layers it unpacked are removed if it fails
      const held = manifest.layers.map((l) => l.digest.replace(/^sha256:/, ''));
      this.store.holdDownloads(held);
      const unpacked: string[] = [];
      const created: Promise<unknown>[] = [];
      try {
        const layers = await mapLimit(manifest.layers, this.concurrency, async (l, i) => {
          const id = short(l.digest);
          if (this.store.hasLayer(diffIds[i]!, l.digest)) {
            emit({ id, status: 'Already exists' });
            return { descriptor: { mediaType: l.mediaType, digest: l.digest, size: l.size } };
          }
          emit({ id, status: 'Waiting' });
          const { file, staged } = await this.download(repo, l, diffIds[i]!, emit, o.signal, created);
          this.holdStaged(staged.dir);
          unpacked.push(staged.dir);
          emit({ id, status: 'Pull complete' });
          return {
            descriptor: { mediaType: l.mediaType || staged.mediaType, digest: l.digest, size: l.size },
            staged: { blob: file, dir: staged.dir, size: staged.size },
          };
        });
        const tag = p.digest ? '' : normalizeTag(ref);
        const image = await this.store.commit({
          config: { digest: manifest.config.digest, mediaType: configType, bytes: configBytes },
          manifest: { digest: m.digest, mediaType: m.mediaType, bytes: m.bytes },
          layers,
          tags: tag ? [tag] : [],
          ...(top.digest !== m.digest ? { extraDigests: [top.digest] } : {}),
        });
        for (const dir of unpacked) await this.releaseStaged(dir, false); // (the store took them)
        emit({ status: `Digest: ${top.digest}` });
        emit({ status: `Status: Downloaded image for ${ref}` });
        return { image, digest: top.digest, tag };
      } catch (err) {
        for (const dir of unpacked) await this.releaseStaged(dir, true);
        throw err;
      } finally {
        // downloads this pull started may serve other pulls still: they keep its session and holds
        await Promise.allSettled(created);
        this.store.releaseDownloads(held);
      }
    } finally {
      await session.close().catch(() => undefined);
    }
  }

  /**
   * A verified blob file in downloads/ and its layer unpacked (one download per digest at a
   * time). A fresh download is unpacked while it arrives; a finished or partial one an earlier
   * pull left is completed (Range) and unpacked from the file.
   */
  private download(
    repo: Repository,
    d: Descriptor,
    diffId: string,
    emit: (e: ProgressEvent) => void,
    signal: AbortSignal | undefined,
    created: Promise<unknown>[],
  ): Promise<{ file: string; staged: StagedLayer }> {
    const { work, created: isNew } = this.downloads.obtain(d.digest, (own) =>
      this.fetchLayer(repo, d, diffId, emit, own),
    );
    if (isNew)
      created.push(
        work.done.then(
          // finished when no pull waited any more: nobody takes its unpacked layer
          async (r) => {
            if (work.abandoned) await rm(r.staged.dir, { recursive: true, force: true });
          },
          () => {},
        ),
      );
    return work.join(signal);
  }

  /** A pull took a staged layer from a download (other pulls of the blob may have it too). */
  private holdStaged(dir: string): void {
    this.stagedUsers.set(dir, (this.stagedUsers.get(dir) ?? 0) + 1);
  }

  /** A pull is done with a staged layer; the last one removes it when the store did not take it. */
  private async releaseStaged(dir: string, remove: boolean): Promise<void> {
    const users = (this.stagedUsers.get(dir) ?? 1) - 1;
    if (users > 0) {
      this.stagedUsers.set(dir, users);
      return;
    }
    this.stagedUsers.delete(dir);
    if (remove) await rm(dir, { recursive: true, force: true });
  }

  private async fetchLayer(
    repo: Repository,
    d: Descriptor,
    diffId: string,
    emit: (e: ProgressEvent) => void,
    signal?: AbortSignal,
  ): Promise<{ file: string; staged: StagedLayer }> {
    const id = short(d.digest);
    const label = `${d.digest} of ${repo.name}`;
    const hex = d.digest.replace(/^sha256:/, '');
    const final = join(this.store.downloadsDir, hex);
    const partial = `${final}.partial`;
    const fromFile = async () => {
      emit({ id, status: 'Extracting', total: d.size });
      const staged = await this.store.stageLayer(final, diffId, label).catch(async (err) => {
        await rm(final, { force: true }); // verified bytes that are not the layer the config names
        throw err;
      });
      return { file: final, staged };
    };
    if ((await sizeOf(final)) === d.size) {
      const { hash } = await hashFile(final);
      if (hash.digest('hex') === hex) {
        emit({ id, status: 'Download complete', current: d.size, total: d.size });
        return fromFile();
      }
      await rm(final, { force: true });
    }
    let offset = Math.max(0, await sizeOf(partial));
    if (offset > d.size) {
      await rm(partial, { force: true });
      offset = 0;
    }
    let hash = createHash('sha256');
    if (offset > 0) hash = (await hashFile(partial)).hash;
    const got = await repo.blob(d.digest, offset, signal);
    if (offset > 0 && !got.partial) {
      await truncate(partial, 0);
      offset = 0;
      hash = createHash('sha256');
    }
    if (offset > 0) emit({ id, status: `Resuming from ${offset} bytes`, current: offset, total: d.size });
    let current = offset;
    const counter = progressCounter(
      offset,
      (chunk, n) => {
        hash.update(chunk);
        current = n;
      },
      (n) => emit({ id, status: 'Downloading', current: n, total: d.size }),
    );
    // a fresh download is unpacked as it arrives; a resumed one once complete
    const file = createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' });
    const feed = offset === 0 ? new PassThrough() : undefined;
    const unpacking = feed ? this.store.stageLayerFrom(feed, diffId, label) : undefined;
    const sink = feed ? tee(file, feed) : file;
    // a refused layer stops its download (the body may have ended: the tee still waits on feed)
    unpacking?.catch((err: unknown) => {
      got.body.destroy(err as Error);
      sink.destroy(err as Error);
    });
    try {
      await pipeline(got.body, counter, sink);
    } catch (err) {
      await finished(file).catch(() => {}); // what it holds is on disk before another download resumes it
      const unpackErr = await unpacking?.then(
        async (staged) => {
          await rm(staged.dir, { recursive: true, force: true });
          return undefined;
        },
        (e: unknown) => e,
      );
      // the layer's content was refused (the download was stopped for it): nothing is kept
      if (unpackErr !== undefined && unpackErr === err) {
        await rm(partial, { force: true });
        throw unpackErr;
      }
      if (err instanceof TsswarmError) throw err;
      throw registryError(
        `download of ${d.digest} from ${repo.name} was interrupted (${(err as Error).message}); pull again to resume`,
        err,
      );
    }
    const digest = `sha256:${hash.digest('hex')}`;
    if (current !== d.size || digest !== d.digest) {
      await rm(partial, { force: true });
      const staged = await unpacking?.catch(() => undefined);
      if (staged) await rm(staged.dir, { recursive: true, force: true });
      throw new TsswarmError(
        'bad_archive',
        `blob ${d.digest} from ${repo.name} does not match its descriptor (got ${current} bytes with digest ${digest}, expected ${d.size} bytes): refused, nothing was kept`,
      );
    }
    await rename(partial, final);
    emit({ id, status: 'Download complete', current, total: d.size });
    if (!unpacking) return fromFile();
    emit({ id, status: 'Extracting', total: d.size });
    try {
      return { file: final, staged: await unpacking };
    } catch (err) {
      await rm(final, { force: true }); // verified bytes that are not the layer the config names
      throw err;
    }
  }
}

/**
 * A writable that writes every chunk to both `a` and `b`, waiting for whichever is slower; an
 * error of either ends it (and so the pipeline it is in).
 */
function tee(a: Writable, b: Writable): Writable {
  // (a destroyed stream never drains: its close ends the wait, and its error the tee)
  const drained = (w: Writable) =>
    new Promise<void>((resolve) => {
      const done = () => {
        w.off('drain', done);
        w.off('close', done);
        resolve();
      };
      w.once('drain', done);
      w.once('close', done);
    });
  const finished = (w: Writable) => new Promise<void>((resolve) => w.once('finish', resolve));
  const out: Writable = new Writable({
    write(chunk: Buffer, _e, cb) {
      const waits: Promise<void>[] = [];
      if (!a.write(chunk)) waits.push(drained(a));
      if (!b.write(chunk)) waits.push(drained(b));
      if (waits.length === 0) cb();
      else Promise.all(waits).then(() => cb(), cb);
    },
    final(cb) {
      const done = Promise.all([finished(a), finished(b)]);
      a.end();
      b.end();
      done.then(() => cb(), cb);
    },
    destroy(err, cb) {
      // (also called after a normal finish: then the reader still drains what b holds)
      if (err) {
        // the file keeps what was written (a later pull resumes from it); the reader learns why
        a.end();
        b.destroy(err);
      }
      cb(err);
    },
  });
  for (const w of [a, b]) w.on('error', (err: Error) => out.destroy(err));
  return out;
}

export { sha256Hex };
