import { ClientClosedError, EtcdLeaseInvalidError, type IKeyValue, isRecoverableError } from 'etcd3';
import { invalid, TsswarmError } from '../../api/errors.js';
import { type Item, type Kind, SCHEMA_VERSION, type StoreValue } from './types.js';

const KIND_RE = /^[a-z][a-z0-9-]*$/;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,252}$/;

/** Key layout `<root>/v1/<kind>/<id>` and the JSON value format `{schema: 1, ...object}`. */
export class Keys {
  /** `<root>/v1/`: everything of this store lives below it. */
  readonly base: string;

  constructor(root = '/tsswarm') {
    this.base = `${root.replace(/\/+$/, '')}/v${SCHEMA_VERSION}/`;
  }

  kindPrefix(kind: Kind): string {
    if (!KIND_RE.test(kind)) throw invalid(`bad store kind "${kind}": lower-case letters, digits and dashes`);
    return `${this.base}${kind}/`;
  }

  key(kind: Kind, id: string): string {
    if (!ID_RE.test(id))
      throw invalid(`bad ${kind} id "${id}": letters, digits and _.:@- (no slash), at most 253`);
    return this.kindPrefix(kind) + id;
  }

  /** kind and id of a key of this store, or undefined for any other key. */
  parse(key: Buffer | string): { kind: Kind; id: string } | undefined {
    const k = key.toString();
    if (!k.startsWith(this.base)) return undefined;
    const rest = k.slice(this.base.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) return undefined;
    return { kind: rest.slice(0, slash), id: rest.slice(slash + 1) };
  }
}

export function encodeValue(kind: Kind, id: string, value: StoreValue): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${kind}/${id}: a stored value must be a JSON object`);
  if ('schema' in value) throw invalid(`${kind}/${id}: "schema" is reserved for the store's schema version`);
  return JSON.stringify({ schema: SCHEMA_VERSION, ...value });
}

export function decodeValue<T extends StoreValue>(kind: Kind, id: string, raw: Buffer): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString());
  } catch (e) {
    throw new TsswarmError('internal', `${kind}/${id}: the stored value is not JSON`, { cause: e });
  }
  const { schema, ...value } = (parsed ?? {}) as { schema?: unknown };
  if (typeof schema !== 'number')
    throw new TsswarmError('internal', `${kind}/${id}: the stored value has no schema version`);
  if (schema > SCHEMA_VERSION)
    throw new TsswarmError(
      'unsupported',
      `${kind}/${id} was written with schema ${schema} by a newer tsswarm (this one reads ${SCHEMA_VERSION}): upgrade this manager`,
    );
  return value as T;
}

export function itemOf<T extends StoreValue>(
  keys: Keys,
  kv: IKeyValue,
): (Item<T> & { kind: Kind }) | undefined {
  const k = keys.parse(kv.key);
  if (!k) return undefined;
  return { ...k, value: decodeValue<T>(k.kind, k.id, kv.value), version: Number(kv.mod_revision) };
}

/** Maps what the etcd3 client throws to a typed error; `where` names the etcd endpoints. */
export function toStoreError(e: unknown, where: string): TsswarmError {
  if (e instanceof TsswarmError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  if (err instanceof ClientClosedError)
    return new TsswarmError('precondition', 'the store is closed', { cause: err });
  if (isRecoverableError(err) || (err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError)
    return new TsswarmError('daemon_unreachable', `etcd is unreachable at ${where}: ${err.message}`, {
      cause: err,
    });
  if (err instanceof EtcdLeaseInvalidError)
    return new TsswarmError('not_found', 'the lease was not found (expired or revoked)', { cause: err });
  return new TsswarmError('internal', `etcd at ${where}: ${err.message}`, { cause: err });
}
