import type { ServiceSpec } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import type { NormalizedStack, ServiceSpec as StackService } from './stack/types.js';

/** The label that ties services to their stack (as Docker's com.docker.stack.namespace). */
export const STACK_LABEL = 'org.tsswarm.stack.namespace';

/** A stack file's service as the cluster's service spec. */
export function serviceFromStack(
  stackName: string,
  key: string,
  s: StackService,
  scopedNames: Map<string, string>,
): ServiceSpec {
  const d = s.deploy;
  if (d.mode !== 'replicated' && d.mode !== 'global') {
    throw invalid(
      `service ${key}: deploy.mode ${d.mode} is not supported by deploy yet (replicated or global)`,
    );
  }
  const limits = d.resources.limits;
  return {
    name: s.name,
    mode: d.mode,
    replicas: d.mode === 'global' ? 0 : (d.replicas ?? 1),
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
    },
    restartPolicy: d.restartPolicy,
    update: d.updateConfig,
    rollback: d.rollbackConfig,
    constraints: d.placement.constraints,
    preferences: d.placement.preferences,
    ...(d.placement.maxReplicasPerNode ? { maxReplicasPerNode: d.placement.maxReplicasPerNode } : {}),
    reservations: {
      nanoCpus: d.resources.reservations.nanoCpus ?? 0,
      memoryBytes: d.resources.reservations.memoryBytes ?? 0,
    },
    labels: { ...d.labels, [STACK_LABEL]: stackName },
    dependsOn: Object.keys(s.dependsOn).map((dep) => scopedNames.get(dep) ?? dep),
  };
}

/** Every service of a normalised stack as cluster service specs. */
export function servicesFromStack(stack: NormalizedStack): ServiceSpec[] {
  if (!stack?.name || typeof stack.services !== 'object') throw invalid('deploy needs a normalised stack');
  const scoped = new Map(Object.entries(stack.services).map(([k, s]) => [k, s.name]));
  return Object.entries(stack.services).map(([k, s]) => serviceFromStack(stack.name, k, s, scoped));
}
