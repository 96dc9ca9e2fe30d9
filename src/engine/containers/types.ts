import type { ResourceFlags as CgroupResourceFlags } from '../cgroups/limits.js';
import type { ResourceLimits } from '../cgroups/types.js';
import type { HealthConfig, HealthcheckRequest, HealthState } from './health.js';

/** What a client asks for when creating a container (Docker's flags, unresolved). */
export interface ContainerCreateRequest {
  image: string;
  name?: string;
  /** Arguments after the image: replace the image's CMD. */
  cmd?: string[];
  /** `--entrypoint`: a single executable; '' resets the image's ENTRYPOINT. */
  entrypoint?: string;
  env?: string[];
  workingDir?: string;
  user?: string;
  hostname?: string;
  tty?: boolean;
  openStdin?: boolean;
  autoRemove?: boolean;
  init?: boolean;
  /** `--userns` as "CONTAINER_ID:HOST_ID:SIZE" (the same map for uids and gids). */
  userns?: string;
  capAdd?: string[];
  capDrop?: string[];
  /** `--device HOST[:CONTAINER]`. */
  devices?: string[];
  stopSignal?: string;
  stopTimeout?: number;
  labels?: Record<string, string>;
  logOpts?: Record<string, string>;
  resources?: ResourceFlags;
  /** `--health-*` (over the image's HEALTHCHECK; test ['NONE'] disables it). */
  healthcheck?: HealthcheckRequest;
  /** Join this network namespace (a path, e.g. /run/netns/NAME) instead of a new one with loopback only. */
  netns?: string;
  /** The container's /etc/resolv.conf nameservers (absent: the image's file is left alone). */
  dns?: string[];
  /** Extra /etc/hosts entries: [address, name]. */
  extraHosts?: Array<[string, string]>;
}

/** Docker's resource flags as typed by a user (devices come from the request's own field). */
export type ResourceFlags = Omit<CgroupResourceFlags, 'devices'>;

export interface IdMap {
  containerId: number;
  hostId: number;
  size: number;
}

/** The resolved, validated configuration a container runs with. Persisted as config.json. */
export interface ContainerConfig {
  image: string;
  imageId: string;
  path: string;
  args: string[];
  env: string[];
  workingDir: string;
  user: string;
  hostname: string;
  tty: boolean;
  openStdin: boolean;
  autoRemove: boolean;
  init: boolean;
  userns?: IdMap;
  capabilities: string[];
  devices: Array<{ hostPath: string; containerPath: string }>;
  stopSignal: string;
  stopTimeout: number;
  labels: Record<string, string>;
  logMaxSize: number;
  logMaxFiles: number;
  limits: ResourceLimits;
  /** The healthcheck the container runs, if any. */
  healthcheck?: HealthConfig;
  netns?: string;
  dns?: string[];
  extraHosts?: Array<[string, string]>;
}

export type ContainerStatus = 'created' | 'running' | 'exited' | 'removing';

export interface ContainerState {
  status: ContainerStatus;
  pid: number;
  shimPid: number;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  oomKilled: boolean;
  error?: string;
  restartCount: number;
  /** Containers with a healthcheck, while running: its status, failing streak and last probes. */
  health?: HealthState;
}

export interface ContainerRecord {
  id: string;
  name: string;
  created: string;
  config: ContainerConfig;
  state: ContainerState;
}
