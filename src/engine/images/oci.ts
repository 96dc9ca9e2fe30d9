/**
 * OCI image-spec and Docker archive documents: media types, and pure parsers that turn untrusted
 * JSON into checked values (throwing one-line `badArchive` errors that say what is wrong).
 */
import { archiveError } from './archive-reader.js';
import type { BlobDescriptor, ImageConfig, ImageHealthcheck } from './types.js';

export const MEDIA = {
  ociLayout: '1.0.0',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
} as const;

export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_CONTAINERD_NAME = 'io.containerd.image.name';

export const isIndexType = (t: string | undefined) => t === MEDIA.ociIndex || t === MEDIA.dockerManifestList;
export const isManifestType = (t: string | undefined) =>
  t === MEDIA.ociManifest || t === MEDIA.dockerManifest;

export interface Platform {
  architecture?: string;
  os?: string;
  variant?: string;
}

export interface Descriptor extends BlobDescriptor {
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface OciIndex {
  mediaType?: string;
  manifests: Descriptor[];
}

export interface OciManifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** One entry of a `docker save` manifest.json. */
export interface DockerManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

export interface ParsedConfig {
  architecture: string;
  os: string;
  created?: string;
  config: ImageConfig;
  /** 'sha256:<hex>' each, bottom-most first. */
  diffIds: string[];
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string');
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Parses JSON bytes, naming `what` in the error. */
export function parseJson(bytes: Buffer | string, what: string): unknown {
  try {
    return JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (err) {
    throw archiveError(`${what} is not valid JSON (${(err as Error).message})`, err);
  }
}

/** Checks a content descriptor (sha256 only). */
export function parseDescriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v)) throw archiveError(`${what} is not a descriptor object`);
  const { mediaType, digest, size, annotations, platform } = v;
  if (typeof digest !== 'string') throw archiveError(`${what} has no digest`);
  if (!digest.startsWith('sha256:'))
    throw archiveError(`${what} uses unsupported digest "${digest}" (sha256 only)`);
  if (!DIGEST.test(digest)) throw archiveError(`${what} has a malformed digest "${digest}"`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw archiveError(`${what} has no valid size`);
  }
  if (mediaType !== undefined && typeof mediaType !== 'string')
    throw archiveError(`${what} has a bad mediaType`);
  const d: Descriptor = { mediaType: mediaType ?? '', digest, size };
  if (annotations !== undefined) {
    if (!isObject(annotations) || !Object.values(annotations).every((a) => typeof a === 'string')) {
      throw archiveError(`${what} has malformed annotations`);
    }
    d.annotations = annotations as Record<string, string>;
  }
  if (isObject(platform)) {
    d.platform = {};
    for (const k of ['architecture', 'os', 'variant'] as const) {
      if (typeof platform[k] === 'string') d.platform[k] = platform[k] as string;
    }
  }
  return d;
}

export function parseOciIndex(v: unknown, what = 'index.json'): OciIndex {
  if (!isObject(v)) throw archiveError(`${what} is not an object`);
  if (v.schemaVersion !== 2)
    throw archiveError(`${what} has schemaVersion ${String(v.schemaVersion)}, expected 2`);
  if (!Array.isArray(v.manifests)) throw archiveError(`${what} has no manifests list`);
  const manifests = v.manifests.map((m, i) => parseDescriptor(m, `${what} manifests[${i}]`));
  return { ...(typeof v.mediaType === 'string' ? { mediaType: v.mediaType } : {}), manifests };
}

export function parseOciManifest(v: unknown, what: string): OciManifest {
  if (!isObject(v)) throw archiveError(`${what} is not an object`);
  if (v.schemaVersion !== 2)
    throw archiveError(`${what} has schemaVersion ${String(v.schemaVersion)}, expected 2`);
  if (!Array.isArray(v.layers)) throw archiveError(`${what} has no layers list`);
  return {
    ...(typeof v.mediaType === 'string' ? { mediaType: v.mediaType } : {}),
    config: parseDescriptor(v.config, `${what} config`),
    layers: v.layers.map((l, i) => parseDescriptor(l, `${what} layers[${i}]`)),
  };
}

export function parseDockerManifest(v: unknown): DockerManifestEntry[] {
  if (!Array.isArray(v)) throw archiveError('manifest.json is not a list');
  return v.map((e, i) => {
    const what = `manifest.json entry ${i}`;
    if (!isObject(e)) throw archiveError(`${what} is not an object`);
    if (typeof e.Config !== 'string' || e.Config === '') throw archiveError(`${what} has no Config`);
    if (!isStringArray(e.Layers)) throw archiveError(`${what} has no Layers list`);
    if (e.RepoTags !== undefined && e.RepoTags !== null && !isStringArray(e.RepoTags)) {
      throw archiveError(`${what} has malformed RepoTags`);
    }
    return {
      Config: e.Config,
      Layers: e.Layers,
      RepoTags: (e.RepoTags as string[] | null | undefined) ?? [],
    };
  });
}

function stringRecord(v: unknown, field: string): Record<string, string> {
  if (!isObject(v) || !Object.values(v).every((s) => typeof s === 'string')) {
    throw archiveError(`image config ${field} must map strings to strings`);
  }
  return { ...(v as Record<string, string>) };
}

function objectRecord(v: unknown, field: string): Record<string, object> {
  if (!isObject(v)) throw archiveError(`image config ${field} must be an object`);
  const out: Record<string, object> = {};
  for (const [k, val] of Object.entries(v)) out[k] = isObject(val) ? { ...val } : {};
  return out;
}

function healthcheck(v: unknown): ImageHealthcheck {
  if (!isObject(v)) throw archiveError('image config Healthcheck must be an object');
  const h: ImageHealthcheck = {};
  if (v.Test !== undefined && v.Test !== null) {
    if (!isStringArray(v.Test)) throw archiveError('image config Healthcheck.Test must be a list of strings');
    h.Test = v.Test;
  }
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
    const n = v[k];
    if (n === undefined || n === null) continue;
    if (typeof n !== 'number' || !Number.isFinite(n))
      throw archiveError(`image config Healthcheck.${k} must be a number`);
    h[k] = n;
  }
  return h;
}

/** Picks the runtime fields of an image config's `config` object, checking their types. */
export function parseRuntimeConfig(v: unknown): ImageConfig {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw archiveError('image config "config" must be an object');
  const c: ImageConfig = {};
  for (const k of ['Env', 'Cmd', 'Entrypoint'] as const) {
    const val = v[k];
    if (val === undefined || val === null) continue;
    if (!isStringArray(val)) throw archiveError(`image config ${k} must be a list of strings`);
    c[k] = [...val];
  }
  for (const k of ['WorkingDir', 'User', 'StopSignal'] as const) {
    const val = v[k];
    if (val === undefined || val === null || val === '') continue;
    if (typeof val !== 'string') throw archiveError(`image config ${k} must be a string`);
    c[k] = val;
  }
  if (v.Labels !== undefined && v.Labels !== null) c.Labels = stringRecord(v.Labels, 'Labels');
  if (v.ExposedPorts !== undefined && v.ExposedPorts !== null) {
    c.ExposedPorts = objectRecord(v.ExposedPorts, 'ExposedPorts');
  }
  if (v.Volumes !== undefined && v.Volumes !== null) c.Volumes = objectRecord(v.Volumes, 'Volumes');
  if (v.Healthcheck !== undefined && v.Healthcheck !== null) c.Healthcheck = healthcheck(v.Healthcheck);
  return c;
}

/** Parses an image config blob (OCI image config / Docker image JSON). */
export function parseImageConfig(bytes: Buffer | string): ParsedConfig {
  const v = parseJson(bytes, 'image config');
  if (!isObject(v)) throw archiveError('image config is not an object');
  const rootfs = v.rootfs;
  if (!isObject(rootfs)) throw archiveError('image config has no rootfs');
  if (rootfs.type !== 'layers')
    throw archiveError(`image config rootfs.type is "${String(rootfs.type)}", expected "layers"`);
  if (!isStringArray(rootfs.diff_ids))
    throw archiveError('image config rootfs.diff_ids must be a list of strings');
  for (const d of rootfs.diff_ids) {
    if (!DIGEST.test(d)) throw archiveError(`image config has a malformed diff_id "${d}"`);
  }
  for (const k of ['architecture', 'os', 'created'] as const) {
    if (v[k] !== undefined && typeof v[k] !== 'string')
      throw archiveError(`image config ${k} must be a string`);
  }
  return {
    architecture: (v.architecture as string | undefined) ?? '',
    os: (v.os as string | undefined) ?? '',
    ...(typeof v.created === 'string' ? { created: v.created } : {}),
    config: parseRuntimeConfig(v.config),
    diffIds: [...rootfs.diff_ids],
  };
}

/** The platform of this machine in OCI terms. */
export function hostPlatform(): { os: string; architecture: string } {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}
