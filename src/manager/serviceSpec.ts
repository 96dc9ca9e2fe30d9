import {
  DEFAULT_RESTART,
  DEFAULT_UPDATE,
  type EndpointSpec,
  type JobSchedule,
  type PortConfig,
  type ServiceSpec,
} from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import { decodeAuthHeader } from '../engine/registry/auth.js';
import { parseConstraint } from '../scheduler/constraints.js';
import type { HostPort } from '../scheduler/types.js';
import { scheduleFrom } from './jobs/schedule.js';
import type { RestartPolicy, ServiceMode, UpdateConfig } from './orchestrator/types.js';
import { parseSpread } from './stack/constraints.js';
import { parseShortPort } from './stack/ports.js';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const MODES: readonly ServiceMode[] = ['replicated', 'global', 'replicated-job', 'global-job'];
const PROTOCOLS = ['tcp', 'udp', 'sctp'] as const;
const PUBLISH_MODES = ['ingress', 'host'] as const;

/** What `normalizeServiceSpec` accepts: a spec with any part left out, the restart policy partly. */
export type ServiceSpecInput = Partial<Omit<ServiceSpec, 'restartPolicy' | 'update' | 'schedule'>> & {
  image?: string;
  schedule?: Partial<JobSchedule> | null;
  restartPolicy?: Partial<RestartPolicy>;
  update?: Partial<UpdateConfig>;
};

export const isJob = (mode: ServiceMode): boolean => mode === 'replicated-job' || mode === 'global-job';

/**
 * Fills a service spec's defaults, as `docker service create` does, and checks it. Jobs
 * (`replicated-job`: `replicas` successful completions, `maxConcurrent` at once, default all;
 * `global-job`: one per eligible node) restart on failure by default and never after a success.
 */
export function normalizeServiceSpec(input: ServiceSpecInput): ServiceSpec {
  const name = input.name ?? '';
  if (!NAME_RE.test(name))
    throw invalid(`invalid service name "${name}": use letters, digits, '_', '.', '-' (at most 63)`);
  const image = input.container?.image ?? input.image;
  if (!image) throw invalid('a service needs an image');
  // a schedule makes a job: a replicated one unless the mode says global-job
  const mode = input.mode ?? (input.schedule ? 'replicated-job' : 'replicated');
  if (!MODES.includes(mode))
    throw invalid(`unsupported mode "${mode}": replicated, global, replicated-job or global-job`);
  const global = mode === 'global' || mode === 'global-job';
  if (global && input.replicas)
    throw invalid(
      `replicas can only be used with mode replicated or replicated-job (this service is ${mode})`,
    );
  const replicas = global ? 0 : (input.replicas ?? 1);
  if (!Number.isInteger(replicas) || replicas < 0)
    throw invalid(`invalid replicas "${replicas}": a whole number ≥ 0`);
  const maxConcurrent = input.maxConcurrent ?? undefined;
  if (maxConcurrent !== undefined) {
    if (mode !== 'replicated-job')
      throw invalid(`max concurrent can only be used with mode replicated-job (this service is ${mode})`);
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1)
      throw invalid(`invalid max concurrent "${maxConcurrent}": a whole number ≥ 1`);
  }
  if (input.schedule && !isJob(mode))
    throw invalid(
      `a schedule can only be used with mode replicated-job or global-job (this service is ${mode}): a scheduled service runs to completion at each firing`,
    );
  const schedule = input.schedule ? scheduleFrom(input.schedule) : undefined;
  const restartPolicy = normalizeRestart(mode, input.restartPolicy);
  const constraints = input.constraints ?? [];
  for (const c of constraints) parseConstraint(c);
  const preferences = (input.preferences ?? []).map((p) => {
    const r = parseSpread(String((p as { spread?: unknown })?.spread ?? ''));
    if (!r.ok) throw invalid(`invalid placement preference: ${r.error}`);
    return { spread: r.value };
  });
  const endpoint = normalizeEndpoint(input.endpoint);
  const networks = (input.networks ?? []).map((a) => {
    const target = a?.target;
    if (typeof target !== 'string' || !NAME_RE.test(target))
      throw invalid(`invalid network ${JSON.stringify(target)}: a network name`);
    const aliases = a.aliases ?? [];
    for (const alias of aliases)
      if (typeof alias !== 'string' || !NAME_RE.test(alias))
        throw invalid(
          `invalid alias ${JSON.stringify(alias)} on network ${target}: letters, digits, '_', '.', '-'`,
        );
    return { target, ...(aliases.length ? { aliases } : {}) };
  });
  const container = input.container ?? { image, env: [], labels: {}, stopGracePeriodMs: 10_000, limits: {} };
  if (container.registryAuth !== undefined) {
    let ok = false;
    try {
      ok = decodeAuthHeader(container.registryAuth) !== undefined;
    } catch {}
    if (!ok)
      throw invalid(
        'malformed registry credentials: send them with --with-registry-auth (after `tsswarm login`)',
      );
  }
  return {
    name,
    mode,
    replicas,
    ...(maxConcurrent !== undefined ? { maxConcurrent } : {}),
    container: {
      ...container,
      image,
      env: container.env ?? [],
      labels: container.labels ?? {},
      limits: container.limits ?? {},
    },
    restartPolicy,
    update: { ...DEFAULT_UPDATE, ...(input.update ?? {}) },
    constraints,
    preferences,
    ...(input.maxReplicasPerNode ? { maxReplicasPerNode: input.maxReplicasPerNode } : {}),
    reservations: input.reservations ?? { nanoCpus: 0, memoryBytes: 0 },
    labels: input.labels ?? {},
    ...(input.rollback ? { rollback: input.rollback } : {}),
    ...(input.dependsOn?.length ? { dependsOn: input.dependsOn } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(schedule ? { schedule } : {}),
    ...(networks.length ? { networks } : {}),
  };
}

function normalizeRestart(mode: ServiceMode, given: Partial<RestartPolicy> | undefined): RestartPolicy {
  const job = isJob(mode);
  const policy: RestartPolicy = {
    ...DEFAULT_RESTART,
    ...(job ? { condition: 'on-failure' as const } : {}),
    ...(given ?? {}),
  };
  if (!['none', 'on-failure', 'any'].includes(policy.condition))
    throw invalid(`invalid restart condition "${policy.condition}": none, on-failure or any`);
  if (job && policy.condition === 'any')
    throw invalid(
      `restart condition "any" cannot be used with mode ${mode}: a job's task is not run again once it succeeds (use on-failure or none)`,
    );
  return policy;
}

/** Checks published ports and fills their defaults (tcp, ingress); no ports and vip: undefined. */
function normalizeEndpoint(e: Partial<EndpointSpec> | undefined): EndpointSpec | undefined {
  if (!e) return undefined;
  if (e.mode !== undefined && e.mode !== 'vip' && e.mode !== 'dnsrr')
    throw invalid(`invalid endpoint mode "${e.mode}": vip or dnsrr`);
  const ports = (e.ports ?? []).map(normalizePort);
  const seen = new Set<string>();
  for (const p of ports) {
    if (p.published === undefined) continue;
    const key = `${p.published}/${p.protocol}`;
    if (seen.has(key)) throw invalid(`port ${key} is published twice`);
    seen.add(key);
  }
  if (e.mode === 'dnsrr' && ports.some((p) => p.mode === 'ingress'))
    throw invalid('a port published in ingress mode needs endpoint mode vip (use mode=host with dnsrr)');
  if (ports.length === 0 && (e.mode ?? 'vip') === 'vip') return undefined;
  return { ...(e.mode ? { mode: e.mode } : {}), ports };
}

const isPort = (n: unknown): n is number =>
  Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;

function normalizePort(p: Partial<PortConfig>): PortConfig {
  const protocol = p.protocol ?? 'tcp';
  const mode = p.mode ?? 'ingress';
  if (!isPort(p.target)) throw invalid(`invalid target port ${JSON.stringify(p.target)}: expected 1-65535`);
  if (p.published !== undefined && !isPort(p.published))
    throw invalid(`invalid published port ${JSON.stringify(p.published)}: expected 1-65535`);
  if (!(PROTOCOLS as readonly string[]).includes(protocol))
    throw invalid(`invalid protocol "${protocol}" of port ${p.target}: tcp, udp or sctp`);
  if (!(PUBLISH_MODES as readonly string[]).includes(mode))
    throw invalid(`invalid publish mode "${mode}" of port ${p.target}: ingress or host`);
  return {
    target: p.target,
    ...(p.published !== undefined ? { published: p.published } : {}),
    protocol,
    mode,
  };
}

/**
 * The host ports a task of these published ports binds on its node: host-mode ports with a
 * published number (the scheduler keeps two such tasks off one node).
 */
export function hostPortsOf(ports: readonly PortConfig[] | undefined): HostPort[] {
  return (ports ?? [])
    .filter((p) => p.mode === 'host' && p.published !== undefined)
    .map((p) => ({ port: p.published!, protocol: p.protocol }));
}

const PUBLISH_SYNTAX =
  'expected [PUBLISHED:]TARGET[/PROTOCOL] or published=P,target=T[,protocol=tcp|udp|sctp][,mode=ingress|host]';

/**
 * `--publish` as `docker service create` reads it: short `[PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]`
 * (ingress mode; ranges expand) or long `published=8080,target=80,protocol=tcp,mode=host`.
 */
export function parsePublish(text: string): PortConfig[] {
  const spec = text.trim();
  const bad = (why: string) => invalid(`invalid publish "${text}": ${why}`);
  if (!spec.includes('=')) {
    const r = parseShortPort(spec);
    if (!r.ok) throw bad(`${r.error} (${PUBLISH_SYNTAX})`);
    if (r.value.hostIp) throw bad('a host IP is not supported: ports are published on every address');
    return r.value.ports.map((p) => ({ ...p }));
  }
  const fields: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (!['published', 'target', 'protocol', 'mode'].includes(key))
      throw bad(`unknown field "${key}" (${PUBLISH_SYNTAX})`);
    if (eq < 0 || value === '') throw bad(`field "${key}" needs a value`);
    fields[key] = value;
  }
  const num = (key: string): number | undefined => {
    const v = fields[key];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || !isPort(Number(v))) throw bad(`${key} must be a port between 1 and 65535`);
    return Number(v);
  };
  const target = num('target');
  if (target === undefined) throw bad('target is required');
  const published = num('published');
  const protocol = (fields.protocol ?? 'tcp').toLowerCase();
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) throw bad('protocol must be tcp, udp or sctp');
  const mode = (fields.mode ?? 'ingress').toLowerCase();
  if (!(PUBLISH_MODES as readonly string[]).includes(mode)) throw bad('mode must be ingress or host');
  return [
    {
      target,
      ...(published !== undefined ? { published } : {}),
      protocol: protocol as PortConfig['protocol'],
      mode: mode as PortConfig['mode'],
    },
  ];
}

/**
 * `service update --publish-rm` then `--publish-add`, as docker does: a removal names ports by
 * target port and protocol (in any `--publish` syntax); an added port already there is kept once.
 */
export function updatePorts(current: readonly PortConfig[], add: readonly string[], rm: readonly string[]) {
  const gone = rm.flatMap(parsePublish);
  const kept = current.filter((p) => !gone.some((g) => g.target === p.target && g.protocol === p.protocol));
  const same = (a: PortConfig, b: PortConfig) =>
    a.target === b.target && a.published === b.published && a.protocol === b.protocol && a.mode === b.mode;
  for (const p of add.flatMap(parsePublish)) if (!kept.some((k) => same(k, p))) kept.push(p);
  return kept;
}

/** `--placement-pref spread=node.labels.zone` (the only strategy, as in Docker). */
export function parsePlacementPref(text: string): { spread: string } {
  const eq = text.indexOf('=');
  const strategy = eq < 0 ? '' : text.slice(0, eq).trim().toLowerCase();
  if (strategy !== 'spread')
    throw invalid(
      `invalid placement preference "${text}": expected spread=node.labels.<name> (spread is the only strategy)`,
    );
  const r = parseSpread(text.slice(eq + 1));
  if (!r.ok) throw invalid(`invalid placement preference "${text}": ${r.error}`);
  return { spread: r.value };
}

/** `service update --placement-pref-rm` then `--placement-pref-add`. */
export function updatePreferences(
  current: ReadonlyArray<{ spread: string }>,
  add: readonly string[],
  rm: readonly string[],
): Array<{ spread: string }> {
  const gone = new Set(rm.map((x) => parsePlacementPref(x).spread));
  const out = current.filter((p) => !gone.has(p.spread));
  for (const p of add.map(parsePlacementPref)) if (!out.some((o) => o.spread === p.spread)) out.push(p);
  return out;
}
