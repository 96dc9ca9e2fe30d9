import { DEFAULT_RESTART, DEFAULT_UPDATE, type ServiceSpec } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import { parseConstraint } from '../scheduler/constraints.js';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** Fills a service spec's defaults, as `docker service create` does, and checks it. */
export function normalizeServiceSpec(input: Partial<ServiceSpec> & { image?: string }): ServiceSpec {
  const name = input.name ?? '';
  if (!NAME_RE.test(name))
    throw invalid(`invalid service name "${name}": use letters, digits, '_', '.', '-' (at most 63)`);
  const image = input.container?.image ?? input.image;
  if (!image) throw invalid('a service needs an image');
  const mode = input.mode ?? 'replicated';
  if (!['replicated', 'global'].includes(mode))
    throw invalid(`unsupported mode "${mode}": replicated or global`);
  const replicas = mode === 'global' ? 0 : (input.replicas ?? 1);
  if (!Number.isInteger(replicas) || replicas < 0)
    throw invalid(`invalid replicas "${replicas}": a whole number ≥ 0`);
  const constraints = input.constraints ?? [];
  for (const c of constraints) parseConstraint(c);
  const container = input.container ?? { image, env: [], labels: {}, stopGracePeriodMs: 10_000, limits: {} };
  return {
    name,
    mode,
    replicas,
    container: {
      ...container,
      image,
      env: container.env ?? [],
      labels: container.labels ?? {},
      limits: container.limits ?? {},
    },
    restartPolicy: { ...DEFAULT_RESTART, ...(input.restartPolicy ?? {}) },
    update: { ...DEFAULT_UPDATE, ...(input.update ?? {}) },
    constraints,
    preferences: input.preferences ?? [],
    ...(input.maxReplicasPerNode ? { maxReplicasPerNode: input.maxReplicasPerNode } : {}),
    reservations: input.reservations ?? { nanoCpus: 0, memoryBytes: 0 },
    labels: input.labels ?? {},
    ...(input.rollback ? { rollback: input.rollback } : {}),
    ...(input.dependsOn?.length ? { dependsOn: input.dependsOn } : {}),
  };
}
