import type { NodeRecord } from '../api/cluster.js';
import type { Lease, Store } from './store/types.js';

/**
 * Node liveness kept in etcd, so that it does not matter which manager a node's session is
 * with: every node has a key `heartbeats/<nodeId>` attached to a lease of HEARTBEAT_TTL_SEC.
 * The manager serving the node renews that lease on each heartbeat; when the heartbeats stop,
 * etcd deletes the key, and the leader's NodeMonitor marks the node down.
 */
export const HEARTBEAT_TTL_SEC = 3;

export interface HeartbeatRecord {
  [key: string]: unknown;
  /** The manager that serves the node's session (the manager itself for its own node). */
  manager: string;
  since: number;
}

/**
 * The heartbeat leases one manager holds for the nodes it serves. A heartbeat only touches
 * memory; the etcd client keeps each lease alive (every TTL/3) while the node's heartbeats
 * come, and once a node has been silent for the TTL its lease is revoked, which deletes its
 * key (unless another manager holds the key by now). So heartbeat answers never wait on etcd
 * (the key is re-put in the background, see beat()), and a dead manager's leases simply expire.
 */
export class HeartbeatKeeper {
  private readonly leases = new Map<string, Lease>();
  private readonly pending = new Map<string, Promise<void>>();
  private readonly lastSeen = new Map<string, number>();
  private readonly lastPut = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly managerId: string,
    private readonly ttlSec = HEARTBEAT_TTL_SEC,
    private readonly log: (m: string) => void = () => {},
  ) {
    this.timer = setInterval(() => this.expireSilent(), 250);
    this.timer.unref();
  }

  /**
   * Records a heartbeat; the first one (or the first after a takeover) writes the key and waits
   * for it. Later ones re-put the key with this manager's lease at most once a second, in the
   * background: if the node's heartbeats went to another manager for a while and came back, the
   * key may be attached to that manager's lease, which it will revoke when the beats stop there.
   */
  async beat(nodeId: string): Promise<void> {
    const now = Date.now();
    this.lastSeen.set(nodeId, now);
    const lease = this.leases.get(nodeId);
    if (lease) {
      if (now - (this.lastPut.get(nodeId) ?? 0) >= 1000 && !this.pending.has(nodeId)) {
        const p = this.put(nodeId, lease)
          .catch(() => {}) // the next beat tries again
          .finally(() => this.pending.delete(nodeId));
        this.pending.set(nodeId, p);
      }
      return;
    }
    let p = this.pending.get(nodeId);
    if (!p) {
      p = this.hold(nodeId).finally(() => this.pending.delete(nodeId));
      this.pending.set(nodeId, p);
    }
    await p;
  }

  private async put(nodeId: string, lease: Lease): Promise<void> {
    await this.store.putWithLease(
      'heartbeats',
      nodeId,
      { manager: this.managerId, since: Date.now() },
      lease,
    );
    this.lastPut.set(nodeId, Date.now());
  }

  private async hold(nodeId: string): Promise<void> {
    const lease = await this.store.grantLease(this.ttlSec, { keepAlive: true });
    try {
      await this.put(nodeId, lease);
    } catch (e) {
      lease.release();
      throw e;
    }
    this.leases.set(nodeId, lease);
    lease.onLost(() => {
      if (this.leases.get(nodeId) === lease) this.leases.delete(nodeId); // the next beat takes a new one
    });
  }

  private expireSilent(): void {
    const now = Date.now();
    for (const [nodeId, lease] of this.leases) {
      if (nodeId === this.managerId) continue;
      if (now - (this.lastSeen.get(nodeId) ?? 0) < this.ttlSec * 1000) continue;
      this.leases.delete(nodeId);
      this.log(`dispatcher: node ${nodeId} has been silent for ${this.ttlSec} s`);
      void lease.revoke().catch(() => lease.release());
    }
  }

  /**
   * A node (re)opened its session here: its next beat writes the key again with this
   * manager's lease, since another manager may hold it meanwhile. The old lease is left to
   * expire (revoking it could delete a key another manager now holds).
   */
  takeOver(nodeId: string): void {
    this.leases.get(nodeId)?.release();
    this.leases.delete(nodeId);
  }

  /**
   * The manager's own node: its liveness is the manager process's, kept alive by the client
   * (and taken again if the lease is lost while etcd was out of reach).
   */
  async keepSelf(): Promise<void> {
    this.lastSeen.set(this.managerId, Number.POSITIVE_INFINITY);
    await this.hold(this.managerId);
    const lease = this.leases.get(this.managerId)!;
    lease.onLost(() => {
      if (this.closed) return;
      const again = () =>
        this.keepSelf().catch(() => {
          if (!this.closed) setTimeout(again, 500);
        });
      again();
    });
  }

  /** Ends a node's liveness now (the node left the swarm). */
  async end(nodeId: string): Promise<void> {
    const l = this.leases.get(nodeId);
    this.leases.delete(nodeId);
    this.lastSeen.delete(nodeId);
    if (l) await l.revoke().catch(() => {});
    await this.store.delete('heartbeats', nodeId).catch(() => {});
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const l of this.leases.values()) l.release();
    this.leases.clear();
  }
}

/**
 * The leader's view of node liveness. Every half second it compares the nodes with their
 * heartbeat keys: a node whose key is gone is marked down (the orchestrators then replace its
 * tasks), one whose key is back is ready again. A key is gone only once the node was silent
 * for a whole TTL (its manager revoked the lease, or a dead manager's lease expired before the
 * node re-put the key through another manager), so no further grace is given by default.
 * Polling, rather than a watch, keeps this right
 * through etcd leader changes and reconnections, at the cost of two small reads per tick.
 */
export class NodeMonitor {
  private timer?: NodeJS.Timeout;
  private readonly missingSince = new Map<string, number>();
  private stopped = false;
  private ticking = false;

  constructor(
    private readonly store: Store,
    private readonly log: (m: string) => void = () => {},
    private readonly graceMs = 0,
    private readonly intervalMs = 500,
  ) {}

  async start(): Promise<void> {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    await this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.ticking) return;
    this.ticking = true;
    try {
      const [nodes, beats] = await Promise.all([
        this.store.list<NodeRecord>('nodes'),
        this.store.list<HeartbeatRecord>('heartbeats'),
      ]);
      const alive = new Set(beats.items.map((b) => b.id));
      const now = Date.now();
      for (const n of nodes.items) {
        if (n.value.left) continue; // down for good, whatever key a manager may still re-put
        if (alive.has(n.id)) {
          this.missingSince.delete(n.id);
          if (n.value.status !== 'ready') await this.setStatus(n.id, 'ready', 'heartbeats resumed');
          continue;
        }
        if (n.value.status === 'down') continue;
        const since = this.missingSince.get(n.id) ?? now;
        this.missingSince.set(n.id, since);
        if (now - since >= this.graceMs) await this.setStatus(n.id, 'down', 'heartbeats stopped');
      }
    } catch (e) {
      this.log(`node monitor: ${(e as Error).message}`);
    } finally {
      this.ticking = false;
    }
  }

  private async setStatus(nodeId: string, status: NodeRecord['status'], why: string): Promise<void> {
    if (this.stopped) return;
    await this.store
      .retry(async () => {
        const cur = await this.store.find<NodeRecord>('nodes', nodeId);
        if (!cur || cur.value.status === status) return;
        await this.store.update('nodes', nodeId, { ...cur.value, status }, cur.version);
        this.log(`node ${nodeId} (${cur.value.hostname}) is ${status}: ${why}`);
      })
      .catch((e) => this.log(`cannot mark node ${nodeId} ${status}: ${(e as Error).message}`));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
  }
}
