import type { TaskRecord } from '../api/cluster.js';
import type { NetView } from '../network/view.js';
import type { ManagerLink, StatusUpdate } from '../worker/agent.js';
import type { NetworkViews } from './netViews.js';
import { canTransition } from './orchestrator/states.js';
import type { Store } from './store/types.js';

/**
 * The manager's own node's link to the control plane, in process: assignments come from a
 * store watch, status goes into the store. Remote workers get the same interface over their
 * TLS session with a manager (the next step of the control plane).
 */
export class LocalLink implements ManagerLink {
  constructor(
    private readonly store: Store,
    private readonly views: NetworkViews,
  ) {}

  async watchNetwork(nodeId: string, onView: (view: NetView) => void) {
    const off = this.views.subscribe(nodeId, (v) => onView(structuredClone(v)));
    return { cancel: async () => void off() };
  }

  async watchAssignments(nodeId: string, onTasks: (tasks: TaskRecord[]) => void) {
    const mine = new Map<string, TaskRecord>();
    let timer: NodeJS.Timeout | undefined;
    // changes come in bursts: the agent gets the list at most every 30 ms
    const deliver = () => {
      timer = undefined;
      onTasks([...mine.values()].map((t) => structuredClone(t)));
    };
    const handle = this.store.watch<TaskRecord>('tasks', {}, (ev) => {
      if (ev.type === 'reset') {
        mine.clear();
        for (const it of ev.items) if (it.value.nodeId === nodeId) mine.set(it.id, it.value);
      } else if (ev.type === 'delete') {
        if (!mine.delete(ev.id)) return;
      } else if (ev.value.nodeId === nodeId) mine.set(ev.id, ev.value);
      else if (!mine.delete(ev.id)) return;
      timer ??= setTimeout(deliver, 30);
    });
    await handle.ready;
    return {
      ready: handle.ready,
      get revision() {
        return handle.revision;
      },
      cancel: async () => {
        clearTimeout(timer);
        await handle.cancel();
      },
    };
  }

  async report(updates: StatusUpdate[]): Promise<void> {
    await recordStatus(this.store, updates);
  }
}

/**
 * Records task status reports; a status only moves forward, and a vanished task is ignored, as
 * is (with `fromNode`) a report on a task assigned to another node.
 */
export async function recordStatus(store: Store, updates: StatusUpdate[], fromNode?: string): Promise<void> {
  const one = (u: StatusUpdate) =>
    store.retry(async () => {
      const cur = await store.find<TaskRecord>('tasks', u.taskId);
      if (!cur || (fromNode !== undefined && cur.value.nodeId !== fromNode)) return;
      // a worker's progress (an image pull) is reported again within `preparing`
      const progress = u.status.state === 'preparing' && cur.value.status.state === 'preparing';
      if (!progress && !canTransition(cur.value.status.state, u.status.state)) return;
      const next: TaskRecord = { ...cur.value, status: u.status };
      if (u.containerId) next.containerId = u.containerId;
      await store.update('tasks', u.taskId, next, cur.version);
    });
  // different tasks are different keys: a batch is recorded a few at a time, in order per task
  const byTask = new Map<string, StatusUpdate[]>();
  for (const u of updates) byTask.set(u.taskId, [...(byTask.get(u.taskId) ?? []), u]);
  const lanes = [...byTask.values()];
  for (let i = 0; i < lanes.length; i += 16) {
    await Promise.all(
      lanes.slice(i, i + 16).map(async (lane) => {
        for (const u of lane) await one(u);
      }),
    );
  }
}
