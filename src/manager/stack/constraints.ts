import { parseConstraint } from '../../scheduler/constraints.js';
import { closest } from './suggest.js';
import type { Parsed } from './units.js';

const ATTRIBUTES = ['node.id', 'node.hostname', 'node.role', 'node.platform.os', 'node.platform.arch'];

/**
 * Checks a placement constraint with the scheduler's own parser (one definition of the swarm
 * syntax: `KEY==VALUE` / `KEY!=VALUE` over node.id, node.hostname, node.role,
 * node.platform.os, node.platform.arch, node.labels.<name>, engine.labels.<name>) and returns
 * it trimmed, as the scheduler takes it.
 */
export function checkConstraint(expr: string): Parsed<string> {
  try {
    return { ok: true, value: parseConstraint(expr).text };
  } catch (e) {
    let error = (e as Error).message;
    const key = expr.split(/==|!=/)[0]!.trim();
    if (/unknown key/.test(error)) {
      // A typo of an attribute (node.rol), else most likely a label written without `labels.` (node.zone).
      const scope = /^(node|engine)\.(.+)$/i.exec(key);
      const near =
        closest(key, ATTRIBUTES, 1) ?? (scope ? `${scope[1]!.toLowerCase()}.labels.${scope[2]}` : undefined);
      if (near) error += `; did you mean "${near}"?`;
    }
    return { ok: false, error };
  }
}

/** A placement preference: `spread: node.labels.<name>` (or engine.labels.<name>). */
export function parseSpread(descriptor: string): Parsed<string> {
  const m = /^(node|engine)\.labels\.(.+)$/i.exec(descriptor.trim());
  if (!m)
    return {
      ok: false,
      error: `invalid spread ${JSON.stringify(descriptor)}: expected node.labels.<name> or engine.labels.<name>`,
    };
  return { ok: true, value: `${m[1]!.toLowerCase()}.labels.${m[2]}` };
}
