/**
 * What the scheduler reads and what it answers. Self-contained on purpose: the manager builds a
 * `ClusterSnapshot` from its store (nodes plus the tasks already on them) and the pending tasks,
 * calls `schedule`, and commits the plan optimistically (DESIGN.md §4).
 */

/** CPU in billionths of a CPU (Docker's NanoCPUs: 1.5 CPUs = 1_500_000_000) and memory in bytes. */
export interface Resources {
  nanoCpus: number;
  memoryBytes: number;
}

/** `os` as Go spells it (linux, windows), `arch` as the node reports it (x86_64/amd64, aarch64/arm64…). */
export interface Platform {
  os: string;
  arch: string;
}

/** A port published in host mode: binds on the task's node, so two tasks cannot share it there. */
export interface HostPort {
  port: number;
  protocol: 'tcp' | 'udp' | 'sctp';
}

/** A task already on a node (assigned or running): what it reserves and publishes there. */
export interface RunningTask {
  serviceId: string;
  reservations: Resources;
  hostPorts: HostPort[];
}

/** One node of the cluster as the scheduler sees it. */
export interface Node {
  id: string;
  hostname: string;
  role: 'manager' | 'worker';
  availability: 'active' | 'pause' | 'drain';
  status: 'ready' | 'down' | 'unknown';
  /** Node labels set by the operator (`node update --label-add`), matched by `node.labels.*`. */
  labels: Record<string, string>;
  /** Labels of the node's engine, matched by `engine.labels.*`. */
  engineLabels?: Record<string, string>;
  platform: Platform;
  /** Capacity of the node; what its tasks reserve is subtracted from it. */
  resources: Resources;
  /** Tasks already on the node (any state that holds resources). */
  tasks: RunningTask[];
}

/** Everything the scheduler knows about the cluster at one moment. */
export interface ClusterSnapshot {
  nodes: Node[];
}

/** Placement preference: spread tasks evenly over the values of a node or engine label. */
export interface SpreadPreference {
  /** `node.labels.<name>` or `engine.labels.<name>`. */
  spread: string;
}

/** The part of a service's spec that placement depends on. Tasks of one service share it. */
export interface TaskSpec {
  reservations: Resources;
  /** Swarm syntax: `node.labels.zone==b`, `node.role!=manager`… All must hold. */
  constraints: string[];
  /** Applied in order: spread over the first label's values, then within each over the second's… */
  preferences: SpreadPreference[];
  /** At most this many tasks of the service on one node; 0 or absent means no limit. */
  maxReplicasPerNode?: number;
  hostPorts: HostPort[];
  /** The image's platforms; a node must match one of them. Absent or empty: any platform. */
  platforms?: Platform[];
}

/** A task waiting for a node. */
export interface PendingTask {
  id: string;
  serviceId: string;
  /** Replicated services: the task's slot (carried, not used for placement). */
  slot?: number;
  /** Global services: the node this task must run on; it is checked, never moved. */
  nodeId?: string;
  spec: TaskSpec;
}

export type Strategy = 'spread' | 'binpack';

export interface ScheduleOptions {
  /** Seeds the PRNG that breaks ties; the same seed and input always give the same plan. */
  seed: number;
  /** `spread` (default): fewest tasks of the service first. `binpack`: fill the fullest node that fits. */
  strategy?: Strategy;
}

export interface Assignment {
  taskId: string;
  nodeId: string;
}

export interface Unplaced {
  taskId: string;
  /** One phrase per cause, most frequent first: `insufficient resources on 3 nodes`. */
  reasons: string[];
  /** The one-line message a user sees: `no suitable node (insufficient resources on 3 nodes; …)`. */
  summary: string;
}

/** Both lists follow the order of the pending tasks given. */
export interface SchedulePlan {
  assignments: Assignment[];
  unplaced: Unplaced[];
}
