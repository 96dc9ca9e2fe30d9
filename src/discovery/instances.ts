/**
 * Service discovery's view of a service: its instances, one per task that should run, with
 * the address others reach it at and whether it is healthy. This is the embedded backend,
 * answered from the cluster state (no Consul needed): a task is healthy when it runs (a task
 * with a healthcheck only runs once its container is healthy, and fails when it turns
 * unhealthy). Pure: the manager passes the records in.
 */
import type { NodeRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { STACK_LABEL } from '../manager/deploy.js';
import { isTerminal } from '../manager/orchestrator/states.js';

export interface Instance {
  /** The task id (Consul's service id, too). */
  id: string;
  /** The service's name (stack-scoped: `stack_service`). */
  service: string;
  /** The task's address on its first network, else its node's address. */
  address: string;
  /** The network of that address, if any. */
  network?: string;
  /** The service's first port (its target port inside the container), if it publishes any. */
  port?: number;
  node: string;
  hostname?: string;
  /** Slot (replicated) or node id (global). */
  slot?: number;
  healthy: boolean;
  state: string;
  /** Stack, service, node and spec version, as they are registered. */
  meta: Record<string, string>;
}

export interface LookupOptions {
  /** Unhealthy instances too (tasks starting, or wanted up but not running). */
  all?: boolean;
}

/** One task as an instance (its node's address stands in when it has no network). */
export function taskInstance(
  t: TaskRecord,
  node: Pick<NodeRecord, 'id' | 'address' | 'hostname'> | undefined,
): Instance {
  const attachment = t.attachments?.[0];
  const port = t.endpoint?.ports[0]?.target;
  const stack = t.container.labels[STACK_LABEL];
  const nodeId = t.nodeId ?? node?.id ?? '';
  return {
    id: t.id,
    service: t.serviceName,
    address: attachment ? attachment.address.split('/')[0]! : (node?.address ?? ''),
    ...(attachment ? { network: attachment.network } : {}),
    ...(port !== undefined ? { port } : {}),
    node: nodeId,
    ...(node?.hostname ? { hostname: node.hostname } : {}),
    ...(t.slot !== undefined ? { slot: t.slot } : {}),
    healthy: t.status.state === 'running',
    state: t.status.state,
    meta: {
      ...(stack ? { stack } : {}),
      service: t.serviceName,
      node: nodeId,
      version: String(t.specVersion),
      ...(attachment ? { network: attachment.network } : {}),
    },
  };
}

/** A task wanted up and not ended, on a node: what discovery lists (healthy or not). */
export const isListed = (t: TaskRecord): boolean =>
  t.desiredState === 'running' && !isTerminal(t.status.state) && t.nodeId !== undefined;

/** The instances of a service, healthy ones only unless `all`, ordered by slot (or node). */
export function instancesOf(
  svc: ServiceRecord,
  tasks: readonly TaskRecord[],
  nodes: readonly NodeRecord[],
  opts: LookupOptions = {},
): Instance[] {
  const byNode = new Map(nodes.map((n) => [n.id, n]));
  return tasks
    .filter((t) => t.serviceId === svc.id && isListed(t))
    .map((t) => taskInstance(t, byNode.get(t.nodeId!)))
    .filter((i) => i.healthy || opts.all)
    .sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || a.node.localeCompare(b.node));
}
