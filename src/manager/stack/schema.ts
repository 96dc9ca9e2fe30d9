import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { at, dotted, type LNode, locate, type Path, toJS } from './source.js';
import { didYouMean } from './suggest.js';
import { describe } from './units.js';

/**
 * Validation against the official Compose Specification schema (compose-spec/compose-spec,
 * `schema/compose-spec.json`, JSON Schema draft-07). The schema is not copied into this
 * repository: it is read from the npm package `dclint`, which ships the compose-spec file
 * unchanged in `schemas/compose.schema.json` and refreshes it from the compose-spec
 * repository with each release.
 */
export const SCHEMA_PACKAGE = 'dclint';

let compiled: ValidateFunction | undefined;

/** The compose-spec schema as shipped by SCHEMA_PACKAGE. */
export function composeSpecSchema(): Record<string, unknown> {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve(`${SCHEMA_PACKAGE}/package.json`));
  return JSON.parse(readFileSync(join(dir, 'schemas', 'compose.schema.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

function validator(): ValidateFunction {
  if (compiled) return compiled;
  // The file names its meta-schema "https://json-schema.org/draft-07/schema", an alias of
  // draft-07 that Ajv does not register under that spelling; Ajv's default is draft-07.
  const { $schema: _metaSchema, ...schema } = composeSpecSchema();
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: false, allowUnionTypes: true });
  compiled = ajv.compile(schema);
  return compiled;
}

/** Checks a located tree against the schema; returns `FILE:LINE: path: message` for each problem. */
export function validateSchema(root: LNode): string[] {
  const validate = validator();
  if (validate(toJS(root))) return [];
  const errors = reduce(validate.errors ?? []);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const msg = format(root, e);
    if (!seen.has(msg)) {
      seen.add(msg);
      out.push(msg);
    }
  }
  return out;
}

/** "/services/web/ports/0" → ['services', 'web', 'ports', 0] */
function pathOf(instancePath: string): (string | number)[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

const under = (p: string, base: string) => p === base || p.startsWith(`${base}/`);

/**
 * Ajv reports every failed branch of a oneOf/anyOf. The errors of its branches come right
 * before it; keep those that tell what is wrong (deeper errors, or errors of the branch whose
 * type matched) and fold plain type mismatches into one "must be A or B" error.
 */
function reduce(errors: ErrorObject[]): ErrorObject[] {
  const out: ErrorObject[] = [];
  for (const e of errors) {
    if (e.keyword !== 'oneOf' && e.keyword !== 'anyOf') {
      if (e.keyword !== 'if' && e.keyword !== 'not' && e.keyword !== 'false schema') out.push(e);
      continue;
    }
    const branch: ErrorObject[] = [];
    while (out.length && under(out[out.length - 1]!.instancePath, e.instancePath)) branch.unshift(out.pop()!);
    const telling = branch.filter((b) => !(b.keyword === 'type' && b.instancePath === e.instancePath));
    if (telling.length) {
      out.push(...telling);
      continue;
    }
    const types = new Set<string>();
    for (const b of branch) for (const t of String(b.params.type).split(',')) types.add(t);
    out.push({
      ...e,
      keyword: 'type',
      params: { type: [...types].join(',') },
      message: types.size ? undefined : e.message,
    });
  }
  return out;
}

function format(root: LNode, e: ErrorObject): string {
  const path = pathOf(e.instancePath);
  const where = (p: Path) => at(locate(root, p));
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(e.params.additionalProperty);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return `${where([...path, key])}: ${dotted(path)}: unknown key "${key}"${didYouMean(key, known)}`;
    }
    case 'required':
      return `${where(path)}: ${dotted(path)}: missing required key "${String(e.params.missingProperty)}"`;
    case 'type': {
      const types = String(e.params.type).split(',').map(typeName);
      const list = types.length > 1 ? `${types.slice(0, -1).join(', ')} or ${types.at(-1)}` : types[0];
      return `${where(path)}: ${dotted(path)}: must be ${list} (got ${describe(e.data)})`;
    }
    case 'enum': {
      const allowed = (e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      return `${where(path)}: ${dotted(path)}: must be one of ${allowed} (got ${describe(e.data)})`;
    }
    case 'const':
      return `${where(path)}: ${dotted(path)}: must be ${JSON.stringify(e.params.allowedValue)} (got ${describe(e.data)})`;
    case 'pattern':
      return `${where(path)}: ${dotted(path)}: ${describe(e.data)} does not match ${e.params.pattern}`;
    case 'uniqueItems':
      return `${where(path)}: ${dotted(path)}: items ${e.params.j} and ${e.params.i} are the same`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${where(path)}: ${dotted(path)}: must be ${e.params.comparison} ${e.params.limit} (got ${describe(e.data)})`;
    default:
      return `${where(path)}: ${dotted(path)}: ${e.message ?? 'is invalid'}`;
  }
}

function typeName(t: string): string {
  switch (t) {
    case 'object':
      return 'a map';
    case 'array':
      return 'a list';
    case 'null':
      return 'empty';
    default:
      return t;
  }
}
