import type { EndpointSpec, PortConfig, ServiceSpec } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import type { NormalizedStack, ServiceSpec as StackService } from './stack/types.js';

/** The label that ties services to their stack (as Docker's com.docker.stack.namespace). */
export const STACK_LABEL = 'org.tsswarm.stack.namespace';

const MODES = ['replicated', 'global', 'replicated-job', 'global-job'];

/**
 * A stack file's service as the cluster's service spec. Keys the file may drop later are set
 * even when empty (undefined), so that a redeploy without them clears them on the service.
 */
export function serviceFromStack(
  stackName: string,
  key: string,
  s: StackService,
  scopedNames: Map<string, string>,
): ServiceSpec {
  const d = s.deploy;
  if (!MODES.includes(d.mode)) {
    throw invalid(`service ${key}: unknown deploy.mode ${d.mode} (${MODES.join(', ')})`);
  }
  const limits = d.resources.limits;
  const global = d.mode === 'global' || d.mode === 'global-job';
  const ports: PortConfig[] = s.ports.map((p) => ({
    target: p.target,
    ...(p.published !== undefined ? { published: p.published } : {}),
    protocol: p.protocol,
    mode: p.mode,
  }));
  const endpoint: EndpointSpec | undefined =
    ports.length > 0 || d.endpointMode !== 'vip' ? { mode: d.endpointMode, ports } : undefined;
  return {
    name: s.name,
    mode: d.mode,
    // replicated-job: completions wanted, all run at once (compose has no max_concurrent)
    replicas: global ? 0 : (d.replicas ?? 1),
    maxConcurrent: undefined,
    container: {
      image: s.image,
      ...(s.entrypoint ? { command: s.entrypoint } : {}),
      ...(s.command ? { args: s.command } : {}),
      env: Object.entries(s.env).map(([k, v]) => `${k}=${v}`),
      ...(s.workingDir ? { workingDir: s.workingDir } : {}),
      ...(s.user ? { user: s.user } : {}),
      ...(s.hostname ? { hostname: s.hostname } : {}),
      labels: { ...s.labels, [STACK_LABEL]: stackName },
      ...(s.stopSignal ? { stopSignal: s.stopSignal } : {}),
      stopGracePeriodMs: s.stopGracePeriodMs,
      limits: {
        ...(limits.memoryBytes ? { memoryBytes: limits.memoryBytes } : {}),
        ...(limits.nanoCpus ? { nanoCpus: limits.nanoCpus } : {}),
        ...(limits.pids ? { pids: limits.pids } : {}),
      },
      ...(s.healthcheck
        ? {
            healthcheck: {
              ...(s.healthcheck.test ? { test: s.healthcheck.test } : {}),
              intervalMs: s.healthcheck.intervalMs,
              timeoutMs: s.healthcheck.timeoutMs,
              startPeriodMs: s.healthcheck.startPeriodMs,
              startIntervalMs: s.healthcheck.startIntervalMs,
              retries: s.healthcheck.retries,
            },
          }
        : {}),
    },
    restartPolicy: d.restartPolicy,
    update: d.updateConfig,
    rollback: d.rollbackConfig,
    constraints: d.placement.constraints,
    preferences: d.placement.preferences,
    maxReplicasPerNode: d.placement.maxReplicasPerNode || undefined,
    reservations: {
      nanoCpus: d.resources.reservations.nanoCpus ?? 0,
      memoryBytes: d.resources.reservations.memoryBytes ?? 0,
    },
    labels: { ...d.labels, [STACK_LABEL]: stackName },
    dependsOn: Object.keys(s.dependsOn).map((dep) => scopedNames.get(dep) ?? dep),
    endpoint,
    schedule: s.schedule,
    networks: s.networks.map((n) => ({
      target: n.name,
      ...(n.aliases.length ? { aliases: n.aliases } : {}),
    })),
  };
}

/** Every service of a normalised stack as cluster service specs. */
export function servicesFromStack(stack: NormalizedStack): ServiceSpec[] {
  if (!stack?.name || typeof stack.services !== 'object') throw invalid('deploy needs a normalised stack');
  const scoped = new Map(Object.entries(stack.services).map(([k, s]) => [k, s.name]));
  return Object.entries(stack.services).map(([k, s]) => serviceFromStack(stack.name, k, s, scoped));
}
