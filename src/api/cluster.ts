/**
 * Cluster objects as stored (etcd) and as the API shows them. Shared by manager, worker and CLI.
 */

import type { HealthcheckRequest } from '../engine/containers/health.js';
import type { RestartPolicy, ServiceMode, Task, UpdateConfig } from '../manager/orchestrator/types.js';
import type { UpdaterState } from '../manager/orchestrator/updater.js';

/** What a task's container runs: copied into every task when it is created, as swarmkit does. */
/** What the API shows instead of registry credentials (`ContainerSpec.registryAuth`). */
export const REDACTED = '<redacted>';

export interface ContainerSpec {
  image: string;
  command?: string[];
  args?: string[];
  env: string[];
  workingDir?: string;
  user?: string;
  hostname?: string;
  labels: Record<string, string>;
  stopSignal?: string;
  stopGracePeriodMs: number;
  init?: boolean;
  limits: { memoryBytes?: number; nanoCpus?: number; pids?: number };
  /** Over the image's HEALTHCHECK (test ['NONE'] disables it); a task runs once healthy. */
  healthcheck?: HealthcheckRequest;
  /**
   * Registry credentials for pulling `image` (an encoded X-Registry-Auth), from
   * `--with-registry-auth`. Workers get it with their tasks; the API never shows it.
   */
  registryAuth?: string;
}

/**
 * A port the service publishes (Docker's PortConfig). `ingress`: reachable on every node;
 * `host`: bound on the node of each task only, so two such tasks never share a node.
 */
export interface PortConfig {
  /** The port inside the container. */
  target: number;
  /** The port on the node(s); absent: chosen by the cluster (ingress) or by the node (host). */
  published?: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  mode: 'ingress' | 'host';
}

/** How a service is reached: its published ports and how its tasks are load-balanced. */
export interface EndpointSpec {
  /** vip (default): one virtual IP over the tasks; dnsrr: DNS round robin. */
  mode?: 'vip' | 'dnsrr';
  ports: PortConfig[];
}

/** The user's declaration of a service. */
export interface ServiceSpec {
  name: string;
  mode: ServiceMode;
  /**
   * replicated: tasks wanted. replicated-job: successful completions wanted. Global modes: 0.
   */
  replicas: number;
  /** replicated-job: tasks run at once (default `replicas`). */
  maxConcurrent?: number;
  container: ContainerSpec;
  restartPolicy: RestartPolicy;
  update: UpdateConfig;
  /** How a rollback proceeds; the update config when absent. */
  rollback?: UpdateConfig;
  constraints: string[];
  preferences: Array<{ spread: string }>;
  maxReplicasPerNode?: number;
  reservations: { nanoCpus: number; memoryBytes: number };
  labels: Record<string, string>;
  /** Names of services that must have a running task before this one starts (depends_on). */
  dependsOn?: string[];
  /** Published ports (absent: none). */
  endpoint?: EndpointSpec;
  /** Jobs only: run on a cron schedule instead of once (see src/manager/jobs/). */
  schedule?: JobSchedule;
  /** Networks the tasks are attached to (by network name), with extra DNS names. */
  networks?: NetworkAttachmentSpec[];
}

export interface NetworkAttachmentSpec {
  /** The network's name. */
  target: string;
  aliases?: string[];
}

/** A network (kind `networks`): its subnet and gateway are allocated once, by the manager creating it. */
export interface NetworkRecord {
  [key: string]: unknown;
  id: string;
  name: string;
  /** overlay: one network across the hosts; bridge: a bridge on each host, not connected. */
  driver: 'overlay' | 'bridge';
  scope: 'swarm' | 'local';
  subnet: string;
  gateway: string;
  /** Standalone containers may attach (not only services' tasks). */
  attachable: boolean;
  /** No way out of the network (no gateway to the outside). */
  internal: boolean;
  labels: Record<string, string>;
  /** Overlay: its VXLAN network identifier. Bridge: the number in its link's name (no VXLAN). */
  vni?: number;
  /** The routing mesh's network (`ingress`): published ports travel over it between nodes. */
  ingress?: boolean;
  /** Ingress: each node's own address on it, by node id (allocated by the leader). */
  endpoints?: Record<string, string>;
  createdAt: number;
}

/** A task's (or a service VIP's) address on one network. */
export interface NetworkAddress {
  networkId: string;
  /** The network's name (for display). */
  network: string;
  /** CIDR form: 10.0.1.5/24. */
  address: string;
}

/**
 * A job's cron schedule, with node-cron's syntax and semantics (5 fields, or 6 with seconds
 * first). Stack files declare it as `x-tsswarm: {schedule, timezone, concurrency, history, missed}`.
 */
export interface JobSchedule {
  cron: string;
  /** IANA time zone the expression is read in (default UTC). */
  timezone: string;
  /**
   * A firing while the previous run still goes: `forbid` skips it, `allow` starts another run
   * beside it, `replace` stops the previous run and starts the new one.
   */
  concurrency: 'forbid' | 'allow' | 'replace';
  /** Runs kept by `job history` (and their tasks); older ones are pruned. */
  history: number;
  /**
   * Scheduled times that passed while no leader could fire them (a failover, the cluster
   * down): `run-once` starts one run for all of them when a leader is back, `skip` records
   * them as skipped.
   */
  missed: 'run-once' | 'skip';
}

/** Where a job stands: its current run, and for a schedule how far its firings got. */
export interface JobState {
  /** The current run; tasks carry the run they belong to. 0: no run yet (a schedule not fired). */
  iteration: number;
  /** Records written so far: the next run record is `seq + 1`. */
  seq: number;
  /** Schedules: every scheduled time up to this one (ms) was fired, skipped or counted missed. */
  cursor?: number;
  /** The schedule the cursor follows (`timezone cron`); a new schedule starts from its update. */
  scheduleKey?: string;
}

/**
 * One firing of a job (kind `jobruns`, id `<serviceId>.<seq>`): a run started (by the schedule,
 * `job rerun`, the create or an update of the job), or a scheduled firing that was skipped.
 * A scheduled time is written in exactly one record, as `scheduledAt` or among `missed`.
 */
export interface JobRunRecord extends JobRun {
  [key: string]: unknown;
  serviceId: string;
  serviceName: string;
}

/** A run record's own fields. */
export interface JobRun {
  seq: number;
  trigger: 'create' | 'update' | 'rollback' | 'manual' | 'schedule';
  /** The run this record started (absent for a skipped firing). */
  iteration?: number;
  /** The scheduled time this firing is for. */
  scheduledAt?: number;
  /** Earlier scheduled times missed while no leader fired them, that this record stands for. */
  missed?: number[];
  /** Missed times beyond those listed. */
  missedMore?: number;
  createdAt: number;
  endedAt?: number;
  result: 'running' | 'succeeded' | 'failed' | 'replaced' | 'skipped';
  reason?: string;
  /** At the end of the run: successful and given-up slots (nodes), and how many were wanted. */
  succeeded?: number;
  failed?: number;
  total?: number;
}

export interface ServiceRecord {
  [key: string]: unknown;
  id: string;
  spec: ServiceSpec;
  /** Bumped on every change of what the tasks run (not on scaling). */
  version: number;
  createdAt: number;
  updatedAt: number;
  /** The spec before the last update, and its version: what `service rollback` restores. */
  previousSpec?: ServiceSpec;
  previousVersion?: number;
  /** Set by `service rollback` until the leader starts rolling back. */
  rollbackRequested?: boolean;
  /** The rolling update (or rollback) in progress or last finished. */
  updateStatus?: UpdaterState;
  /** Jobs: the current run and the schedule's progress. */
  job?: JobState;
  /** Endpoint mode vip: the service's virtual IP on each of its networks (allocated by the leader). */
  virtualIps?: NetworkAddress[];
}

/** A task as stored: the orchestrator's task plus what the worker needs to run it. */
export interface TaskRecord extends Task {
  [key: string]: unknown;
  serviceName: string;
  container: ContainerSpec;
  reservations: { nanoCpus: number; memoryBytes: number };
  /** The engine's container id once the worker created it. */
  containerId?: string;
  /** The service's published ports when the task was created (what its node must publish). */
  endpoint?: { ports: PortConfig[] };
  /** The task's address on each of its service's networks (allocated by the leader at creation). */
  attachments?: NetworkAddress[];
}

export interface NodeRecord {
  [key: string]: unknown;
  id: string;
  hostname: string;
  role: 'manager' | 'worker';
  availability: 'active' | 'pause' | 'drain';
  status: 'ready' | 'down' | 'unknown';
  labels: Record<string, string>;
  address: string;
  platform: { os: string; arch: string };
  resources: { nanoCpus: number; memoryBytes: number };
  engineVersion: string;
  /** A manager's dispatcher address (HOST:PORT), where nodes keep their sessions. */
  managerAddr?: string;
  /** The node left the swarm (`swarm leave`): it stays down until `node rm`. */
  left?: boolean;
}

export interface ClusterRecord {
  [key: string]: unknown;
  id: string;
  createdAt: number;
}

/** Default restart policy and update config, as `docker service create` has them. */
export const DEFAULT_RESTART: RestartPolicy = {
  condition: 'any',
  delayMs: 5000,
  maxAttempts: 0,
  windowMs: 0,
};
export const DEFAULT_UPDATE: UpdateConfig = {
  parallelism: 1,
  delayMs: 0,
  failureAction: 'pause',
  monitorMs: 5000,
  maxFailureRatio: 0,
  order: 'stop-first',
};
