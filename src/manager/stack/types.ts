import type { JobSchedule } from '../../api/cluster.js';
/**
 * The normalised stack: what `tsswarm deploy` honours from a Compose/stack file, after
 * interpolation, validation and defaults. Durations are milliseconds, sizes bytes, CPUs
 * nano-CPUs (1e9 = one CPU), as Docker's service API counts them. Every name a service or
 * network gets on the cluster is scoped `<stack>_<key>` unless the file names it explicitly.
 */

/** A whole stack; the stack itself is only a label on what it creates (DESIGN.md §3). */
export interface NormalizedStack {
  /** Stack name (the `NAME` argument, else the file's top-level `name`, else its directory). */
  name: string;
  /** Services by their key in the file (`web`); each carries its scoped name (`stack_web`). */
  services: Record<string, ServiceSpec>;
  /**
   * Networks used by at least one service, by their key in the file. `default` is present when
   * a service names it or has no `networks` (Docker's `<stack>_default`).
   */
  networks: Record<string, NetworkSpec>;
}

export interface ServiceSpec {
  /** Scoped name `<stack>_<service>`. */
  name: string;
  image: string;
  /** `build:`: `tsswarm deploy` builds the image and pushes it to `image` before deploying. */
  build?: BuildSpec;
  /** argv replacing the image's CMD; undefined keeps the image's. A string in the file is split shell-like. */
  command?: string[];
  /** argv replacing the image's ENTRYPOINT; [] clears it; undefined keeps the image's. */
  entrypoint?: string[];
  /** env_file contents (in order) overlaid by `environment`. */
  env: Record<string, string>;
  workingDir?: string;
  user?: string;
  hostname?: string;
  /** Container labels (`labels:`); the service's own labels are `deploy.labels`. */
  labels: Record<string, string>;
  /** Undefined: the image's HEALTHCHECK applies. */
  healthcheck?: HealthcheckSpec;
  /** Time between the stop signal and SIGKILL (default 10s). */
  stopGracePeriodMs: number;
  /** Undefined: the image's STOPSIGNAL, else SIGTERM. */
  stopSignal?: string;
  ulimits: Record<string, { soft: number; hard: number }>;
  /** Canonical names (`CAP_NET_ADMIN`, or `ALL`). */
  capAdd: string[];
  capDrop: string[];
  /** One entry per port (short-syntax ranges are expanded). */
  ports: PortSpec[];
  networks: NetworkAttachment[];
  /** Services of this stack this one depends on. Swarm starts services regardless; kept for tools. */
  dependsOn: Record<string, DependencySpec>;
  deploy: DeploySpec;
  /** A job's cron schedule (`x-tsswarm.schedule` and its options). */
  schedule?: JobSchedule;
  /** The service's `x-*` keys (e.g. `x-tsswarm`), passed through as written (interpolated). */
  extensions: Record<string, unknown>;
}

export interface BuildSpec {
  /** Absolute path of the build context. */
  context: string;
  /** Relative to the context. */
  dockerfile: string;
  args: Record<string, string>;
  target?: string;
}

export interface HealthcheckSpec {
  /** ['NONE'] disables the image's check; ['CMD', ...argv]; ['CMD-SHELL', script]; undefined: the image's test. */
  test?: string[];
  /** Default 30s. */
  intervalMs: number;
  /** Default 30s. */
  timeoutMs: number;
  /** Default 0s. */
  startPeriodMs: number;
  /** Interval during the start period (default 5s). */
  startIntervalMs: number;
  /** Consecutive failures that make the container unhealthy (default 3). */
  retries: number;
}

export interface PortSpec {
  /** Port inside the container. */
  target: number;
  /** Published port; undefined lets the cluster choose one (ingress) or none is published (host). */
  published?: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  /** ingress: reachable on every node; host: on the task's node only. */
  mode: 'ingress' | 'host';
}

export interface NetworkAttachment {
  /** Key of the network in `NormalizedStack.networks`. */
  network: string;
  /** The network's name on the cluster. */
  name: string;
  /** Extra DNS names of the service on this network (its own name always resolves). */
  aliases: string[];
}

export interface DependencySpec {
  condition: 'service_started' | 'service_healthy' | 'service_completed_successfully';
  /** Default true. */
  required: boolean;
}

export type ServiceMode = 'replicated' | 'global' | 'replicated-job' | 'global-job';

export interface DeploySpec {
  /** Default replicated. */
  mode: ServiceMode;
  /**
   * replicated: desired tasks (default 1). replicated-job: completions wanted, also the number
   * run at once (default 1). Absent for the global modes.
   */
  replicas?: number;
  placement: PlacementSpec;
  resources: {
    limits: ResourceAmounts & { pids?: number };
    reservations: ResourceAmounts;
  };
  restartPolicy: RestartPolicySpec;
  updateConfig: UpdateConfigSpec;
  rollbackConfig: UpdateConfigSpec;
  /** Labels of the service object itself (not its containers). */
  labels: Record<string, string>;
  /** vip: one virtual IP load-balanced over the tasks (default); dnsrr: DNS round robin. */
  endpointMode: 'vip' | 'dnsrr';
}

export interface ResourceAmounts {
  /** CPUs ×1e9 (`cpus: '0.5'` → 500000000). */
  nanoCpus?: number;
  memoryBytes?: number;
}

export interface PlacementSpec {
  /**
   * All must hold for a node to be eligible. Swarm syntax as the scheduler takes it
   * (`node.role==manager`, `node.labels.zone!=east`), checked by its parser at load.
   */
  constraints: string[];
  /** Spread tasks evenly over the values of these labels, in order. */
  preferences: { spread: string }[];
  /** 0 = unlimited. */
  maxReplicasPerNode: number;
}

export interface RestartPolicySpec {
  /** Default any (on-failure for jobs). */
  condition: 'none' | 'on-failure' | 'any';
  /** Default 5s. */
  delayMs: number;
  /** 0 = unlimited (default). */
  maxAttempts: number;
  /** Window in which restarts are counted against maxAttempts; 0 = unbounded (default). */
  windowMs: number;
}

export interface UpdateConfigSpec {
  /** Tasks changed at once; 0 = all at once. Default 1. */
  parallelism: number;
  /** Between batches. Default 0. */
  delayMs: number;
  /** Default pause. `rollback` is only valid in update_config. */
  failureAction: 'pause' | 'continue' | 'rollback';
  /** How long each new task is watched for failure. Default 5s. */
  monitorMs: number;
  /** Fraction of failed tasks tolerated, 0..1. Default 0. */
  maxFailureRatio: number;
  /** Default stop-first. */
  order: 'stop-first' | 'start-first';
}

export interface NetworkSpec {
  /** Name on the cluster: `<stack>_<key>`, the file's `name:`, or for external networks `name` or the key. */
  name: string;
  /** Default overlay. */
  driver: 'overlay' | 'bridge';
  driverOpts: Record<string, string>;
  attachable: boolean;
  internal: boolean;
  labels: Record<string, string>;
  ipam: { driver?: string; config: IpamPool[] };
  /** Created outside the stack: deploy checks it exists and never creates or removes it. */
  external: boolean;
}

export interface IpamPool {
  subnet: string;
  gateway?: string;
  ipRange?: string;
}

/** What `loadStack` returns. */
export interface LoadedStack {
  stack: NormalizedStack;
  /** Each `FILE:LINE: path: message`: unsupported keys, unset variables, ignored settings. */
  warnings: string[];
}
