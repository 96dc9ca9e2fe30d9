import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { interpolate, type Lookup } from './interpolate.js';

/**
 * A stack file as a tree that remembers where every key and value was written, so that any
 * later check can say FILE:LINE. Values are already interpolated; anchors, aliases and `<<`
 * merge keys are resolved.
 */
export interface Loc {
  file: string;
  line: number;
}
export type LNode = LMap | LSeq | LScalar;
export interface LMap {
  kind: 'map';
  loc: Loc;
  entries: Map<string, LEntry>;
}
export interface LEntry {
  keyLoc: Loc;
  node: LNode;
}
export interface LSeq {
  kind: 'seq';
  loc: Loc;
  items: LNode[];
}
export interface LScalar {
  kind: 'scalar';
  loc: Loc;
  value: string | number | boolean | null;
}
export type Path = readonly (string | number)[];

export interface ParsedFile {
  /** Absent when the YAML could not be read. */
  root?: LMap;
  /** `FILE:LINE: message` each. */
  errors: string[];
  warnings: string[];
}

/** `services.web.ports[0].target` */
export function dotted(path: Path): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`;
  return s || '(top level)';
}

export const at = (loc: Loc) => `${loc.file}:${loc.line}`;

/** Parses and interpolates one stack file; never throws for a mistake in the file. */
export function parseStackFile(text: string, file: string, lookup: Lookup): ParsedFile {
  const errors: string[] = [];
  const warnings: string[] = [];
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: false });
  const lineAt = (offset: number) => lineCounter.linePos(offset).line;
  if (doc.errors.length) {
    for (const e of doc.errors) {
      const line = e.linePos?.[0]?.line ?? lineAt(e.pos[0]);
      const msg = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      errors.push(`${file}:${line}: invalid YAML: ${msg}`);
    }
    return { errors, warnings };
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    errors.push(`${file}:1: the file is empty: a stack file is a map with services (and networks)`);
    return { errors, warnings };
  }

  const locOf = (node: Node | null | undefined, fallback: Loc): Loc =>
    node?.range ? { file, line: lineAt(node.range[0]) } : fallback;

  const convert = (node: Node | null, path: Path, fallback: Loc, depth: number): LNode => {
    const loc = locOf(node, fallback);
    if (depth > 100) {
      errors.push(`${at(loc)}: ${dotted(path)}: anchors and aliases nest too deeply`);
      return { kind: 'scalar', loc, value: null };
    }
    if (node === null) return { kind: 'scalar', loc, value: null };
    if (isAlias(node)) {
      const target = node.resolve(doc as Document.Parsed) as Node | undefined;
      if (!target) {
        errors.push(`${at(loc)}: ${dotted(path)}: unknown alias *${node.source}`);
        return { kind: 'scalar', loc, value: null };
      }
      return convert(target, path, loc, depth + 1);
    }
    if (isScalar(node)) {
      const v = node.value;
      if (typeof v === 'string') return { kind: 'scalar', loc, value: expand(v, node, path, loc) };
      if (typeof v === 'number' || typeof v === 'boolean' || v === null)
        return { kind: 'scalar', loc, value: v };
      return { kind: 'scalar', loc, value: String(v) };
    }
    if (isSeq(node)) {
      return {
        kind: 'seq',
        loc,
        items: node.items.map((item, i) => convert(item as Node | null, [...path, i], loc, depth)),
      };
    }
    if (isMap(node)) {
      const entries = new Map<string, LEntry>();
      const merged: LMap[] = [];
      for (const pair of node.items) {
        const key = pair.key as Node | null;
        const keyLoc = locOf(key, loc);
        if (isScalar(key) && typeof key.value === 'symbol') {
          // `<<: *anchor` or `<<: [*a, *b]`: keys not written here come from the anchors, first one first.
          const src = convert(pair.value as Node | null, path, keyLoc, depth + 1);
          for (const m of src.kind === 'seq' ? src.items : [src]) {
            if (m.kind === 'map') merged.push(m);
            else errors.push(`${at(m.loc)}: ${dotted(path)}: a << merge takes a map or a list of maps`);
          }
          continue;
        }
        if (!isScalar(key)) {
          errors.push(`${at(keyLoc)}: ${dotted(path)}: keys must be plain strings`);
          continue;
        }
        const name = key.value === null ? '' : String(key.value);
        entries.set(name, {
          keyLoc,
          node: convert(pair.value as Node | null, [...path, name], keyLoc, depth),
        });
      }
      for (const m of merged) for (const [k, e] of m.entries) if (!entries.has(k)) entries.set(k, e);
      return { kind: 'map', loc, entries };
    }
    errors.push(`${at(loc)}: ${dotted(path)}: unsupported YAML node`);
    return { kind: 'scalar', loc, value: null };
  };

  /** Interpolates one string, reporting each problem on the line where its `$…` is written. */
  const expand = (value: string, node: Node, path: Path, loc: Loc): string => {
    if (!value.includes('$')) return value;
    const r = interpolate(value, lookup);
    for (const issue of r.issues) {
      let line = loc.line;
      if (node.range) {
        const offset = text.slice(node.range[0], node.range[1]).indexOf(issue.expression);
        if (offset >= 0) line = lineAt(node.range[0] + offset);
      }
      const msg = `${file}:${line}: ${dotted(path)}: ${issue.message}`;
      (issue.severity === 'error' ? errors : warnings).push(msg);
    }
    return r.value;
  };

  const root = convert(doc.contents as Node, [], { file, line: 1 }, 0);
  if (root.kind !== 'map') {
    errors.push(`${at(root.loc)}: the top level must be a map (services:, networks:, ...)`);
    return { errors, warnings };
  }
  return { root, errors, warnings };
}

/** Plain JSON-like value of a located tree (what the schema validator and normaliser read). */
export function toJS(node: LNode): unknown {
  switch (node.kind) {
    case 'scalar':
      return node.value;
    case 'seq':
      return node.items.map(toJS);
    case 'map': {
      const o: Record<string, unknown> = {};
      for (const [k, e] of node.entries) o[k] = toJS(e.node);
      return o;
    }
  }
}

/** The node at `path`, if there is one. */
export function nodeAt(root: LNode, path: Path): LNode | undefined {
  let n: LNode | undefined = root;
  for (const p of path) {
    if (n?.kind === 'map' && typeof p === 'string') n = n.entries.get(p)?.node;
    else if (n?.kind === 'seq' && typeof p === 'number') n = n.items[p];
    else return undefined;
  }
  return n;
}

/**
 * Where `path` is written: the line of its key (or list item), else of the deepest part of the
 * path that exists (a missing key is reported where its parent is).
 */
export function locate(root: LNode, path: Path): Loc {
  let n: LNode = root;
  let loc = root.loc;
  for (const p of path) {
    if (n.kind === 'map' && typeof p === 'string') {
      const e = n.entries.get(p);
      if (!e) break;
      loc = e.keyLoc;
      n = e.node;
    } else if (n.kind === 'seq' && typeof p === 'number' && n.items[p]) {
      n = n.items[p]!;
      loc = n.loc;
    } else break;
  }
  return loc;
}
