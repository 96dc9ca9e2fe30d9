/**
 * A node's side of discovery: keeps its registry (its local Consul agent) equal to the tasks
 * the node runs. Each sync compares what should be registered with what the registry holds
 * (anti-entropy: after a restart or a reconnect, entries of tasks that are gone are removed and
 * missing ones added), so nothing stale survives a crash. The plan is pure (`planSync`).
 */
import type { NodeRecord, TaskRecord } from '../api/cluster.js';
import type { ContainerRecord } from '../engine/containers/types.js';
import { isListed, taskInstance } from './instances.js';
import type { Registration, Registry } from './registry.js';

/** The tag every registration of tsswarm carries. */
export const TSSWARM_TAG = 'tsswarm';

type NodeIdentity = Pick<NodeRecord, 'id' | 'address' | 'hostname'>;

/**
 * A service's name in Consul: its name with every character a DNS label cannot hold made '-'
 * (`demo_web` is `demo-web`, answered as `demo-web.service.consul`); Consul's DNS interface does
 * not answer a name with '_' or '.'. The meta `service` keeps the name itself.
 */
export const consulServiceName = (service: string): string => service.replace(/[^A-Za-z0-9-]/g, '-');

/** What a task of this node registers: passing while it runs, critical while it starts. */
export function registrationOf(t: TaskRecord, node: NodeIdentity): Registration {
  const i = taskInstance(t, node);
  return {
    id: i.id,
    name: consulServiceName(i.service),
    address: i.address,
    ...(i.port !== undefined ? { port: i.port } : {}),
    tags: [TSSWARM_TAG],
    meta: i.meta,
    status: i.healthy ? 'passing' : 'critical',
    ...(i.healthy ? {} : { note: `task ${i.state}` }),
  };
}

/** The registrations a node's tasks call for. */
export function desiredRegistrations(tasks: readonly TaskRecord[], node: NodeIdentity): Registration[] {
  return tasks.filter((t) => t.nodeId === node.id && isListed(t)).map((t) => registrationOf(t, node));
}

/**
 * What a node registers, from its agent's own view (each task in the state it last reported,
 * with its container): a task wanted up is registered, passing once it runs and its container
 * is not unhealthy, critical otherwise (the note says why). A task that failed while its
 * container still runs (an unhealthy one being stopped) stays registered as critical until the
 * container has exited. A task wanted down is deregistered at once, before its container stops.
 */
export function nodeRegistrations(
  entries: readonly { task: TaskRecord; container?: ContainerRecord }[],
  node: NodeIdentity,
): Registration[] {
  const out: Registration[] = [];
  for (const { task, container } of entries) {
    if (task.nodeId !== node.id) continue;
    const draining = task.status.state === 'failed' && container?.state.status === 'running';
    if (!isListed(task) && !draining) continue;
    const r = registrationOf(task, node);
    const health = container?.state.health;
    if (r.status === 'passing' && health?.status === 'unhealthy') {
      const last = health.log.at(-1)?.output.trim().split('\n').at(-1);
      out.push({ ...r, status: 'critical', note: `unhealthy${last ? `: ${last}` : ''}` });
    } else if (draining) {
      out.push({ ...r, status: 'critical', note: task.status.err ?? 'task failed' });
    } else out.push(r);
  }
  return out;
}

export interface SyncPlan {
  /** New, or changed in what others see (address, port, name, tags, meta). */
  register: Registration[];
  /** Only the check's status changed. */
  status: Array<Pick<Registration, 'id' | 'status' | 'note'>>;
  deregister: string[];
}

const identity = (r: Registration) =>
  JSON.stringify([r.name, r.address, r.port ?? null, [...r.tags].sort(), Object.entries(r.meta).sort()]);

export function planSync(desired: readonly Registration[], current: readonly Registration[]): SyncPlan {
  const have = new Map(current.map((r) => [r.id, r]));
  const want = new Set(desired.map((r) => r.id));
  const plan: SyncPlan = { register: [], status: [], deregister: [] };
  for (const r of desired) {
    const c = have.get(r.id);
    if (!c || identity(c) !== identity(r)) plan.register.push(r);
    else if (c.status !== r.status)
      plan.status.push({ id: r.id, status: r.status, ...(r.note ? { note: r.note } : {}) });
  }
  for (const c of current) if (!want.has(c.id)) plan.deregister.push(c.id);
  return plan;
}

/** Applies a plan: registrations first, then status changes, then removals. */
export async function applySync(registry: Registry, plan: SyncPlan): Promise<void> {
  for (const r of plan.register) await registry.register(r);
  for (const s of plan.status) await registry.setStatus(s.id, s.status, s.note);
  for (const id of plan.deregister) await registry.deregister(id);
}

/** One anti-entropy round: read what the registry holds, and make it what it should be. */
export async function syncRegistry(registry: Registry, desired: readonly Registration[]): Promise<SyncPlan> {
  const plan = planSync(desired, await registry.registered());
  await applySync(registry, plan);
  return plan;
}
