import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { invalid } from '../../api/errors.js';
import { parseEnvFile } from './dotenv.js';
import type { Lookup } from './interpolate.js';
import { mergeFiles } from './merge.js';
import { normalize } from './normalize.js';
import { validateSchema } from './schema.js';
import { at, type LMap, parseStackFile } from './source.js';
import type { LoadedStack } from './types.js';

export interface LoadOptions {
  /** Stack name; default: the file's top-level `name`, else the first file's directory name. */
  name?: string;
  /** Variables for interpolation; default process.env. They win over the `.env` file. */
  env?: Record<string, string | undefined>;
}

const STACK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]*$/;

/**
 * Reads one stack file, or several merged in order (later ones override, as
 * `docker compose -f a -f b`): parse → interpolate (environment, then `.env` beside the first
 * file) → validate each file against the compose-spec schema → merge → semantic checks →
 * normalised model with defaults. Throws `invalid_argument` listing every error found, one
 * `FILE:LINE: key.path: message` per line; warnings (unsupported keys, unset variables) are
 * returned, never dropped.
 */
export async function loadStack(
  files: string | readonly string[],
  opts: LoadOptions = {},
): Promise<LoadedStack> {
  const list = typeof files === 'string' ? [files] : [...files];
  if (list.length === 0) throw invalid('no stack file given');
  const errors: string[] = [];
  const warnings: string[] = [];
  const env = opts.env ?? process.env;
  const projectDir = resolve(dirname(list[0]!));

  const dotenvPath = join(dirname(list[0]!), '.env');
  let dotenv: Record<string, string> = {};
  const text = await readOptional(dotenvPath);
  if (text !== undefined) {
    const r = parseEnvFile(text, dotenvPath, (n) => env[n]);
    errors.push(...r.errors);
    warnings.push(...r.warnings);
    dotenv = r.vars;
  }
  const lookup: Lookup = (n) => env[n] ?? (Object.hasOwn(dotenv, n) ? dotenv[n] : undefined);

  const roots: LMap[] = [];
  for (const file of list) {
    let source: string;
    try {
      source = await readFile(file, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw invalid(
        e.code === 'ENOENT' ? `stack file ${file} not found` : `cannot read stack file ${file}: ${e.message}`,
        err,
      );
    }
    const parsed = parseStackFile(source, file, lookup);
    errors.push(...parsed.errors);
    warnings.push(...parsed.warnings);
    if (!parsed.root) continue;
    checkVersion(parsed.root, errors);
    if (parsed.errors.length === 0) errors.push(...validateSchema(parsed.root));
    roots.push(parsed.root);
  }
  if (errors.length) throw invalid(byPlace(errors, list).join('\n'));

  const root = roots.reduce((a, b) => mergeFiles(a, b));
  const name = opts.name ?? topLevelName(root) ?? defaultName(projectDir);
  if (!STACK_NAME.test(name))
    throw invalid(
      `invalid stack name "${name}": use letters, digits, "-" and "_", starting with a letter or digit`,
    );
  const r = normalize({ root, name, projectDir, lookup });
  if (r.errors.length) throw invalid(byPlace(r.errors, list).join('\n'));
  return { stack: r.stack, warnings: byPlace([...warnings, ...r.warnings], list) };
}

/** Messages in reading order: stack files in the order given, then by line (stable otherwise). */
function byPlace(messages: string[], files: string[]): string[] {
  const key = (m: string): [number, number] => {
    const match = /^(.*?):(\d+): /.exec(m);
    if (!match) return [files.length + 1, 0];
    const rank = files.indexOf(match[1]!);
    return [rank < 0 ? files.length : rank, Number(match[2])];
  };
  return messages
    .map((m, i) => ({ m, i, k: key(m) }))
    .sort((a, b) => a.k[0] - b.k[0] || a.k[1] - b.k[1] || a.i - b.i)
    .map((x) => x.m);
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalid(`cannot read ${file}: ${(err as Error).message}`, err);
  }
}

/** `docker stack deploy` reads version 3.x files and files without a version. */
function checkVersion(root: LMap, errors: string[]): void {
  const entry = root.entries.get('version');
  if (entry?.node.kind !== 'scalar' || entry.node.value === null) return;
  const node = entry.node;
  // `version: 3.8` unquoted is a YAML number; Docker reads it as the string it looks like.
  if (typeof node.value === 'number') node.value = String(node.value);
  if (typeof node.value === 'string' && !/^3(\.\d+)?$/.test(node.value.trim()))
    errors.push(
      `${at(entry.keyLoc)}: version: unsupported Compose file version "${node.value}": tsswarm reads version 3.x files and files without a version`,
    );
}

function topLevelName(root: LMap): string | undefined {
  const n = root.entries.get('name')?.node;
  return n?.kind === 'scalar' && typeof n.value === 'string' && n.value !== '' ? n.value : undefined;
}

/** Compose's default project name: the directory name, lower-cased, other characters dropped. */
function defaultName(dir: string): string {
  return basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[_-]+/, '');
}
