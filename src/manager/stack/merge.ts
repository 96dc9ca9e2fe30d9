import type { LMap, LNode, Loc, LScalar } from './source.js';

/**
 * Merges stack files given with repeated `-c`, later over earlier, with Compose's rules:
 * maps merge key by key, scalars are replaced; `environment`, `labels` and other list-or-map
 * keys merge by variable/label name; `networks` and `depends_on` merge by name; lists such as
 * `ports`, `cap_add` or `env_file` are appended without duplicates; `command`, `entrypoint`
 * and `healthcheck.test` are replaced whole. Locations follow the value that wins.
 */
export function mergeFiles(base: LMap, override: LMap): LMap {
  return mergeNode(base, override, []) as LMap;
}

/** Keys whose value is a list of KEY=VALUE strings or a map: merged by key. */
const LIST_OR_DICT = new Set([
  'environment',
  'labels',
  'annotations',
  'sysctls',
  'extra_hosts',
  'args',
  'driver_opts',
  'options',
]);
/** Lists merged by appending what is not there yet. */
const APPEND = new Set([
  'ports',
  'expose',
  'cap_add',
  'cap_drop',
  'dns',
  'dns_search',
  'dns_opt',
  'env_file',
  'external_links',
  'security_opt',
  'constraints',
  'preferences',
  'volumes',
  'secrets',
  'configs',
  'devices',
  'tmpfs',
  'profiles',
  'aliases',
]);

function mergeNode(base: LNode, over: LNode, path: string[]): LNode {
  const key = path[path.length - 1] ?? '';
  const inService = path[0] === 'services' && path.length >= 3;
  if (inService && LIST_OR_DICT.has(key)) return mergeMaps(asDict(base), asDict(over), path);
  if (inService && key === 'networks' && path.length === 3)
    return mergeMaps(asNameMap(base), asNameMap(over), path);
  if (inService && key === 'depends_on' && path.length === 3)
    return mergeMaps(asDependsOn(base), asDependsOn(over), path);
  if (inService && APPEND.has(key)) {
    const a = asList(base);
    const b = asList(over);
    const seen = new Set(a.map(fingerprint));
    return { kind: 'seq', loc: over.loc, items: [...a, ...b.filter((n) => !seen.has(fingerprint(n)))] };
  }
  if (base.kind === 'map' && over.kind === 'map') return mergeMaps(base, over, path);
  return over;
}

function mergeMaps(base: LMap, over: LMap, path: string[]): LMap {
  const entries = new Map(base.entries);
  for (const [k, e] of over.entries) {
    const prev = entries.get(k);
    entries.set(k, prev ? { keyLoc: e.keyLoc, node: mergeNode(prev.node, e.node, [...path, k]) } : e);
  }
  return { kind: 'map', loc: base.loc, entries };
}

const scalar = (value: LScalar['value'], loc: Loc): LScalar => ({ kind: 'scalar', loc, value });

function asList(n: LNode): LNode[] {
  return n.kind === 'seq' ? n.items : n.kind === 'scalar' && n.value === null ? [] : [n];
}

/** `["A=1", "B"]` → `{A: "1", B: null}`; maps stay maps. */
function asDict(n: LNode): LMap {
  if (n.kind === 'map') return n;
  const entries = new Map<string, { keyLoc: Loc; node: LNode }>();
  for (const item of asList(n)) {
    const s = item.kind === 'scalar' ? String(item.value ?? '') : '';
    const eq = s.indexOf('=');
    entries.set(eq < 0 ? s : s.slice(0, eq), {
      keyLoc: item.loc,
      node: scalar(eq < 0 ? null : s.slice(eq + 1), item.loc),
    });
  }
  return { kind: 'map', loc: n.loc, entries };
}

/** `[front, back]` → `{front: null, back: null}`. */
function asNameMap(n: LNode): LMap {
  if (n.kind === 'map') return n;
  const entries = new Map<string, { keyLoc: Loc; node: LNode }>();
  for (const item of asList(n))
    entries.set(String(item.kind === 'scalar' ? item.value : ''), {
      keyLoc: item.loc,
      node: scalar(null, item.loc),
    });
  return { kind: 'map', loc: n.loc, entries };
}

/** `[db]` → `{db: {condition: service_started}}`. */
function asDependsOn(n: LNode): LMap {
  if (n.kind === 'map') return n;
  const entries = new Map<string, { keyLoc: Loc; node: LNode }>();
  for (const item of asList(n)) {
    const cond: LMap = {
      kind: 'map',
      loc: item.loc,
      entries: new Map([['condition', { keyLoc: item.loc, node: scalar('service_started', item.loc) }]]),
    };
    entries.set(String(item.kind === 'scalar' ? item.value : ''), { keyLoc: item.loc, node: cond });
  }
  return { kind: 'map', loc: n.loc, entries };
}

function fingerprint(n: LNode): string {
  switch (n.kind) {
    case 'scalar':
      return JSON.stringify(n.value);
    case 'seq':
      return `[${n.items.map(fingerprint).join(',')}]`;
    case 'map':
      return `{${[...n.entries]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, e]) => `${JSON.stringify(k)}:${fingerprint(e.node)}`)
        .join(',')}}`;
  }
}
