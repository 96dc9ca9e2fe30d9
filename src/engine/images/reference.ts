/**
 * Image references, following Docker's grammar (distribution/reference):
 *   [domain[:port]/]path-component[/path-component...][:tag][@sha256:hex]
 * Names are kept in Docker's "familiar" form: `docker.io/library/busybox:latest` is `busybox:latest`.
 */
import { invalid } from '../../api/errors.js';

export const DEFAULT_DOMAIN = 'docker.io';
export const DEFAULT_TAG = 'latest';

export interface ParsedReference {
  /** Registry host (with port), 'docker.io' when none given. */
  domain: string;
  /** Repository path inside the registry, 'library/busybox' for official images on docker.io. */
  path: string;
  tag?: string;
  /** 'sha256:<64 hex>' */
  digest?: string;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const FULL_HEX_ID = /^[a-f0-9]{64}$/;
const NAME_MAX = 255;

/** True when `s` can only be meant as an image ID or ID prefix (bare hex, ≥ 4 characters). */
export function isHexIdPrefix(s: string): boolean {
  return /^[a-f0-9]{4,64}$/.test(s);
}

/** True for 'sha256:<64 hex>'. */
export function isDigest(s: string): boolean {
  return DIGEST.test(s);
}

function validDomain(domain: string): boolean {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(domain);
  if (!m) return false;
  return m[1]!.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

/**
 * Parses a reference. Throws `invalid` with Docker's wording for anything malformed.
 * A bare 64-hex string is refused as a name (it is an image ID, as Docker decides).
 */
export function parseReference(ref: string): ParsedReference {
  const bad = (why: string) => invalid(`invalid reference format: "${ref}": ${why}`);
  if (ref.length === 0) throw bad('empty reference');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('digest must be sha256:<64 lowercase hex digits>');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`invalid tag "${tag}"`);
  }
  if (rest.length === 0) throw bad('missing repository name');
  if (rest.length > NAME_MAX) throw bad(`repository name longer than ${NAME_MAX} characters`);
  if (FULL_HEX_ID.test(rest))
    throw bad('a 64-character hexadecimal string is an image ID, not a repository name');

  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (
      first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first !== first.toLowerCase()
    ) {
      if (!validDomain(first)) throw bad(`invalid registry host "${first}"`);
      domain = first === 'index.docker.io' ? DEFAULT_DOMAIN : first;
      path = rest.slice(slash + 1);
    }
  }
  if (path.length === 0) throw bad('missing repository name');
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw bad(
        component !== component.toLowerCase()
          ? 'repository name must be lowercase'
          : `invalid repository name component "${component}"`,
      );
    }
  }
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** Docker's familiar repository name: 'busybox', 'user/app', 'registry:5000/a/b'. */
export function familiarName(r: Pick<ParsedReference, 'domain' | 'path'>): string {
  if (r.domain !== DEFAULT_DOMAIN) return `${r.domain}/${r.path}`;
  const p = r.path.startsWith('library/') && r.path.split('/').length === 2 ? r.path.slice(8) : r.path;
  return p;
}

/** Fully qualified name: 'docker.io/library/busybox:latest' (what containerd annotations carry). */
export function qualifiedTag(tag: string): string {
  const r = parseReference(tag);
  return `${r.domain}/${r.path}:${r.tag ?? DEFAULT_TAG}`;
}

/**
 * Normalizes a name[:tag] reference to its familiar tagged form ('busybox' → 'busybox:latest').
 * Digest references are refused: a tag cannot hold a digest.
 */
export function normalizeTag(ref: string): string {
  const r = parseReference(ref);
  if (r.digest !== undefined) throw invalid(`invalid tag "${ref}": a tag cannot contain a digest`);
  return `${familiarName(r)}:${r.tag ?? DEFAULT_TAG}`;
}

/** The tag part of a normalized tag ('busybox:latest' → 'latest'). */
export function tagOf(normalized: string): string {
  return normalized.slice(normalized.lastIndexOf(':') + 1);
}

/** 'sha256:abc…' → 'abc…'; throws on anything but a sha256 digest. */
export function digestHex(digest: string): string {
  if (!DIGEST.test(digest)) throw invalid(`invalid digest "${digest}"`);
  return digest.slice(7);
}

/** Docker's short ID: the first 12 hex digits. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** The registry host an image reference names ('docker.io' when none); '' when it is not a name. */
export function registryOf(ref: string): string {
  try {
    return parseReference(ref.trim()).domain;
  } catch {
    return '';
  }
}
