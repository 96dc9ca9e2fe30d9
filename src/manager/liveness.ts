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

/** The heartbeat leases one manager holds for the nodes it serves. */
export class HeartbeatKeeper {
  private readonly leases = new Map<string, Lease>();

  constructor(
    private readonly store: Store,
    private readonly managerId: string,
    private readonly ttlSec = HEARTBEAT_TTL_SEC,
  ) {}

  /** Renews the node's lease, or takes the node over with a new lease and key. */
  async beat(nodeId: string): Promise<void> {
    const held = this.leases.get(nodeId);
    if (held) {
      try {
        return await held.refresh();
      } catch (e) {
        if ((e as { code?: string }).code !== 'not_found') throw e;
      }
    }
    const lease = await this.store.grantLease(this.ttlSec, { keepAlive: false });
    await this.store.putWithLease(
      'heartbeats',
      nodeId,
      { manager: this.managerId, since: Date.now() },
      lease,
    );
    this.leases.set(nodeId, lease);
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
    const lease = await this.store.grantLease(this.ttlSec, { keepAlive: true });
    await this.store.putWithLease(
      'heartbeats',
      this.managerId,
      { manager: this.managerId, since: Date.now() },
      lease,
    );
    this.leases.set(this.managerId, lease);
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
    if (l) await l.revoke().catch(() => {});
    await this.store.delete('heartbeats', nodeId).catch(() => {});
  }

  private closed = false;

  close(): void {
    this.closed = true;
    for (const l of this.leases.values()) l.release();
    this.leases.clear();
  }
}

/**
 * The leader's view of node liveness. Every half second it compares the nodes with their
 * heartbeat keys: a node whose key is gone is marked down (the orchestrators then replace its
 * tasks), one whose key is back is ready again. A key gone means the node was silent for a
 * whole TTL already; a node seen without one gets one more second (its session may be moving
 * to another manager) before it is marked down. Polling, rather than a watch, keeps this right
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
    private readonly graceMs = 1000,
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
