/**
 * A manager's source of nodes' network views (src/network/view.ts): one store watch over
 * networks, services, tasks and nodes; after each burst of changes (NET_BATCH_MS) every
 * subscribed node gets its view again if it changed. The dispatcher streams it in a worker's
 * session; the manager's own node gets it in process (LocalLink).
 */
import type { NetworkRecord, NodeRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { type NetView, netViewFor } from '../network/view.js';
import type { Store, WatchHandle } from './store/types.js';

const NET_BATCH_MS = 30;

type Sub = { nodeId: string; onView: (v: NetView) => void; last?: string };

export class NetworkViews {
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly services = new Map<string, ServiceRecord>();
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly subs = new Set<Sub>();
  private handle?: WatchHandle;
  private timer?: NodeJS.Timeout;
  private ready = false;

  constructor(private readonly store: Store) {}

  async start(): Promise<void> {
    const maps = { networks: this.networks, services: this.services, tasks: this.tasks, nodes: this.nodes };
    type Kinds = keyof typeof maps;
    this.handle = this.store.watch(['networks', 'services', 'tasks', 'nodes'], {}, (ev) => {
      if (ev.type === 'reset') {
        for (const m of Object.values(maps)) m.clear();
        for (const it of ev.items) (maps[it.kind as Kinds] as Map<string, unknown>).set(it.id, it.value);
      } else if (ev.type === 'delete') (maps[ev.kind as Kinds] as Map<string, unknown>).delete(ev.id);
      else (maps[ev.kind as Kinds] as Map<string, unknown>).set(ev.id, ev.value);
      this.timer ??= setTimeout(() => this.publish(), NET_BATCH_MS);
    });
    await this.handle.ready;
    this.ready = true;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.subs.clear();
    await this.handle?.cancel();
  }

  /** Calls onView with the node's view now (once the watch is ready) and whenever it changes. */
  subscribe(nodeId: string, onView: (v: NetView) => void): () => void {
    const sub: Sub = { nodeId, onView };
    this.subs.add(sub);
    if (this.ready) this.send(sub);
    return () => this.subs.delete(sub);
  }

  private publish(): void {
    this.timer = undefined;
    for (const sub of this.subs) this.send(sub);
  }

  private send(sub: Sub): void {
    const view = netViewFor(sub.nodeId, {
      networks: [...this.networks.values()],
      services: [...this.services.values()],
      tasks: [...this.tasks.values()],
      nodes: [...this.nodes.values()],
    });
    const json = JSON.stringify(view);
    if (json === sub.last) return;
    sub.last = json;
    sub.onView(view);
  }
}
