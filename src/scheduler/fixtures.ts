/**
 * Builders of nodes, tasks and synthetic clusters for the scheduler's tests and benchmark.
 * Not used by the scheduler itself.
 */
import { Prng } from './random.js';
import type { HostPort, Node, PendingTask, Resources, RunningTask, TaskSpec } from './types.js';

export const CPU = 1e9;
export const GiB = 2 ** 30;

/** A ready, active linux/x86_64 worker with 4 CPUs and 8 GiB unless told otherwise. */
export function makeNode(id: string, over: Partial<Node> = {}): Node {
  return {
    id,
    hostname: `host-${id}`,
    role: 'worker',
    availability: 'active',
    status: 'ready',
    labels: {},
    platform: { os: 'linux', arch: 'x86_64' },
    resources: { nanoCpus: 4 * CPU, memoryBytes: 8 * GiB },
    tasks: [],
    ...over,
  };
}

/** A spec with no reservations, constraints, preferences or ports unless told otherwise. */
export function makeSpec(over: Partial<TaskSpec> = {}): TaskSpec {
  return {
    reservations: { nanoCpus: 0, memoryBytes: 0 },
    constraints: [],
    preferences: [],
    hostPorts: [],
    ...over,
  };
}

/** `count` pending tasks `<service>.<slot>` sharing one spec object. */
export function makeTasks(serviceId: string, count: number, spec: TaskSpec = makeSpec()): PendingTask[] {
  return Array.from({ length: count }, (_, k) => ({
    id: `${serviceId}.${k + 1}`,
    serviceId,
    slot: k + 1,
    spec,
  }));
}

export function running(
  serviceId: string,
  reservations?: Partial<Resources>,
  hostPorts: HostPort[] = [],
): RunningTask {
  return { serviceId, reservations: { nanoCpus: 0, memoryBytes: 0, ...reservations }, hostPorts };
}

export interface SyntheticCluster {
  nodes: Node[];
  pending: PendingTask[];
}

/**
 * A cluster like the benchmark's: `nodes` nodes over 3 zones of unequal size and racks of 20,
 * ~75% labelled tier=app, a few managers, capacity from 4 to 64 CPUs, some nodes paused, drained
 * or down, some tasks already running; `tasks` pending tasks over `services` services with
 * constraints, spread preferences, max replicas per node and a few host ports.
 */
export function syntheticCluster(
  seed: number,
  nodes: number,
  tasks: number,
  services = 20,
): SyntheticCluster {
  const rng = new Prng(seed);
  const zones = ['a', 'b', 'c'];
  const zoneWeights = [0.5, 0.3, 0.2];
  const out: Node[] = [];
  for (let k = 0; k < nodes; k++) {
    const r = rng.next() / 2 ** 32;
    const zone =
      r < zoneWeights[0]! ? zones[0]! : r < zoneWeights[0]! + zoneWeights[1]! ? zones[1]! : zones[2]!;
    const cpus = [4, 8, 16, 32, 64][rng.below(5)]!;
    const odd = rng.below(100);
    out.push(
      makeNode(`node-${k}`, {
        hostname: `h${k}.example`,
        role: k < Math.max(3, Math.floor(nodes / 200)) ? 'manager' : 'worker',
        availability: odd === 0 ? 'drain' : odd === 1 ? 'pause' : 'active',
        status: odd === 2 ? 'down' : 'ready',
        labels: {
          zone,
          rack: `${zone}-r${Math.floor(k / 20)}`,
          ...(rng.below(4) > 0 ? { tier: 'app' } : { tier: 'db' }),
          ...(rng.below(10) === 0 ? { ssd: 'true' } : {}),
        },
        platform: { os: 'linux', arch: rng.below(10) === 0 ? 'aarch64' : 'x86_64' },
        resources: { nanoCpus: cpus * CPU, memoryBytes: cpus * 4 * GiB },
        tasks: rng.below(3) === 0 ? [running('existing', { nanoCpus: CPU, memoryBytes: GiB })] : [],
      }),
    );
  }
  const specs: TaskSpec[] = [];
  for (let s = 0; s < services; s++) {
    const kind = s % 5;
    specs.push(
      makeSpec({
        reservations: { nanoCpus: (1 + (s % 4)) * 0.25 * CPU, memoryBytes: (1 + (s % 3)) * 256 * 2 ** 20 },
        constraints:
          kind === 0
            ? ['node.labels.tier==app', 'node.role!=manager']
            : kind === 1
              ? ['node.role!=manager']
              : kind === 2
                ? ['node.labels.tier==app', 'node.platform.os==linux']
                : kind === 3
                  ? ['node.labels.tier!=db', 'node.platform.arch==x86_64']
                  : ['node.labels.ssd==true'],
        preferences:
          kind === 4
            ? []
            : kind % 2 === 0
              ? [{ spread: 'node.labels.zone' }, { spread: 'node.labels.rack' }]
              : [{ spread: 'node.labels.zone' }],
        maxReplicasPerNode: kind === 1 ? 4 : undefined,
        hostPorts: s === services - 2 ? [{ port: 8080, protocol: 'tcp' }] : [],
        platforms: kind === 3 ? [{ os: 'linux', arch: 'amd64' }] : undefined,
      }),
    );
  }
  const pending: PendingTask[] = [];
  const per = Math.ceil(tasks / services);
  for (let s = 0; s < services && pending.length < tasks; s++) {
    const count = Math.min(per, tasks - pending.length);
    pending.push(...makeTasks(`svc-${s}`, count, specs[s]!));
  }
  return { nodes: out, pending };
}
