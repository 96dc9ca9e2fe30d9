/**
 * The OCI distribution API for one repository: manifests, blobs (ranged reads), existence
 * checks, cross-repository mounts, uploads. Everything fetched is verified by digest by the caller
 * (pull.ts) or here (manifests).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { registryError } from '../../api/errors.js';
import { MEDIA } from '../images/oci.js';
import { repositoryScope } from './auth.js';
import { type RegistryResponse, type RegistrySession, responseHeader } from './transport.js';

export const MANIFEST_ACCEPT = [
  MEDIA.ociIndex,
  MEDIA.dockerManifestList,
  MEDIA.ociManifest,
  MEDIA.dockerManifest,
];
const MAX_MANIFEST = 4 << 20;

export interface FetchedManifest {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

export const sha256Hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export class Repository {
  private readonly pullScope: string[];
  private readonly pushScope: string[];

  constructor(
    readonly session: RegistrySession,
    readonly path: string,
  ) {
    this.pullScope = [repositoryScope(path, ['pull'])];
    this.pushScope = [repositoryScope(path, ['pull', 'push'])];
  }

  get name(): string {
    return `${this.session.host}/${this.path}`;
  }

  /** A manifest or index by tag or digest; a digest reference is checked against the bytes. */
  async manifest(reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = `manifest ${this.name}:${reference}`.replace(':sha256:', '@sha256:');
    const res = await this.session.send('GET', `/v2/${this.path}/manifests/${reference}`, {
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.pullScope,
      ok: [200],
      what,
      signal,
    });
    const bytes = await readLimited(res, MAX_MANIFEST, what);
    const digest = `sha256:${sha256Hex(bytes)}`;
    if (reference.startsWith('sha256:') && reference !== digest)
      throw registryError(`${what} does not match its digest (got ${digest})`);
    let mediaType = (responseHeader(res.headers, 'content-type') ?? '').split(';')[0]!.trim();
    try {
      const v = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: unknown };
      if (typeof v.mediaType === 'string') mediaType = v.mediaType;
      else if (!MANIFEST_ACCEPT.includes(mediaType as (typeof MANIFEST_ACCEPT)[number]))
        mediaType = Array.isArray(v.manifests) ? MEDIA.ociIndex : MEDIA.ociManifest;
    } catch {
      throw registryError(`${what} is not JSON`);
    }
    return { mediaType, digest, bytes };
  }

  /** A blob's bytes from `offset` on; `partial` tells whether the registry honoured the range. */
  async blob(
    digest: string,
    offset: number,
    signal?: AbortSignal,
  ): Promise<{ body: Readable; partial: boolean; length?: number }> {
    const res = await this.session.send('GET', `/v2/${this.path}/blobs/${digest}`, {
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      scopes: this.pullScope,
      ok: [200, 206],
      what: `blob ${digest} of ${this.name}`,
      signal,
    });
    const len = Number(responseHeader(res.headers, 'content-length'));
    return {
      body: res.body,
      partial: res.status === 206,
      ...(Number.isFinite(len) ? { length: len } : {}),
    };
  }

  async blobBytes(digest: string, size: number, what: string, signal?: AbortSignal): Promise<Buffer> {
    const { body } = await this.blob(digest, 0, signal);
    const bytes = await readLimited({ body } as RegistryResponse, Math.max(size, 1) + 1, what);
    if (bytes.length !== size || `sha256:${sha256Hex(bytes)}` !== digest)
      throw registryError(`${what} from ${this.name} does not match its digest ${digest}`);
    return bytes;
  }

  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.session.send('HEAD', `/v2/${this.path}/blobs/${digest}`, {
      scopes: this.pushScope,
      ok: [200, 404],
    });
    await res.body.dump();
    return res.status === 200;
  }

  /**
   * Starts an upload; with `mountFrom` asks the registry to mount the blob from that repository
   * of the same registry instead. Returns 'mounted', or the upload location.
   */
  async startUpload(digest: string, mountFrom?: string): Promise<{ mounted: true } | { location: string }> {
    const q = mountFrom ? `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}` : '';
    const res = await this.session.send('POST', `/v2/${this.path}/blobs/uploads/${q}`, {
      headers: { 'content-length': '0' },
      scopes: mountFrom ? [...this.pushScope, repositoryScope(mountFrom, ['pull'])] : this.pushScope,
      ok: [201, 202],
      what: `blob upload to ${this.name}`,
    });
    await res.body.dump();
    if (res.status === 201) return { mounted: true };
    return { location: this.location(res) };
  }

  /** Finishes an upload in one PUT of the whole blob. */
  async putBlob(
    location: string,
    digest: string,
    size: number,
    body: () => Readable | Buffer,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const res = await this.session.send('PUT', url.toString(), {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body,
      scopes: this.pushScope,
      ok: [201, 204],
      what: `blob ${digest} upload to ${this.name}`,
    });
    await res.body.dump();
  }

  async putManifest(reference: string, mediaType: string, bytes: Buffer): Promise<string> {
    const res = await this.session.send('PUT', `/v2/${this.path}/manifests/${reference}`, {
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: () => bytes,
      scopes: this.pushScope,
      ok: [201, 202],
      what: `manifest ${this.name}:${reference}`,
    });
    await res.body.dump();
    const digest = `sha256:${sha256Hex(bytes)}`;
    const said = responseHeader(res.headers, 'docker-content-digest');
    if (said && said !== digest)
      throw registryError(
        `registry ${this.session.host} stored manifest ${this.name}:${reference} as ${said}, not ${digest}`,
      );
    return digest;
  }

  private location(res: RegistryResponse): string {
    const loc = responseHeader(res.headers, 'location');
    if (!loc) throw registryError(`registry ${this.session.host} started an upload without a Location`);
    return this.session.resolve(loc);
  }
}

async function readLimited(
  res: Pick<RegistryResponse, 'body'>,
  limit: number,
  what: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      res.body.destroy();
      throw registryError(`${what} is larger than ${limit} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
