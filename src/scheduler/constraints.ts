/**
 * Placement constraints in swarm's syntax (`deploy.placement.constraints` of a stack file,
 * `--constraint` of `service create`): `KEY==VALUE` or `KEY!=VALUE`, all of which must hold.
 *
 *   node.id, node.hostname, node.role (manager|worker), node.platform.os, node.platform.arch,
 *   node.labels.<name>, engine.labels.<name>
 *
 * As in swarmkit, values compare case-insensitively, label names case-sensitively, and a label the
 * node lacks compares as the empty string (so `node.labels.zone!=b` holds on a node with no zone).
 * Architectures are normalised on both sides (x86_64 = amd64, aarch64 = arm64).
 * Unlike swarmkit, an unknown key is an error rather than silently ignored.
 */
import { invalid, type TsswarmError } from '../api/errors.js';
import type { Node } from './types.js';

export type ConstraintField =
  | 'node.id'
  | 'node.hostname'
  | 'node.role'
  | 'node.platform.os'
  | 'node.platform.arch'
  | 'node.labels'
  | 'engine.labels';

export interface Constraint {
  /** The constraint as written, trimmed. */
  text: string;
  field: ConstraintField;
  /** For `node.labels.*` and `engine.labels.*`: the label's name (case-sensitive). */
  label?: string;
  operator: '==' | '!=';
  /** The value as written, trimmed. */
  value: string;
}

const KEYS_HELP =
  'node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>';
// swarmkit's patterns for keys and values
const KEY_PATTERN = /^[a-z_][a-z0-9\-_.]+$/i;
const VALUE_PATTERN = /^[a-z0-9:\-_\s.*()?+[\]\\^$|/]+$/i;
const FIELDS: readonly ConstraintField[] = [
  'node.id',
  'node.hostname',
  'node.role',
  'node.platform.os',
  'node.platform.arch',
];

function bad(text: string, why: string): TsswarmError {
  return invalid(`invalid constraint ${JSON.stringify(text)}: ${why}`);
}

/**
 * Parses one constraint. Throws a TsswarmError (`invalid_argument`) whose message names the
 * constraint and says what is wrong, e.g. `invalid constraint "node.labels.zone=b": expected == or !=`.
 */
export function parseConstraint(input: string): Constraint {
  const text = input.trim();
  const eq = text.indexOf('==');
  const ne = text.indexOf('!=');
  // swarmkit tries == first, then !=
  const at = eq >= 0 ? eq : ne;
  if (at < 0) throw bad(text, 'expected == or !=');
  const operator = eq >= 0 ? '==' : '!=';
  const key = text.slice(0, at).trim();
  const value = text.slice(at + 2).trim();
  if (key === '') throw bad(text, `missing key before ${operator}`);
  if (!KEY_PATTERN.test(key)) throw bad(text, `key ${JSON.stringify(key)} is invalid`);
  if (value === '') throw bad(text, `missing value after ${operator}`);
  if (!VALUE_PATTERN.test(value)) {
    throw bad(text, `value ${JSON.stringify(value)} has characters a constraint value cannot have`);
  }
  const lower = key.toLowerCase();
  for (const prefix of ['node.labels.', 'engine.labels.'] as const) {
    if (lower.startsWith(prefix)) {
      const label = key.slice(prefix.length);
      if (label === '' || label.endsWith('.')) throw bad(text, `missing label name after ${prefix}`);
      return {
        text,
        field: prefix === 'node.labels.' ? 'node.labels' : 'engine.labels',
        label,
        operator,
        value,
      };
    }
  }
  const field = FIELDS.find((f) => f === lower);
  if (!field) throw bad(text, `unknown key ${JSON.stringify(key)} (use ${KEYS_HELP})`);
  if (field === 'node.role' && !/^(manager|worker)$/i.test(value)) {
    throw bad(text, `node.role is manager or worker, not ${JSON.stringify(value)}`);
  }
  return { text, field, operator, value };
}

/**
 * Parses a list of constraints, collecting every error instead of stopping at the first:
 * `{constraints}` when all parse, else `{errors}` (one message per bad constraint).
 */
export function parseConstraints(
  inputs: readonly string[],
): { constraints: Constraint[]; errors?: undefined } | { constraints?: undefined; errors: string[] } {
  const constraints: Constraint[] = [];
  const errors: string[] = [];
  for (const input of inputs) {
    try {
      constraints.push(parseConstraint(input));
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  return errors.length > 0 ? { errors } : { constraints };
}

/** x86_64 → amd64, aarch64 → arm64, lower case: how swarmkit compares architectures. */
export function normalizeArch(arch: string): string {
  const a = arch.toLowerCase();
  if (a === 'x86_64' || a === 'x86-64') return 'amd64';
  if (a === 'aarch64') return 'arm64';
  return a;
}

/** A label's value, '' when the node lacks it (own properties only: `constructor` is no label). */
export function labelOf(labels: Record<string, string> | undefined, name: string): string {
  return labels !== undefined && Object.hasOwn(labels, name) ? (labels[name] ?? '') : '';
}

/** Turns a constraint into a predicate over nodes (the work of parsing and lower-casing done once). */
export function compileConstraint(c: Constraint): (node: Node) => boolean {
  const want = c.field === 'node.platform.arch' ? normalizeArch(c.value) : c.value.toLowerCase();
  const same = (v: string) => v === want || (v.length === want.length && v.toLowerCase() === want);
  const eq = c.operator === '==';
  const label = c.label ?? '';
  switch (c.field) {
    case 'node.id':
      return (n) => same(n.id) === eq;
    case 'node.hostname':
      return (n) => same(n.hostname) === eq;
    case 'node.role':
      return (n) => same(n.role) === eq;
    case 'node.platform.os':
      return (n) => same(n.platform.os) === eq;
    case 'node.platform.arch':
      return (n) => (normalizeArch(n.platform.arch) === want) === eq;
    case 'node.labels':
      return (n) => same(labelOf(n.labels, label)) === eq;
    case 'engine.labels':
      return (n) => same(labelOf(n.engineLabels, label)) === eq;
  }
}

/** One predicate that holds when every constraint holds (always true for none). */
export function compileConstraints(cs: readonly Constraint[]): (node: Node) => boolean {
  const preds = cs.map(compileConstraint);
  if (preds.length === 0) return () => true;
  if (preds.length === 1) return preds[0]!;
  return (n) => {
    for (const p of preds) if (!p(n)) return false;
    return true;
  };
}

/** Whether a node satisfies a constraint. */
export function matchConstraint(c: Constraint, node: Node): boolean {
  return compileConstraint(c)(node);
}
