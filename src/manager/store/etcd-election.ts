import {
  type Etcd3,
  type Lease as EtcdLease,
  EtcdLeaseInvalidError,
  type ILeaseKeepAliveResponse,
  type ITxnResponse,
  type Watcher,
} from 'etcd3';
import { TsswarmError } from '../../api/errors.js';
import type { Leadership } from './types.js';

/** What a candidacy needs from the store: the client, where its key lives, how to write its value. */
export interface ElectionContext {
  client: Etcd3;
  key: string;
  value: string;
  log: (msg: string) => void;
  /** Called when the candidacy ends (the store forgets it). */
  ended: (l: EtcdLeadership) => void;
}

/**
 * Leader election with a lease and a create-if-absent key: every candidate holds a lease;
 * the one whose Txn creates the election key (attached to its lease) leads until the key or
 * the lease goes; the others watch the key and try again when it is deleted.
 *
 * The leader also times its own lease: each keep-alive answered by etcd proves the lease runs
 * at least TTL from when the keep-alive was sent, so when that moment passes without a newer
 * answer (etcd unreachable), the leader reports the loss itself, before etcd can expire the
 * lease and elect someone else.
 */
export class EtcdLeadership implements Leadership {
  readonly elected: Promise<void>;
  private resolveElected!: () => void;
  private rejectElected!: (e: Error) => void;
  private leader = false;
  private over = false;
  private lostReason: Error | undefined;
  private readonly lostCallbacks: Array<(reason: Error) => void> = [];
  private readonly lease: EtcdLease;
  private id = '';
  private watcher: Watcher | undefined;
  /** Send times of keep-alives not yet answered, oldest first. */
  private pendingKeepAlives: number[] = [];
  private safeUntil = 0;
  private safetyTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly election: string,
    readonly candidateId: string,
    readonly ttlSec: number,
    private readonly ctx: ElectionContext,
  ) {
    this.elected = new Promise<void>((resolve, reject) => {
      this.resolveElected = resolve;
      this.rejectElected = reject;
    });
    this.elected.catch(() => {}); // a candidate nobody awaits must not crash the process
    const grantSent = Date.now();
    this.lease = ctx.client.lease(ttlSec);
    this.lease.on('lost', (err) =>
      this.lose(new TsswarmError('precondition', `leadership lease lost: ${err.message}`)),
    );
    this.lease.on('keepaliveEstablished', () => (this.pendingKeepAlives = []));
    this.lease.on('keepaliveFired', () => this.pendingKeepAlives.push(Date.now()));
    this.lease.on('keepaliveSucceeded', (res: ILeaseKeepAliveResponse) => {
      const sent = this.pendingKeepAlives.shift() ?? Date.now();
      this.extendSafety(sent + Number(res.TTL) * 1000);
    });
    void this.lease.grant().then(
      (id) => {
        this.id = id;
        this.extendSafety(grantSent + ttlSec * 1000);
        return this.tryAcquire();
      },
      (err: Error) =>
        this.lose(new TsswarmError('daemon_unreachable', `cannot grant an election lease: ${err.message}`)),
    );
  }

  get isLeader(): boolean {
    return this.leader;
  }
  get leaseId(): string {
    return this.id;
  }

  onLost(cb: (reason: Error) => void): void {
    if (this.lostReason) {
      const reason = this.lostReason;
      queueMicrotask(() => cb(reason));
    } else this.lostCallbacks.push(cb);
  }

  async resign(): Promise<void> {
    if (this.over) return;
    this.finish();
    this.rejectElected(
      new TsswarmError('precondition', `${this.candidateId} resigned from ${this.election}`),
    );
    await this.lease.revoke().catch(() => {}); // deletes the key: the next candidate is elected now
  }

  /** Ends the candidacy without revoking (the store is closing): the lease expires on its own. */
  abandon(reason: string): void {
    this.lose(new TsswarmError('precondition', reason), false);
  }

  /**
   * One Txn: create the key with our lease if absent, else read it. The key is ours if we
   * created it now or it carries our lease; then we lead, otherwise we follow (or, if we led,
   * we lost). Either way we then watch the key from the next revision. Runs again whenever the
   * watch may have missed something (reconnect, cancel), so it must give the same answer twice.
   */
  private async tryAcquire(): Promise<void> {
    if (this.over) return;
    const { client, key, value } = this.ctx;
    let res: ITxnResponse;
    try {
      res = await client
        .if(key, 'Create', '==', 0)
        .then(client.put(key).value(value).lease(this.id))
        .else(client.get(key))
        .commit();
    } catch (e) {
      if (this.over) return;
      if (e instanceof EtcdLeaseInvalidError) {
        this.lose(
          new TsswarmError('precondition', `the ${this.election} election lease expired or was revoked`),
        );
        return;
      }
      this.ctx.log(`election ${this.election}: ${(e as Error).message}; retrying`);
      setTimeout(() => void this.tryAcquire(), 500).unref();
      return;
    }
    if (this.over) return;
    const holder = res.succeeded ? this.id : res.responses[0]?.response_range.kvs[0]?.lease;
    if (holder === this.id && !this.leader) {
      this.leader = true;
      this.ctx.log(`election ${this.election}: ${this.candidateId} is leader`);
      this.resolveElected();
    } else if (holder !== this.id && this.leader) {
      this.lose(new TsswarmError('precondition', `the leader key of ${this.election} is no longer ours`));
      return;
    }
    this.watchKey(Number(res.header.revision) + 1);
  }

  /** The leader watches its key for deletion (loss); a follower for its next chance. */
  private watchKey(fromRevision: number): void {
    this.watcher?.cancel().catch(() => {});
    const w = this.ctx.client.watch().key(this.ctx.key).startRevision(String(fromRevision)).watcher();
    this.watcher = w;
    let connects = 0;
    const recheck = () => {
      if (w === this.watcher && !this.over) void this.tryAcquire();
    };
    w.on('delete', () => {
      if (w !== this.watcher || this.over) return;
      if (this.leader)
        this.lose(new TsswarmError('precondition', `the leader key of ${this.election} was deleted`));
      else void this.tryAcquire();
    });
    // After a reconnect, or a cancel by etcd, a delete may have been missed: look again.
    w.on('connected', () => {
      if (connects++ > 0) recheck();
    });
    w.on('error', recheck);
  }

  private extendSafety(until: number): void {
    if (until <= this.safeUntil || this.over) return;
    this.safeUntil = until;
    clearTimeout(this.safetyTimer);
    // A margin against a late timer; still more than two keep-alive intervals (TTL/3) after the last answer.
    const margin = Math.min(1_000, (this.ttlSec * 1000) / 4);
    this.safetyTimer = setTimeout(
      () => {
        const why = `no keep-alive of the ${this.election} lease was answered in time (etcd unreachable)`;
        this.lose(new TsswarmError('daemon_unreachable', why));
      },
      until - margin - Date.now(),
    );
    this.safetyTimer.unref();
  }

  /** Ends the candidacy and tells onLost; revokes the lease so that (if etcd is reachable) the next leader need not wait for it to expire. */
  private lose(reason: Error, revoke = true): void {
    if (this.over) return;
    const what = this.leader ? 'lost leadership' : 'stopped campaigning';
    this.ctx.log(`election ${this.election}: ${this.candidateId} ${what}: ${reason.message}`);
    this.finish();
    this.lostReason = reason;
    this.rejectElected(reason);
    for (const cb of this.lostCallbacks.splice(0)) cb(reason);
    if (revoke) this.lease.revoke().catch(() => {});
    else this.lease.release();
  }

  private finish(): void {
    this.over = true;
    this.leader = false;
    clearTimeout(this.safetyTimer);
    this.watcher?.cancel().catch(() => {});
    this.watcher = undefined;
    this.ctx.ended(this);
  }
}
