/**
 * The cluster state store: versioned JSON objects by kind and id, optimistic concurrency,
 * atomic multi-key transactions, watches, leases and leader election (DESIGN.md §3, §4).
 * The implementation is etcd (etcd.ts); keys are `/tsswarm/v1/<kind>/<id>`.
 *
 * Errors are TsswarmError: `conflict` (a version did not match, or a create found the key),
 * `not_found`, `invalid_argument` (a bad kind, id or value), `daemon_unreachable` (etcd
 * cannot be reached or has no quorum; nothing is known to have changed), `unsupported` (a
 * value written by a newer schema).
 */

/**
 * Kinds of the data model (`elections` holds leader keys); any other kind matching
 * /^[a-z][a-z0-9-]*$/ is accepted too.
 */
export const KINDS = ['nodes', 'services', 'tasks', 'networks', 'cluster', 'elections'] as const;
export type Kind = (typeof KINDS)[number] | (string & {});

/** Objects are plain JSON objects; the store adds and strips the `schema` field. */
export type StoreValue = Record<string, unknown>;

/** The schema version written with every value (`{schema: 1, ...object}`). */
export const SCHEMA_VERSION = 1;

/** An object with its version: etcd's mod_revision of its key (changes on every write). */
export interface Versioned<T> {
  value: T;
  version: number;
}

export interface Item<T> extends Versioned<T> {
  id: string;
}

export interface Listing<T> {
  items: Array<Item<T>>;
  /** The store revision the listing was read at; watch from `revision + 1` to miss nothing. */
  revision: number;
}

export type TxnOp =
  | { op: 'create'; kind: Kind; id: string; value: StoreValue }
  | { op: 'update'; kind: Kind; id: string; value: StoreValue; expectedVersion: number }
  | { op: 'delete'; kind: Kind; id: string; expectedVersion?: number };

export interface TxnResult {
  /** The store revision of the transaction: the new version of every created or updated key. */
  revision: number;
  /** Per op, in order: the new version (0 for a delete). */
  versions: number[];
}

export type WatchEvent<T = StoreValue> =
  | { type: 'create' | 'update'; kind: Kind; id: string; value: T; version: number; revision: number }
  | { type: 'delete'; kind: Kind; id: string; revision: number }
  /**
   * Everything the watch covers, as of `revision`; what the handler knew before is replaced.
   * Sent first when no fromRevision was given, and whenever the watch could not resume
   * because the history it needed was compacted.
   */
  | { type: 'reset'; items: Array<Item<T> & { kind: Kind }>; revision: number };

export interface WatchOptions {
  /** First revision to deliver (inclusive). Omitted: a `reset` with the current state comes first. */
  fromRevision?: number;
  /** Called when the handler throws; the watch goes on. Default: the store's logger. */
  onError?: (err: unknown) => void;
}

export interface WatchHandle {
  /** Resolves once the watch is established (and its first `reset`, if any, was handled). */
  readonly ready: Promise<void>;
  /** The revision of the last event delivered (or of the last reset). */
  readonly revision: number;
  /** Stops the watch; no event is delivered after it resolves. */
  cancel(): Promise<void>;
}

export interface Lease {
  /** etcd's lease id (decimal string). */
  readonly id: string;
  readonly ttlSec: number;
  /** Called once if the lease expires or is revoked while kept alive (not after revoke()/release()). */
  onLost(cb: (err: Error) => void): void;
  /** Revokes the lease now: every key attached to it is deleted. */
  revoke(): Promise<void>;
  /**
   * Renews the lease once (for leases granted without keep-alive); throws `not_found` if it
   * has already expired.
   */
  refresh(): Promise<void>;
  /** Stops keeping the lease alive; it expires ttlSec later (with its keys). */
  release(): void;
}

export interface Leadership {
  readonly election: string;
  readonly candidateId: string;
  /** True from election until loss or resignation. */
  readonly isLeader: boolean;
  /** The lease that holds the leader key (revoking it ends the leadership). */
  readonly leaseId: string;
  /** Resolves when this candidate becomes leader; rejects if the candidacy ends first. */
  readonly elected: Promise<void>;
  /**
   * Called once when the leadership (or candidacy) ends other than by resign(): lease revoked
   * or expired, leader key deleted, keep-alives failing for longer than is safe, store closed.
   * It fires before another candidate can be elected on the same lease timing (it is
   * conservative: it may fire while etcd still holds the key, never after someone else won).
   */
  onLost(cb: (reason: Error) => void): void;
  /** Gives up leadership (or the candidacy): deletes the key so another candidate is elected now. */
  resign(): Promise<void>;
}

export interface Store {
  /** The object and its version. Throws `not_found` if absent. */
  get<T extends StoreValue = StoreValue>(kind: Kind, id: string): Promise<Versioned<T>>;
  /** Like get, but undefined when absent. */
  find<T extends StoreValue = StoreValue>(kind: Kind, id: string): Promise<Versioned<T> | undefined>;
  /** Every object of a kind, sorted by id, read at one revision (returned). */
  list<T extends StoreValue = StoreValue>(kind: Kind): Promise<Listing<T>>;
  /** Creates the object; returns its version. Throws `conflict` if it exists. */
  create(kind: Kind, id: string, value: StoreValue): Promise<number>;
  /**
   * Replaces the object if its version is still expectedVersion; returns the new version.
   * Throws `conflict` if it changed, `not_found` if it was deleted.
   */
  update(kind: Kind, id: string, value: StoreValue, expectedVersion: number): Promise<number>;
  /**
   * Deletes the object. With expectedVersion: only if unchanged (`conflict` otherwise,
   * `not_found` if absent). Without: unconditionally; returns false if it was absent.
   */
  delete(kind: Kind, id: string, expectedVersion?: number): Promise<boolean>;
  /**
   * Applies every op in one etcd Txn comparing every key's version, or none of them.
   * A create requires absence, an update (and a delete with expectedVersion) the version.
   * Throws a StoreConflict naming the first key that did not match (`not_found` when an
   * update or versioned delete found the key gone). A key may appear once per txn.
   */
  txn(ops: TxnOp[]): Promise<TxnResult>;
  /**
   * Runs fn until it does not throw `conflict`, at most attempts times (default 10), with a
   * short jittered backoff between attempts. fn must re-read what it writes.
   */
  retry<T>(fn: () => Promise<T>, opts?: { attempts?: number }): Promise<T>;
  /**
   * Delivers every change of the given kinds in revision order to handler, one at a time
   * (a returned promise is awaited before the next event). Driven by etcd watches: after a
   * disconnect it resumes from the last delivered revision, so nothing is lost or repeated;
   * if that revision was compacted it sends a `reset` with the current state and goes on.
   */
  watch<T extends StoreValue = StoreValue>(
    kinds: Kind | Kind[],
    opts: WatchOptions,
    handler: (ev: WatchEvent<T>) => void | Promise<void>,
  ): WatchHandle;
  /** Grants a lease of ttlSec (etcd may raise very small TTLs), kept alive until revoked or released. */
  grantLease(ttlSec: number, opts?: { keepAlive?: boolean }): Promise<Lease>;
  /** Writes the object unconditionally, attached to the lease (deleted when the lease ends); returns its version. */
  putWithLease(kind: Kind, id: string, value: StoreValue, lease: Lease): Promise<number>;
  /**
   * Campaigns for leadership of electionName with a lease of ttlSec (default 5): one leader at
   * a time, the first candidate to create the election key wins, the others wait for it to go.
   */
  campaign(electionName: string, candidateId: string, opts?: { ttlSec?: number }): Leadership;
  /** The current leader's candidateId, or undefined. */
  leader(electionName: string): Promise<string | undefined>;
  /** The current store revision. */
  revision(): Promise<number>;
  /** Cancels watches, stops keep-alives (leases then expire; leaderships report loss) and closes the connection. */
  close(): Promise<void>;
}
