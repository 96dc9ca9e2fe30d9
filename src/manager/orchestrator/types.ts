/**
 * What the orchestrators read and what they answer (DESIGN.md §3, §4). The orchestrators are
 * pure: they get a service, its tasks (and the nodes), the time and an id generator, and return
 * the changes to commit; the caller writes them to the store in one Txn and re-runs on the next
 * watch event (or at `wakeAt`).
 */

/** Observed task states, in their monotonic order (see states.ts). */
export type TaskState =
  | 'new'
  | 'pending'
  | 'assigned'
  | 'accepted'
  | 'preparing'
  | 'ready'
  | 'starting'
  | 'running'
  | 'complete'
  | 'shutdown'
  | 'failed'
  | 'rejected'
  | 'remove'
  | 'orphaned';

/** How managers steer a task: `ready` = prepare but do not start; `running` = start. */
export type DesiredState = 'ready' | 'running' | 'shutdown' | 'remove';

export interface TaskStatus {
  state: TaskState;
  /** When the task entered `state` (ms since the epoch). */
  timestamp: number;
  message?: string;
  exitCode?: number;
  err?: string;
}

export interface Task {
  id: string;
  serviceId: string;
  /** Replicated services and replicated jobs: 1-based slot. */
  slot?: number;
  /** Global services: the node the task is bound to. Others: the node it was assigned to. */
  nodeId?: string;
  /** The service version the task was created from. */
  specVersion: number;
  desiredState: DesiredState;
  status: TaskStatus;
  createdAt: number;
  /** Restart delay: the task must not be started before this time (ms since the epoch). */
  notBefore?: number;
  /**
   * Failure times of the slot's (or node's) earlier tasks that the restart policy replaced,
   * carried from task to replacement so max attempts survive history pruning and leader changes.
   */
  restarts?: number[];
  /** Jobs: the run (the service's job iteration) the task belongs to. */
  jobIteration?: number;
}

export type ServiceMode = 'replicated' | 'global' | 'replicated-job' | 'global-job';

export interface RestartPolicy {
  condition: 'none' | 'on-failure' | 'any';
  /** Between a task's end and its replacement's start. */
  delayMs: number;
  /** Restarts allowed within `windowMs`; 0 = unlimited. */
  maxAttempts: number;
  /** The window max attempts are counted in; 0 = since the service was created. */
  windowMs: number;
}

export interface UpdateConfig {
  /** Slots updated per batch; 0 = all at once. */
  parallelism: number;
  /** Between the end of one batch and the start of the next. */
  delayMs: number;
  failureAction: 'pause' | 'continue' | 'rollback';
  /** How long a new task is watched after it started running; a failure in that time counts. */
  monitorMs: number;
  /** Failures / tasks updated above this triggers failureAction (0: the first failure does). */
  maxFailureRatio: number;
  order: 'stop-first' | 'start-first';
}

export interface ServiceView {
  id: string;
  name: string;
  /** Bumped on every spec change; tasks carry the version they were created from. */
  version: number;
  mode: ServiceMode;
  /** Replicated: the number of slots. Replicated job: tasks running at once (max concurrent). */
  replicas: number;
  restartPolicy: RestartPolicy;
  update: UpdateConfig;
  /** Used when the updater runs in rollback mode; `update` when absent. */
  rollback?: UpdateConfig;
  /** Placement constraints in swarm syntax (`node.labels.zone==a`), all must hold. */
  constraints: string[];
  /** Replicated jobs: successful completions wanted (default `replicas`). */
  totalCompletions?: number;
  /**
   * Jobs: the current run. Absent: the current version is the run. 0: no run yet (a schedule
   * that has not fired).
   */
  jobIteration?: number;
  /** Jobs: `allow` lets earlier runs finish beside the current one; otherwise they are stopped. */
  concurrency?: 'forbid' | 'allow' | 'replace';
}

export interface NodeView {
  id: string;
  hostname?: string;
  availability: 'active' | 'pause' | 'drain';
  status: 'ready' | 'down' | 'unknown';
  labels: Record<string, string>;
  engineLabels?: Record<string, string>;
  role: 'manager' | 'worker';
  platform: { os: string; arch: string };
}

/** Makes task ids; injected so tests (and replays) are deterministic. */
export type IdGenerator = () => string;

/** The changes an orchestrator asks for. Apply them together, in one transaction. */
export interface ReconcileResult {
  /** New tasks to write. */
  create: Task[];
  /** Tasks whose desired state becomes `shutdown`. */
  shutdown: string[];
  /** Old terminal tasks to delete (history beyond the limit). */
  remove: string[];
  /** The earliest future time something in the result depends on (a restart delay); re-run then. */
  wakeAt?: number;
}

export interface ReconcileOptions {
  /** The cluster's nodes; without them no task is moved for its node's sake. */
  nodes?: readonly NodeView[];
  /** Terminal tasks kept per slot (or node); default 5. */
  historyLimit?: number;
}
