import { type Etcd3, type IWatchResponse, Range, type Watcher } from 'etcd3';
import { itemOf, type Keys } from './etcd-keys.js';
import type { Item, Kind, StoreValue, WatchEvent, WatchHandle, WatchOptions } from './types.js';

/** The store's way to read several kinds at one revision (for a reset). */
export type ListKinds = (
  kinds: Kind[],
) => Promise<{ items: Array<Item<StoreValue> & { kind: Kind }>; revision: number }>;

/** Waits at least this long between two resets, so a watch that etcd keeps cancelling cannot spin. */
const MIN_RESET_INTERVAL_MS = 1_000;

/**
 * One store watch over etcd. Resumption is ours, not the etcd3 client's: the client resumes
 * from the revision in the last response header, which for a watch that was still catching up
 * is past events it has not yet delivered; here the next revision is the one after the last
 * event handed on, and it is written into the create request each time the client (re)attaches.
 */
export class EtcdWatch implements WatchHandle {
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private watcher: Watcher | undefined;
  private nextRevision = 0;
  private cancelled = false;
  private delivery: Promise<void> = Promise.resolve();
  private lastReset = 0;
  private readonly kinds: Set<Kind>;
  private readonly range: Range;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    kinds: Kind[],
    private readonly opts: WatchOptions,
    private readonly handler: (ev: WatchEvent) => void | Promise<void>,
    private readonly listKinds: ListKinds,
    private readonly log: (msg: string) => void,
    private readonly onCancel: (w: EtcdWatch) => void,
  ) {
    this.kinds = new Set(kinds);
    // One kind: its own prefix. Several: everything of this store, filtered here, so that all
    // events arrive on one stream in revision order and one revision says where to resume.
    this.range = Range.prefix(kinds.length === 1 ? keys.kindPrefix(kinds[0]!) : keys.base);
    for (const k of kinds) keys.kindPrefix(k); // validates
    this.ready = new Promise((r) => (this.markReady = r));
    if (opts.fromRevision !== undefined) {
      this.nextRevision = opts.fromRevision;
      this.open();
    } else {
      this.enqueue(() => this.reset());
    }
  }

  get revision(): number {
    return this.nextRevision - 1;
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    this.onCancel(this);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) {
      // Detaching waits for etcd's answer; a member that hangs must not hang the caller.
      const timeout = new Promise((r) => setTimeout(r, 2_000).unref());
      await Promise.race([w.cancel().catch(() => {}), timeout]);
    }
    await this.delivery;
  }

  /** Re-lists every kind at one revision, hands on a `reset`, and watches from the revision after. */
  private async reset(): Promise<void> {
    const wait = this.lastReset + MIN_RESET_INTERVAL_MS - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    this.lastReset = Date.now();
    let listing: Awaited<ReturnType<ListKinds>>;
    for (;;) {
      if (this.cancelled) return;
      try {
        listing = await this.listKinds([...this.kinds]);
        break;
      } catch (e) {
        this.log(`watch ${[...this.kinds]}: re-list failed, retrying: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    this.nextRevision = listing.revision + 1;
    await this.deliver({ type: 'reset', items: listing.items, revision: listing.revision });
    this.open();
  }

  private open(): void {
    if (this.cancelled) return;
    const w = this.client.watch().inRange(this.range).startRevision(String(this.nextRevision)).watcher();
    this.watcher = w;
    // Emitted with the create request just before the client sends it, on every (re)attach.
    w.on('connecting', () => {
      w.request.start_revision = String(this.nextRevision);
    });
    w.on('connected', () => this.markReady());
    w.on('data', (res) => this.onData(w, res));
    w.on('disconnected', (err) =>
      this.log(`watch ${[...this.kinds]}: disconnected (${err.message}); resuming`),
    );
    // A cancel from etcd: the revision to resume from was compacted (or the watch was refused).
    w.on('error', (err) => {
      if (w !== this.watcher) return;
      this.watcher = undefined;
      this.log(
        `watch ${[...this.kinds]}: cancelled by etcd at revision ${this.nextRevision} (${err.message}); re-listing`,
      );
      void w.cancel().catch(() => {});
      this.enqueue(() => this.reset());
    });
  }

  private onData(w: Watcher, res: IWatchResponse): void {
    if (w !== this.watcher) return;
    if (res.events.length === 0) {
      // A progress notification: etcd has sent everything up to header.revision.
      this.nextRevision = Math.max(this.nextRevision, Number(res.header.revision) + 1);
      return;
    }
    const floor = this.nextRevision; // the events of one revision (a txn) arrive in one response
    for (const ev of res.events) {
      const revision = Number(ev.kv.mod_revision);
      if (revision < floor) continue; // already delivered before a reconnect
      this.nextRevision = revision + 1;
      const k = this.keys.parse(ev.kv.key);
      if (!k || !this.kinds.has(k.kind)) continue;
      if (ev.type === 'Delete') {
        this.enqueue(() => this.deliver({ type: 'delete', ...k, revision }));
      } else {
        this.enqueue(async () => {
          const item = itemOf(this.keys, ev.kv)!;
          const type = ev.kv.create_revision === ev.kv.mod_revision ? 'create' : 'update';
          await this.deliver({
            type,
            kind: item.kind,
            id: item.id,
            value: item.value,
            version: revision,
            revision,
          });
        });
      }
    }
  }

  /** Runs step after every step before it: events reach the handler one at a time, in order. */
  private enqueue(step: () => Promise<void>): void {
    this.delivery = this.delivery.then(step).catch((e) => this.reportError(e));
  }

  private async deliver(ev: WatchEvent): Promise<void> {
    if (this.cancelled) return;
    try {
      await this.handler(ev);
    } catch (e) {
      this.reportError(e);
    }
    if (ev.type === 'reset') this.markReady();
  }

  private reportError(e: unknown): void {
    if (this.opts.onError) this.opts.onError(e);
    else this.log(`watch ${[...this.kinds]}: handler failed: ${(e as Error)?.message ?? e}`);
  }
}
