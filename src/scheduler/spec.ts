/**
 * A task spec checked and prepared once per group of tasks that share it: constraints parsed and
 * compiled to a predicate, platforms and architectures normalised, host ports turned into keys,
 * preference labels turned into value getters. Bad input is reported, never thrown.
 */
import {
  type Constraint,
  compileConstraints,
  labelOf,
  normalizeArch,
  parseConstraints,
} from './constraints.js';
import { portOffset } from './state.js';
import type { Node, Platform, Resources, TaskSpec } from './types.js';

export interface CompiledSpec {
  reservations: Resources;
  constraints: Constraint[];
  /** True when the node satisfies every constraint. */
  matches: (node: Node) => boolean;
  /** Normalised (lower-case os, amd64/arm64 arch); empty means any platform. */
  platforms: Platform[];
  /** Host ports as `portOffset` keys. */
  portOffsets: number[];
  /** 0: no limit. */
  maxReplicas: number;
  /** One per preference, in order. */
  preferences: Preference[];
}

export interface Preference {
  /** `node.labels.<name>` or `engine.labels.<name>` with the prefix lower-cased: one key per label. */
  key: string;
  /** The node's value of the label ('' when it lacks it). */
  value: (node: Node) => string;
}

const PROTOCOLS = new Set(['tcp', 'udp', 'sctp']);

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x >= 0;
}

/** Compiles a spec, or lists everything wrong with it (one message per mistake). */
export function compileSpec(
  spec: TaskSpec,
): { spec: CompiledSpec; errors?: undefined } | { errors: string[] } {
  const errors: string[] = [];
  const r = spec.reservations ?? { nanoCpus: 0, memoryBytes: 0 };
  if (!isCount(r.nanoCpus))
    errors.push(`invalid reservation: nanoCpus must be a number ≥ 0, not ${r.nanoCpus}`);
  if (!isCount(r.memoryBytes)) {
    errors.push(`invalid reservation: memoryBytes must be a number ≥ 0, not ${r.memoryBytes}`);
  }
  const parsed = parseConstraints(spec.constraints ?? []);
  if (parsed.errors) errors.push(...parsed.errors);
  const preferences: Preference[] = [];
  for (const p of spec.preferences ?? []) {
    const d = typeof p.spread === 'string' ? p.spread.trim() : '';
    const lower = d.toLowerCase();
    if (lower.startsWith('node.labels.') && d.length > 'node.labels.'.length) {
      const name = d.slice('node.labels.'.length);
      preferences.push({ key: `node.labels.${name}`, value: (n) => labelOf(n.labels, name) });
    } else if (lower.startsWith('engine.labels.') && d.length > 'engine.labels.'.length) {
      const name = d.slice('engine.labels.'.length);
      preferences.push({ key: `engine.labels.${name}`, value: (n) => labelOf(n.engineLabels, name) });
    } else {
      errors.push(
        `invalid placement preference spread=${JSON.stringify(p.spread)}: expected node.labels.<name> or engine.labels.<name>`,
      );
    }
  }
  const max = spec.maxReplicasPerNode ?? 0;
  if (!Number.isInteger(max) || max < 0) {
    errors.push(`invalid max replicas per node: expected a whole number ≥ 0, not ${max}`);
  }
  const portOffsets: number[] = [];
  for (const p of spec.hostPorts ?? []) {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      errors.push(`invalid host port ${p.port}: expected 1-65535`);
    } else if (!PROTOCOLS.has(p.protocol)) {
      errors.push(`invalid host port ${p.port}/${p.protocol}: protocol must be tcp, udp or sctp`);
    } else {
      const o = portOffset(p);
      if (!portOffsets.includes(o)) portOffsets.push(o);
    }
  }
  if (errors.length > 0 || !parsed.constraints) return { errors };
  return {
    spec: {
      reservations: { nanoCpus: r.nanoCpus, memoryBytes: r.memoryBytes },
      constraints: parsed.constraints,
      matches: compileConstraints(parsed.constraints),
      platforms: (spec.platforms ?? []).map((p) => ({
        os: (p.os ?? '').toLowerCase(),
        arch: normalizeArch(p.arch ?? ''),
      })),
      portOffsets,
      maxReplicas: max,
      preferences,
    },
  };
}

function sameList<T>(a: readonly T[] | undefined, b: readonly T[] | undefined, eq: (x: T, y: T) => boolean) {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (!eq(x[i]!, y[i]!)) return false;
  return true;
}

/** Whether two specs place the same way (so their tasks can be scheduled as one group). */
export function sameSpec(a: TaskSpec, b: TaskSpec): boolean {
  if (a === b) return true;
  return (
    a.reservations?.nanoCpus === b.reservations?.nanoCpus &&
    a.reservations?.memoryBytes === b.reservations?.memoryBytes &&
    (a.maxReplicasPerNode ?? 0) === (b.maxReplicasPerNode ?? 0) &&
    sameList(a.constraints, b.constraints, (x, y) => x === y) &&
    sameList(a.preferences, b.preferences, (x, y) => x.spread === y.spread) &&
    sameList(a.hostPorts, b.hostPorts, (x, y) => x.port === y.port && x.protocol === y.protocol) &&
    sameList(a.platforms, b.platforms, (x, y) => x.os === y.os && x.arch === y.arch)
  );
}
