/**
 * Finds the images in a staged archive — an OCI image layout, a `docker save` archive in the
 * legacy `<id>/layer.tar` form, or Docker 25+'s OCI layout with a manifest.json — and verifies
 * every blob digest and descriptor size. Layer diff_ids are verified by `verifyLayers`.
 */
import { readFile } from 'node:fs/promises';
import { TsswarmError } from '../../api/errors.js';
import { archiveError, type StagedArchive, type StagedFile, safeMemberPath } from './archive-reader.js';
import { inspectLayer, LAYER_MEDIA_TYPES, type LayerInfo } from './layer.js';
import {
  ANNOTATION_CONTAINERD_NAME,
  ANNOTATION_REF_NAME,
  type Descriptor,
  hostPlatform,
  isIndexType,
  isManifestType,
  MEDIA,
  type ParsedConfig,
  parseDockerManifest,
  parseImageConfig,
  parseJson,
  parseOciIndex,
  parseOciManifest,
} from './oci.js';
import { normalizeTag, parseReference } from './reference.js';

const MAX_JSON = 16 << 20;

export interface ArchiveBlob {
  file: StagedFile;
  /** 'sha256:<hex>' of the bytes as received. */
  digest: string;
  /** Media type as the archive declared it; empty when the archive form has none. */
  mediaType: string;
  /** Member path, for error messages. */
  member: string;
}

export interface ArchiveImage {
  /** 'sha256:<hex>' of the config blob: the image ID. */
  id: string;
  config: ArchiveBlob;
  parsed: ParsedConfig;
  layers: ArchiveBlob[];
  manifest?: ArchiveBlob;
  /** Normalized familiar tags. */
  tags: string[];
}

export type ArchiveFormat = 'oci' | 'docker';

async function readSmall(file: StagedFile, what: string): Promise<Buffer> {
  if (file.size > MAX_JSON) throw archiveError(`${what} is too large (${file.size} bytes)`);
  return readFile(file.file);
}

function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

/** Every file under blobs/sha256/ must hash to its name. */
function verifyBlobDigests(staged: StagedArchive): void {
  for (const [member, f] of staged.files) {
    const m = /^blobs\/sha256\/([^/]+)$/.exec(member);
    if (!m) continue;
    if (!/^[a-f0-9]{64}$/.test(m[1]!)) throw archiveError(`blob "${member}" is not named by a sha256 digest`);
    if (f.sha256 !== m[1]) throw archiveError(`blob sha256:${m[1]} does not match its digest`);
  }
}

function blobFor(staged: StagedArchive, d: Descriptor, what: string): ArchiveBlob {
  const member = `blobs/sha256/${hexOf(d.digest)}`;
  const file = staged.get(member);
  if (!file) throw archiveError(`${what} ${d.digest} is missing from the archive`);
  if (file.sha256 !== hexOf(d.digest)) throw archiveError(`blob ${d.digest} does not match its digest`);
  if (file.size !== d.size) {
    throw archiveError(`${what} ${d.digest} has ${file.size} bytes, its descriptor says ${d.size}`);
  }
  return { file, digest: d.digest, mediaType: d.mediaType, member };
}

function memberFile(staged: StagedArchive, member: string, what: string): ArchiveBlob {
  const p = safeMemberPath(member);
  const file = p === undefined ? undefined : staged.get(p);
  if (!file) throw archiveError(`${what} "${member}" is missing from the archive`);
  return { file, digest: `sha256:${file.sha256}`, mediaType: '', member: p! };
}

function tagOrArchiveError(tag: string, where: string): string {
  try {
    return normalizeTag(tag);
  } catch (err) {
    throw archiveError(`${where} has an invalid image name "${tag}"`, err);
  }
}

/** Names an OCI index entry carries: containerd's full name, else a ref.name that is a full reference. */
function namesOf(d: Descriptor, where: string): string[] {
  const containerd = d.annotations?.[ANNOTATION_CONTAINERD_NAME];
  if (containerd) return [tagOrArchiveError(containerd, where)];
  const refName = d.annotations?.[ANNOTATION_REF_NAME];
  if (!refName) return [];
  // a bare 'latest' is a tag without a repository: nothing to name the image by
  if (!refName.includes(':') && !refName.includes('/')) return [];
  try {
    const r = parseReference(refName);
    if (r.digest !== undefined) return [];
  } catch {
    return [];
  }
  return [tagOrArchiveError(refName, where)];
}

function platformMatches(d: Descriptor, host: { os: string; architecture: string }): boolean {
  return d.platform?.os === host.os && d.platform?.architecture === host.architecture;
}

async function imageFromManifest(
  staged: StagedArchive,
  manifestBlob: ArchiveBlob,
  tags: string[],
): Promise<ArchiveImage> {
  const what = `manifest ${manifestBlob.digest}`;
  const m = parseOciManifest(parseJson(await readSmall(manifestBlob.file, what), what), what);
  const config = blobFor(staged, m.config, `config blob of ${what}`);
  const layers = m.layers.map((l, i) => blobFor(staged, l, `layer ${i} of ${what}`));
  const parsed = parseImageConfig(await readSmall(config.file, `config ${config.digest}`));
  return { id: config.digest, config, parsed, layers, manifest: manifestBlob, tags };
}

async function readOci(staged: StagedArchive): Promise<ArchiveImage[]> {
  const layoutFile = staged.get('oci-layout');
  if (!layoutFile) throw archiveError('oci-layout file is missing');
  const layout = parseJson(await readSmall(layoutFile, 'oci-layout'), 'oci-layout') as {
    imageLayoutVersion?: unknown;
  };
  if (typeof layout !== 'object' || layout === null || typeof layout.imageLayoutVersion !== 'string') {
    throw archiveError('oci-layout has no imageLayoutVersion');
  }
  const indexFile = staged.get('index.json')!;
  const index = parseOciIndex(parseJson(await readSmall(indexFile, 'index.json'), 'index.json'));
  const host = hostPlatform();
  const images: ArchiveImage[] = [];
  const visit = async (d: Descriptor, tags: string[], where: string, depth: number): Promise<void> => {
    if (depth > 4) throw archiveError(`${where}: image indexes nested too deeply`);
    const blob = blobFor(staged, d, where);
    let mediaType = d.mediaType;
    let doc: unknown;
    if (!mediaType) {
      doc = parseJson(await readSmall(blob.file, where), where);
      mediaType = String((doc as { mediaType?: unknown })?.mediaType ?? MEDIA.ociManifest);
      blob.mediaType = mediaType;
    }
    if (isManifestType(mediaType)) {
      images.push(await imageFromManifest(staged, blob, tags));
      return;
    }
    if (isIndexType(mediaType)) {
      doc ??= parseJson(await readSmall(blob.file, where), where);
      const nested = parseOciIndex(doc, `index ${d.digest}`);
      const candidates = nested.manifests.filter(
        (m) => isManifestType(m.mediaType) || isIndexType(m.mediaType),
      );
      const pick =
        candidates.find((m) => platformMatches(m, host)) ??
        (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
      if (!pick) throw archiveError(`index ${d.digest} has no image for ${host.os}/${host.architecture}`);
      await visit(pick, tags, `index ${d.digest}`, depth + 1);
      return;
    }
    // other artifacts (signatures, attestations, ...) are not images: skip them
  };
  for (const [i, d] of index.manifests.entries()) {
    await visit(d, namesOf(d, `index.json manifests[${i}]`), `index.json manifests[${i}]`, 0);
  }
  return images;
}

async function readDocker(staged: StagedArchive): Promise<ArchiveImage[]> {
  const mf = staged.get('manifest.json')!;
  const entries = parseDockerManifest(parseJson(await readSmall(mf, 'manifest.json'), 'manifest.json'));
  const images: ArchiveImage[] = [];
  for (const [i, e] of entries.entries()) {
    const where = `manifest.json entry ${i}`;
    const config = memberFile(staged, e.Config, `config file of ${where}`);
    const named =
      /^(?:.*\/)?([a-f0-9]{64})\.json$/.exec(config.member) ??
      /^blobs\/sha256\/([a-f0-9]{64})$/.exec(config.member);
    if (named && named[1] !== config.file.sha256) {
      throw archiveError(`config ${config.member} does not match its digest sha256:${named[1]}`);
    }
    config.mediaType = MEDIA.ociConfig;
    const parsed = parseImageConfig(await readSmall(config.file, `config ${config.member}`));
    const layers = e.Layers.map((l, j) => memberFile(staged, l, `layer ${j} of ${where}`));
    const tags = e.RepoTags.map((t) => tagOrArchiveError(t, where));
    images.push({ id: config.digest, config, parsed, layers, tags });
  }
  return images;
}

/**
 * The images of a staged archive. manifest.json wins when both it and index.json are present
 * (as `docker load` does); every blob under blobs/sha256 is checked against its name either way.
 */
export async function readArchiveImages(
  staged: StagedArchive,
): Promise<{ format: ArchiveFormat; images: ArchiveImage[] }> {
  verifyBlobDigests(staged);
  let format: ArchiveFormat;
  let images: ArchiveImage[];
  if (staged.get('manifest.json')) {
    format = 'docker';
    images = await readDocker(staged);
  } else if (staged.get('index.json')) {
    format = 'oci';
    images = await readOci(staged);
  } else {
    throw archiveError('neither manifest.json (docker save) nor index.json (OCI layout) found');
  }
  if (images.length === 0) throw archiveError('the archive contains no image');
  for (const img of images) {
    if (img.layers.length !== img.parsed.diffIds.length) {
      throw archiveError(
        `image ${img.id} lists ${img.layers.length} layers but its config has ${img.parsed.diffIds.length} diff_ids`,
      );
    }
  }
  return { format, images };
}

/**
 * Inspects every distinct layer blob once and checks it against the diff_id the image config
 * declares for it. Returns the inspection per staged file path.
 */
export async function verifyLayers(images: ArchiveImage[]): Promise<Map<string, LayerInfo>> {
  const infos = new Map<string, LayerInfo>();
  for (const img of images) {
    for (const [i, layer] of img.layers.entries()) {
      let info = infos.get(layer.file.file);
      if (!info) {
        try {
          info = await inspectLayer(layer.file.file, `"${layer.member}"`);
        } catch (err) {
          if (err instanceof TsswarmError) throw err;
          throw archiveError(`layer "${layer.member}" cannot be read (${(err as Error).message})`, err);
        }
        infos.set(layer.file.file, info);
      }
      const expected = img.parsed.diffIds[i]!;
      if (info.diffId !== expected) {
        throw archiveError(
          `layer "${layer.member}" of image ${img.id} has diff_id ${info.diffId}, its config says ${expected}`,
        );
      }
      if (!layer.mediaType) layer.mediaType = LAYER_MEDIA_TYPES[info.compression];
    }
  }
  return infos;
}
