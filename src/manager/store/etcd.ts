import { CompareResult, CompareTarget, Etcd3, type Lease as EtcdLease, type IRequestOp, Range } from 'etcd3';
// etcd3's connection pool, for its host order (see hostOrder)
import connectionPool from 'etcd3/lib/connection-pool.js';
import { invalid, notFound } from '../../api/errors.js';
import { etcdCredentials } from '../etcd/supervisor.js';
import { StoreConflict } from './errors.js';
import { EtcdLeadership } from './etcd-election.js';
import { retryUnsent, shortBreaker, watchBackoff } from './etcd-faults.js';
import { decodeValue, encodeValue, itemOf, Keys, toStoreError } from './etcd-keys.js';
import { EtcdWatch } from './etcd-watch.js';
import { retry } from './retry.js';
import type {
  Item,
  Kind,
  Leadership,
  Lease,
  Listing,
  Store,
  StoreValue,
  TxnOp,
  TxnResult,
  Versioned,
  WatchEvent,
  WatchHandle,
  WatchOptions,
} from './types.js';

export interface EtcdStoreOptions {
  /** Client URLs of the etcd members, e.g. ['http://127.0.0.1:2379']. */
  endpoints: string[];
  /** Keys live under `<root>/v1/`; default '/tsswarm'. */
  root?: string;
  /**
   * The endpoint to use first (a manager's own member); the others serve when it fails.
   * Default: the etcd3 client's random order.
   */
  preferEndpoint?: string;
  /** A client certificate of the etcd CA (the swarm's own etcd requires one). */
  tls?: { caCertPem: string; certPem: string; keyPem: string };
  /** Deadline of each unary call; default 5 s. */
  callTimeoutMs?: number;
  log?: (msg: string) => void;
}

/** How long a member is skipped after it failed three calls in a row. */
const BREAKER_OPEN_MS = 1_000;

/** A kept-alive etcd lease as the store hands it out. */
class StoreLease implements Lease {
  private lost: Error | undefined;
  private readonly callbacks: Array<(err: Error) => void> = [];
  constructor(
    readonly id: string,
    readonly ttlSec: number,
    readonly inner: EtcdLease,
    private readonly forget: (l: StoreLease) => void,
  ) {
    inner.on('lost', (err) => {
      this.lost = err;
      this.forget(this);
      for (const cb of this.callbacks.splice(0)) cb(err);
    });
  }
  onLost(cb: (err: Error) => void): void {
    const lost = this.lost;
    if (lost) queueMicrotask(() => cb(lost));
    else this.callbacks.push(cb);
  }
  async revoke(): Promise<void> {
    this.forget(this);
    this.callbacks.length = 0;
    await this.inner.revoke();
  }
  async refresh(): Promise<void> {
    try {
      await this.inner.keepaliveOnce();
    } catch (e) {
      if (this.lost || this.inner.revoked()) throw notFound(`lease ${this.id} has expired`);
      throw toStoreError(e, 'etcd');
    }
  }
  release(): void {
    this.forget(this);
    this.callbacks.length = 0;
    this.inner.release();
  }
}

/**
 * Hosts in the order the client should try them. The etcd3 client shuffles its hosts for every
 * call unless its pool's `deterministicOrder` is set, in which case it tries them from the last
 * to the first: the preferred endpoint goes last. (An internal of etcd3 1.x; without it the
 * order stays random, which is still correct, only less local.)
 */
function hostOrder(endpoints: string[], prefer?: string): string[] {
  const uniq = [...new Set(endpoints)];
  if (!prefer) return uniq;
  const pool = (connectionPool as { ConnectionPool?: { deterministicOrder?: boolean } }).ConnectionPool;
  if (pool && 'deterministicOrder' in pool) pool.deterministicOrder = true;
  return [...uniq.filter((e) => e !== prefer).reverse(), prefer];
}

/** The Store on etcd (see types.ts for every method's contract). */
export class EtcdStore implements Store {
  readonly client: Etcd3;
  readonly keys: Keys;
  private readonly where: string;
  private readonly log: (msg: string) => void;
  private readonly watches = new Set<EtcdWatch>();
  private readonly leases = new Set<StoreLease>();
  private readonly candidacies = new Set<EtcdLeadership>();
  private closed = false;

  constructor(readonly opts: EtcdStoreOptions) {
    if (opts.endpoints.length === 0) throw invalid('the store needs at least one etcd endpoint');
    const timeout = opts.callTimeoutMs ?? 5_000;
    this.where = opts.endpoints.join(',');
    this.log = opts.log ?? (() => {});
    this.keys = new Keys(opts.root);
    this.client = new Etcd3({
      hosts: hostOrder(opts.endpoints, opts.preferEndpoint),
      ...(opts.tls ? { credentials: etcdCredentials(opts.tls) } : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      grpcOptions: {
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 2_000,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      },
      faultHandling: {
        global: retryUnsent({ attempts: opts.endpoints.length + 1, breakerWaitMs: BREAKER_OPEN_MS + 500 }),
        host: () => shortBreaker({ openMs: BREAKER_OPEN_MS, single: opts.endpoints.length === 1 }),
        watchBackoff: watchBackoff(),
      },
    });
  }

  /** Runs an etcd call and maps what it throws to a typed error. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw toStoreError(e, this.where);
    }
  }

  async get<T extends StoreValue = StoreValue>(kind: Kind, id: string): Promise<Versioned<T>> {
    const found = await this.find<T>(kind, id);
    if (!found) throw notFound(`${kind}/${id} not found`);
    return found;
  }

  async find<T extends StoreValue = StoreValue>(kind: Kind, id: string): Promise<Versioned<T> | undefined> {
    const key = this.keys.key(kind, id);
    const res = await this.call(() => this.client.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    return kv && { value: decodeValue<T>(kind, id, kv.value), version: Number(kv.mod_revision) };
  }

  async list<T extends StoreValue = StoreValue>(kind: Kind): Promise<Listing<T>> {
    const { items, revision } = await this.listKinds([kind]);
    return { items: items.map(({ id, value, version }) => ({ id, value: value as T, version })), revision };
  }

  /** Every object of the kinds, read in one Txn so that all are at one revision. */
  async listKinds(
    kinds: Kind[],
  ): Promise<{ items: Array<Item<StoreValue> & { kind: Kind }>; revision: number }> {
    const ranges: IRequestOp[] = kinds.map((k) => {
      const r = Range.prefix(this.keys.kindPrefix(k));
      return { request_range: { key: r.start, range_end: r.end } };
    });
    const res = await this.call(() => this.client.kv.txn({ success: ranges }));
    const items = res.responses.flatMap((r) => r.response_range.kvs.map((kv) => itemOf(this.keys, kv)!));
    return { items, revision: Number(res.header.revision) };
  }

  async create(kind: Kind, id: string, value: StoreValue): Promise<number> {
    return (await this.txn([{ op: 'create', kind, id, value }])).revision;
  }

  async update(kind: Kind, id: string, value: StoreValue, expectedVersion: number): Promise<number> {
    return (await this.txn([{ op: 'update', kind, id, value, expectedVersion }])).revision;
  }

  async delete(kind: Kind, id: string, expectedVersion?: number): Promise<boolean> {
    if (expectedVersion !== undefined) {
      await this.txn([{ op: 'delete', kind, id, expectedVersion }]);
      return true;
    }
    const key = this.keys.key(kind, id);
    const res = await this.call(() => this.client.kv.deleteRange({ key: Buffer.from(key) }));
    return Number(res.deleted) > 0;
  }

  async txn(ops: TxnOp[]): Promise<TxnResult> {
    if (ops.length === 0) throw invalid('an empty transaction');
    const keys = ops.map((o) => this.keys.key(o.kind, o.id));
    const dup = keys.find((k, i) => keys.indexOf(k) !== i);
    if (dup) throw invalid(`a transaction names ${dup} twice`);
    const expected = ops.map((o) => (o.op === 'create' ? 0 : o.expectedVersion));
    const compare = ops.flatMap((_, i) =>
      expected[i] === undefined
        ? []
        : [
            {
              key: Buffer.from(keys[i]!),
              target: CompareTarget.Mod,
              result: CompareResult.Equal,
              mod_revision: expected[i],
            },
          ],
    );
    const success: IRequestOp[] = ops.map((o, i) =>
      o.op === 'delete'
        ? { request_delete_range: { key: Buffer.from(keys[i]!) } }
        : {
            request_put: {
              key: Buffer.from(keys[i]!),
              value: Buffer.from(encodeValue(o.kind, o.id, o.value)),
            },
          },
    );
    // On failure, read every key so the error can say which one did not match.
    const failure: IRequestOp[] = keys.map((k) => ({ request_range: { key: Buffer.from(k) } }));
    const res = await this.call(() => this.client.kv.txn({ compare, success, failure }));
    const revision = Number(res.header.revision);
    if (res.succeeded) return { revision, versions: ops.map((o) => (o.op === 'delete' ? 0 : revision)) };
    for (const [i, o] of ops.entries()) {
      const kv = res.responses[i]?.response_range.kvs[0];
      const actual = kv ? Number(kv.mod_revision) : 0;
      const want = expected[i];
      if (want === undefined || want === actual) continue;
      if (actual === 0) throw notFound(`${o.kind}/${o.id} not found (expected version ${want})`);
      throw new StoreConflict(o.kind, o.id, want, actual);
    }
    // Every key matches now: it changed and changed back in between. Report it as a conflict.
    throw new StoreConflict(ops[0]!.kind, ops[0]!.id, expected[0] ?? 0, expected[0] ?? 0);
  }

  retry<T>(fn: () => Promise<T>, opts?: { attempts?: number }): Promise<T> {
    return retry(fn, opts);
  }

  watch<T extends StoreValue = StoreValue>(
    kinds: Kind | Kind[],
    opts: WatchOptions,
    handler: (ev: WatchEvent<T>) => void | Promise<void>,
  ): WatchHandle {
    const list = Array.isArray(kinds) ? kinds : [kinds];
    if (list.length === 0) throw invalid('watch needs at least one kind');
    const w = new EtcdWatch(
      this.client,
      this.keys,
      list,
      opts,
      handler as (ev: WatchEvent) => void | Promise<void>,
      (k) => this.listKinds(k),
      this.log,
      (done) => this.watches.delete(done),
    );
    this.watches.add(w);
    return w;
  }

  async grantLease(ttlSec: number, opts: { keepAlive?: boolean } = {}): Promise<Lease> {
    if (!Number.isInteger(ttlSec) || ttlSec < 1)
      throw invalid(`a lease TTL must be a whole number of seconds ≥ 1, not ${ttlSec}`);
    const inner = this.client.lease(ttlSec, { autoKeepAlive: opts.keepAlive !== false });
    const id = await this.call(() => inner.grant());
    const lease = new StoreLease(id, ttlSec, inner, (l) => this.leases.delete(l));
    this.leases.add(lease);
    return lease;
  }

  async putWithLease(kind: Kind, id: string, value: StoreValue, lease: Lease): Promise<number> {
    const key = this.keys.key(kind, id);
    const res = await this.call(() =>
      this.client.kv.put({
        key: Buffer.from(key),
        value: Buffer.from(encodeValue(kind, id, value)),
        lease: lease.id,
      }),
    );
    return Number(res.header.revision);
  }

  campaign(electionName: string, candidateId: string, opts: { ttlSec?: number } = {}): Leadership {
    const key = this.keys.key('elections', electionName);
    const l = new EtcdLeadership(electionName, candidateId, opts.ttlSec ?? 5, {
      client: this.client,
      key,
      value: encodeValue('elections', electionName, { leader: candidateId }),
      log: this.log,
      ended: (c) => this.candidacies.delete(c),
    });
    this.candidacies.add(l);
    return l;
  }

  async leader(electionName: string): Promise<string | undefined> {
    const found = await this.find<{ leader: string }>('elections', electionName);
    return found?.value.leader;
  }

  async revision(): Promise<number> {
    const res = await this.call(() => this.client.kv.range({ key: Buffer.from(this.keys.base), limit: 1 }));
    return Number(res.header.revision);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.candidacies]) c.abandon('the store was closed');
    for (const l of [...this.leases]) l.release();
    await Promise.all([...this.watches].map((w) => w.cancel()));
    this.client.close();
  }
}

/** Opens the store on etcd and checks that it answers (`daemon_unreachable` otherwise). */
export async function openEtcdStore(opts: EtcdStoreOptions): Promise<EtcdStore> {
  const store = new EtcdStore(opts);
  try {
    await store.revision();
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
}
