/**
 * `image push`: every blob the registry lacks is uploaded (in parallel, with progress) — unless
 * it is there already (HEAD) or can be mounted from another repository of the same registry the
 * image is also tagged in — then the manifest is put under the tag.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { invalid } from '../../api/errors.js';
import { parseReference } from '../images/reference.js';
import type { ImageStore } from '../images/store.js';
import type { BlobDescriptor } from '../images/types.js';
import type { RegistryCredentials } from './auth.js';
import { Repository } from './client.js';
import { mapLimit, type ProgressEvent, progressCounter } from './pull.js';
import { type RegistryOptions, RegistrySession } from './transport.js';

export interface PushOptions {
  creds?: RegistryCredentials;
  onProgress?: (e: ProgressEvent) => void;
  concurrency?: number;
}

const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

/** Pushes the local image `ref` (NAME[:TAG]) to the registry its name names. Returns the manifest digest. */
export async function pushImage(
  store: ImageStore,
  ref: string,
  registry: RegistryOptions,
  o: PushOptions = {},
): Promise<{ digest: string; size: number; tag: string }> {
  const p = parseReference(ref.trim());
  if (p.digest) throw invalid(`cannot push ${ref}: push a tag, not a digest`);
  const tag = p.tag ?? 'latest';
  const local = store.manifestOf(ref);
  const emit = o.onProgress ?? (() => undefined);
  const session = new RegistrySession(p.domain, o.creds, registry);
  try {
    const repo = new Repository(session, p.path);
    emit({ status: `The push refers to repository [${repo.name}]` });
    // other repositories of this registry that hold the image: blobs can be mounted from them
    const mountFrom = local.image.repoTags
      .map((t) => parseReference(t))
      .filter((r) => r.domain === p.domain && r.path !== p.path)
      .map((r) => r.path);
    const blobs: BlobDescriptor[] = [...local.layers, local.config];
    await mapLimit(blobs, o.concurrency ?? 4, async (b) => {
      const id = short(b.digest);
      emit({ id, status: 'Preparing' });
      if (await repo.hasBlob(b.digest)) {
        emit({ id, status: 'Layer already exists' });
        return;
      }
      let location: string | undefined;
      for (const from of mountFrom) {
        const r = await repo.startUpload(b.digest, from);
        if ('mounted' in r) {
          emit({ id, status: `Mounted from ${from}` });
          return;
        }
        location = r.location;
        break;
      }
      if (!location) {
        const r = await repo.startUpload(b.digest);
        if ('mounted' in r) return;
        location = r.location;
      }
      const file = store.blobPath(b.digest);
      await repo.putBlob(location, b.digest, b.size, () => {
        const counter = progressCounter(
          0,
          () => undefined,
          (current) => emit({ id, status: 'Pushing', current, total: b.size }),
        );
        // a blob that cannot be read ends the upload with that error
        const source = createReadStream(file);
        source.on('error', (err) => counter.destroy(err));
        return source.pipe(counter);
      });
      emit({ id, status: 'Pushed' });
    });
    const digest = await repo.putManifest(tag, local.mediaType, local.manifest);
    if (!local.stored) {
      // the image is now known by this manifest's digest here too (`name@digest` resolves)
      await store.commit({
        config: { ...local.config, bytes: await readFile(store.blobPath(local.config.digest)) },
        manifest: { digest, mediaType: local.mediaType, bytes: local.manifest },
        layers: local.layers.map((descriptor) => ({ descriptor })),
        tags: [],
      });
    }
    emit({ status: `${tag}: digest: ${digest} size: ${local.manifest.length}` });
    return { digest, size: local.manifest.length, tag };
  } finally {
    await session.close().catch(() => undefined);
  }
}
