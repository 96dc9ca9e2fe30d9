/**
 * Dockerfile parser and the word expansion of Docker's shell lexer (pure, no I/O).
 *
 * parseDockerfile follows Docker's parser: parser directives at the top (`# escape=`, `# syntax=`
 * and `# check=` are read, `syntax`/`check` ignored), `#` comment lines, line continuations with
 * the escape character (comment and blank lines inside a continuation are skipped), instruction
 * names case-insensitive, `--flag=value` words before the arguments, JSON (exec) form where
 * Docker accepts it. Every string it keeps is raw, exactly as written: no variable is expanded
 * at parse time, because expansion depends on the build state (ENV/ARG values). The builder
 * expands the instructions listed in EXPANDS with expandInstruction (or expandValue/expandWords),
 * and FROM's image and platform with the global ARGs only (those before the first FROM).
 *
 * Refused: ONBUILD, heredocs (`<<EOF`), the flags RUN --mount/--network/--security,
 * COPY/ADD --link/--parents/--exclude, ADD --checksum/--keep-git-dir. MAINTAINER becomes the
 * label `maintainer` (the replacement Docker recommends), its text kept literal.
 */
import { invalid } from '../../api/errors.js';

export type Escape = '\\' | '`';

interface Base {
  /** 1-based line where the instruction starts. */
  line: number;
  /** The instruction as written: continuation lines joined as Docker joins them, trimmed. */
  original: string;
}

/** Exec form (a JSON array of strings) or shell form (the raw text, given to the shell). */
export type CommandForm = { form: 'exec'; args: string[] } | { form: 'shell'; command: string };

export type RunInstr = Base & { kind: 'run' } & CommandForm;
/** `CMD`/`ENTRYPOINT` without arguments is read as the empty exec form (it resets the value). */
export type CmdInstr = Base & { kind: 'cmd' } & CommandForm;
export type EntrypointInstr = Base & { kind: 'entrypoint' } & CommandForm;

interface CopyLike extends Base {
  sources: string[];
  dest: string;
  chown?: string;
  chmod?: string;
}
export interface CopyInstr extends CopyLike {
  kind: 'copy';
  /** --from: a stage name or index (see stageIndex) or an image. */
  from?: string;
}
export interface AddInstr extends CopyLike {
  kind: 'add';
}
export interface KeyValue {
  key: string;
  value: string;
}
export interface EnvInstr extends Base {
  kind: 'env';
  pairs: KeyValue[];
}
/** Also what MAINTAINER becomes: `{ key: 'maintainer', value: <the text, quoted literally> }`. */
export interface LabelInstr extends Base {
  kind: 'label';
  pairs: KeyValue[];
}
export interface ArgInstr extends Base {
  kind: 'arg';
  /** One line may declare several: `ARG a b=2`. */
  args: Array<{ name: string; default?: string }>;
}
export interface WorkdirInstr extends Base {
  kind: 'workdir';
  path: string;
}
export interface UserInstr extends Base {
  kind: 'user';
  user: string;
}
export interface ExposeInstr extends Base {
  kind: 'expose';
  /** Raw words: `80`, `53/udp`, `8000-8002/tcp`; normalise them with exposedPorts after expansion. */
  ports: string[];
}
export interface VolumeInstr extends Base {
  kind: 'volume';
  paths: string[];
}
export interface StopSignalInstr extends Base {
  kind: 'stopsignal';
  signal: string;
}
/** Docker's HealthConfig: durations in nanoseconds, 0 (and retries 0) meaning "inherit". */
export interface HealthcheckInstr extends Base {
  kind: 'healthcheck';
  /** `['NONE']`, `['CMD', ...argv]` (exec form) or `['CMD-SHELL', command]` (shell form). */
  test: string[];
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}
export interface ShellInstr extends Base {
  kind: 'shell';
  shell: string[];
}

export type Instruction =
  | RunInstr
  | CmdInstr
  | EntrypointInstr
  | CopyInstr
  | AddInstr
  | EnvInstr
  | LabelInstr
  | ArgInstr
  | WorkdirInstr
  | UserInstr
  | ExposeInstr
  | VolumeInstr
  | StopSignalInstr
  | HealthcheckInstr
  | ShellInstr;

export interface FromSpec {
  /** Raw image reference: expand it with the global ARGs only. */
  image: string;
  /** Raw --platform value, if given (expanded like image). */
  platform?: string;
  line: number;
  original: string;
}

export interface Stage {
  /** The `AS` name, lowercased (stage names are case-insensitive). */
  name?: string;
  index: number;
  from: FromSpec;
  instructions: Instruction[];
}

export interface Dockerfile {
  file: string;
  /** The escape character (parser directive); pass it to the expand functions. */
  escape: Escape;
  /** ARGs before the first FROM: the only variables FROM lines can use. */
  args: ArgInstr[];
  stages: Stage[];
}

/**
 * Instructions whose arguments Docker expands ($VAR, quotes) with the build's variables. RUN, CMD,
 * ENTRYPOINT, SHELL and HEALTHCHECK are not expanded (their text goes to the shell). `from` is
 * expanded with the global ARGs only; `arg` defaults are expanded like BuildKit does (ARG b=$a).
 * (Docker also lists ONBUILD, which is refused here.)
 */
export const EXPANDS: ReadonlySet<Instruction['kind'] | 'from'> = new Set([
  'from',
  'add',
  'copy',
  'env',
  'expose',
  'label',
  'stopsignal',
  'user',
  'volume',
  'workdir',
  'arg',
]);

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['escape', 'syntax', 'check']);
/** Docker splits the instruction name and whitespace-delimited arguments on these. */
const WS = /[\t\v\f\r ]+/;
const HEREDOC = /^\d*<<-?[^<]+$/;
const NOT_STRINGS = 'when using JSON array syntax, arrays must be comprised of strings only';

const trimLeft = (s: string) => s.replace(/^\s+/, '');
const isComment = (s: string) => trimLeft(s).startsWith('#');

class LineError extends Error {}

/** Parses a Dockerfile; errors are invalid(...) with a message starting `FILE:LINE: `. */
export function parseDockerfile(text: string, file = 'Dockerfile'): Dockerfile {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines[0]?.startsWith('\uFEFF')) lines[0] = lines[0].slice(1);

  let esc: Escape = '\\';
  let directivesDone = false;
  const seenDirectives = new Set<string>();
  const logical: Array<{ line: number; text: string }> = [];
  let continuation = /\\[ \t]*$/;

  const trimContinuation = (s: string): [string, boolean] => {
    const m = continuation.exec(s);
    return m ? [s.slice(0, m.index), false] : [s, true];
  };

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = trimLeft(lines[i] ?? '');
    if (!directivesDone) {
      const m = DIRECTIVE.exec(raw);
      const key = m?.[1]?.toLowerCase();
      if (!m || !key || !KNOWN_DIRECTIVES.has(key)) {
        directivesDone = true;
      } else {
        if (seenDirectives.has(key)) fail(file, lineNo, `only one ${key} parser directive can be used`);
        seenDirectives.add(key);
        if (key === 'escape') {
          const v = m[2] ?? '';
          if (v !== '\\' && v !== '`')
            fail(file, lineNo, `invalid escape token '${v}' does not match \` or \\`);
          esc = v;
          continuation = new RegExp(`\\${v}[ \\t]*$`);
        }
      }
    }
    const start = raw.startsWith('#') ? '' : raw;
    let [joined, ended] = trimContinuation(start);
    if (ended && joined === '') continue;
    while (!ended && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      if (isComment(next) || trimLeft(next) === '') continue;
      const [part, end] = trimContinuation(next);
      joined += part;
      ended = end;
    }
    if (joined.trim() !== '') logical.push({ line: lineNo, text: joined.trim() });
  }

  const df: Dockerfile = { file, escape: esc, args: [], stages: [] };
  if (logical.length === 0) fail(file, 1, 'file with no instructions');
  const names = new Set<string>();
  for (const { line, text } of logical) {
    try {
      const parsed = parseInstruction(text, line, esc);
      const stage = df.stages[df.stages.length - 1];
      if ('image' in parsed) {
        const { name, ...from } = parsed;
        if (name !== undefined) {
          if (names.has(name)) throw new LineError(`duplicate stage name "${name}"`);
          names.add(name);
        }
        df.stages.push({
          ...(name !== undefined && { name }),
          index: df.stages.length,
          from,
          instructions: [],
        });
      } else if (stage) {
        stage.instructions.push(parsed);
      } else if (parsed.kind === 'arg') {
        df.args.push(parsed);
      } else {
        throw new LineError('no build stage in current context');
      }
    } catch (e) {
      if (e instanceof LineError) fail(file, line, e.message);
      throw e;
    }
  }
  if (df.stages.length === 0) fail(file, logical[0]?.line ?? 1, 'no build stage: the file has no FROM');
  return df;
}

function fail(file: string, line: number, msg: string): never {
  throw invalid(`${file}:${line}: ${msg}`);
}

type FromParsed = FromSpec & { name?: string };

function parseInstruction(original: string, line: number, esc: Escape): Instruction | FromParsed {
  const m = WS.exec(original);
  const cmd = m ? original.slice(0, m.index) : original;
  const { flags, rest } = m ? extractFlags(original.slice(m.index + m[0].length)) : { flags: [], rest: '' };
  const base = { line, original };
  const err = (msg: string): never => {
    throw new LineError(msg);
  };
  const name = cmd.toUpperCase();
  const flagsOf = (allowed: readonly string[], refused: readonly string[] = []) =>
    parseFlags(name, flags, allowed, refused);
  const noFlags = () => flagsOf([]);

  switch (name) {
    case 'FROM': {
      const f = flagsOf(['platform']);
      const words = splitWs(rest);
      let stageName: string | undefined;
      if (words.length === 3 && words[1]?.toLowerCase() === 'as') {
        stageName = (words[2] ?? '').toLowerCase();
        if (!/^[a-z][a-z0-9\-_.]*$/.test(stageName)) {
          err(
            `invalid name for build stage: "${words[2]}", name can't start with a number or contain symbols`,
          );
        }
      } else if (words.length !== 1) {
        err('FROM requires either one or three arguments');
      }
      return {
        image: words[0] ?? '',
        ...(f.platform !== undefined && { platform: f.platform }),
        line,
        original,
        ...(stageName !== undefined && { name: stageName }),
      };
    }
    case 'RUN': {
      flagsOf([], ['mount', 'network', 'security']);
      if (rest === '') err('RUN requires at least one argument');
      const form = maybeJson(rest);
      if (form.form === 'shell') refuseHeredoc(form.command, esc);
      return { kind: 'run', ...base, ...form };
    }
    case 'CMD':
    case 'ENTRYPOINT': {
      noFlags();
      const form: CommandForm = rest === '' ? { form: 'exec', args: [] } : maybeJson(rest);
      return { kind: name === 'CMD' ? 'cmd' : 'entrypoint', ...base, ...form };
    }
    case 'SHELL': {
      noFlags();
      if (rest === '') err('SHELL requires at least one argument');
      const json = parseJsonArray(rest);
      if (!json) return err('SHELL requires the arguments to be in JSON form');
      if (json.length === 0) err('SHELL requires at least one argument');
      return { kind: 'shell', ...base, shell: json };
    }
    case 'COPY':
    case 'ADD': {
      const f =
        name === 'COPY'
          ? flagsOf(['from', 'chown', 'chmod'], ['link', 'parents', 'exclude'])
          : flagsOf(['chown', 'chmod'], ['link', 'exclude', 'checksum', 'keep-git-dir']);
      let words = parseJsonArray(rest);
      if (!words) {
        refuseHeredoc(rest, esc);
        words = splitRaw(rest, esc);
      }
      if (words.length < 2) err(`${name} requires at least two arguments`);
      const dest = words[words.length - 1] ?? '';
      const opts = {
        ...(f.chown !== undefined && { chown: f.chown }),
        ...(f.chmod !== undefined && { chmod: f.chmod }),
      };
      const sources = words.slice(0, -1);
      if (name === 'ADD') return { kind: 'add', ...base, sources, dest, ...opts };
      return { kind: 'copy', ...base, sources, dest, ...opts, ...(f.from !== undefined && { from: f.from }) };
    }
    case 'ENV':
    case 'LABEL': {
      noFlags();
      if (rest === '') err(`${name} requires at least one argument`);
      const pairs = parseNameVal(rest, name, esc);
      return { kind: name === 'ENV' ? 'env' : 'label', ...base, pairs };
    }
    case 'MAINTAINER': {
      noFlags();
      if (rest === '') err('MAINTAINER requires exactly one argument');
      return { kind: 'label', ...base, pairs: [{ key: 'maintainer', value: literalWord(rest, esc) }] };
    }
    case 'ARG': {
      noFlags();
      const words = splitRaw(rest, esc);
      if (words.length === 0) err('ARG requires at least one argument');
      const args = words.map((w) => {
        const eq = w.indexOf('=');
        const argName = eq < 0 ? w : w.slice(0, eq);
        if (argName === '') err('ARG names can not be blank');
        return eq < 0 ? { name: argName } : { name: argName, default: w.slice(eq + 1) };
      });
      return { kind: 'arg', ...base, args };
    }
    case 'WORKDIR':
    case 'USER':
    case 'STOPSIGNAL': {
      noFlags();
      if (rest === '') err(`${name} requires exactly one argument`);
      if (name === 'WORKDIR') return { kind: 'workdir', ...base, path: rest };
      if (name === 'USER') return { kind: 'user', ...base, user: rest };
      return { kind: 'stopsignal', ...base, signal: rest };
    }
    case 'EXPOSE': {
      noFlags();
      const ports = splitWs(rest);
      if (ports.length === 0) err('EXPOSE requires at least one argument');
      for (const p of ports) if (/^[\w\-/]+$/.test(p)) exposedPorts(p, err);
      return { kind: 'expose', ...base, ports };
    }
    case 'VOLUME': {
      noFlags();
      const paths = parseJsonArray(rest) ?? splitWs(rest);
      if (paths.length === 0) err('VOLUME requires at least one argument');
      return { kind: 'volume', ...base, paths };
    }
    case 'HEALTHCHECK':
      return parseHealthcheck(base, flags, rest, err);
    case 'ONBUILD':
      return err('ONBUILD is not supported');
    default:
      return err(`unknown instruction: ${cmd}`);
  }
}

/** `HEALTHCHECK NONE` | `HEALTHCHECK [--interval= --timeout= --start-period= --start-interval= --retries=] CMD ...` */
function parseHealthcheck(
  base: Base,
  flags: string[],
  rest: string,
  err: (m: string) => never,
): HealthcheckInstr {
  const m = /\s+/.exec(rest);
  const typ = (m ? rest.slice(0, m.index) : rest).toUpperCase();
  const args = m ? rest.slice(m.index + m[0].length) : '';
  const none = { interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 };
  if (typ === '') err('HEALTHCHECK requires at least one argument');
  if (typ === 'NONE') {
    if (args !== '' || flags.length > 0) err('HEALTHCHECK NONE takes no arguments');
    return { kind: 'healthcheck', ...base, test: ['NONE'], ...none };
  }
  const f = parseFlags('HEALTHCHECK', flags, [
    'interval',
    'timeout',
    'start-period',
    'start-interval',
    'retries',
  ]);
  if (typ !== 'CMD') err(`Unknown type "${typ}" in HEALTHCHECK (try CMD)`);
  const form = args === '' ? undefined : maybeJson(args);
  let test: string[];
  if (form?.form === 'shell') test = ['CMD-SHELL', form.command];
  else if (form && form.args.length > 0) test = ['CMD', ...form.args];
  else return err('Missing command after HEALTHCHECK CMD');

  const interval = (flag: string): number => {
    const v = f[flag];
    if (v === undefined || v === '') return 0;
    let ns: number;
    try {
      ns = parseDuration(v);
    } catch (e) {
      return err(`HEALTHCHECK --${flag}: ${(e as Error).message}`);
    }
    if (ns !== 0 && ns < 1_000_000) err(`HEALTHCHECK --${flag} cannot be less than 1ms`);
    return ns;
  };
  let retries = 0;
  if (f.retries !== undefined && f.retries !== '') {
    if (!/^[+-]?\d+$/.test(f.retries)) err(`HEALTHCHECK --retries: invalid number "${f.retries}"`);
    retries = Number(f.retries);
    if (retries < 0) err(`--retries cannot be negative (${retries})`);
    if (retries > 2 ** 31 - 1) err(`HEALTHCHECK --retries: value out of range "${f.retries}"`);
  }
  return {
    kind: 'healthcheck',
    ...base,
    test,
    interval: interval('interval'),
    timeout: interval('timeout'),
    startPeriod: interval('start-period'),
    startInterval: interval('start-interval'),
    retries,
  };
}

/**
 * The `--name=value` words before the arguments (Docker's extractBuilderFlags): quotes in a flag
 * word are removed, `\` escapes the next character, a lone `--` ends the flags.
 */
function extractFlags(line: string): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let pos = 0;
  for (;;) {
    while (pos < line.length && /\s/.test(line[pos] ?? '')) pos++;
    if (!line.startsWith('--', pos)) return { flags, rest: line.slice(pos) };
    let word = '';
    let quote = '';
    for (; pos < line.length; pos++) {
      const ch = line[pos] ?? '';
      if (!quote && /\s/.test(ch)) break;
      if (quote ? ch === quote : ch === '"' || ch === "'") {
        quote = quote ? '' : ch;
        continue;
      }
      if (ch === '\\') {
        pos++;
        if (pos < line.length) word += line[pos];
        continue;
      }
      word += ch;
    }
    if (word === '--') return { flags, rest: line.slice(pos).replace(/^\s+/, '') };
    flags.push(word);
  }
}

/** Validates the flag words against what the instruction accepts; returns name → value. */
function parseFlags(
  instr: string,
  words: string[],
  allowed: readonly string[],
  refused: readonly string[] = [],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of words) {
    const body = w.slice(2);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (refused.includes(name)) throw new LineError(`${instr} --${name} is not supported`);
    if (!allowed.includes(name)) throw new LineError(`unknown flag: ${name}`);
    if (eq < 0) throw new LineError(`missing a value on flag: --${name}`);
    if (Object.hasOwn(out, name)) throw new LineError(`duplicate flag specified: --${name}`);
    out[name] = body.slice(eq + 1);
  }
  return out;
}

/** A JSON array of strings, undefined when the text is not a JSON array (Docker then uses the shell form). */
function parseJsonArray(text: string): string[] | undefined {
  if (!text.startsWith('[')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  if (!v.every((x) => typeof x === 'string')) throw new LineError(NOT_STRINGS);
  return v as string[];
}

function maybeJson(rest: string): CommandForm {
  const json = parseJsonArray(rest);
  return json ? { form: 'exec', args: json } : { form: 'shell', command: rest };
}

function refuseHeredoc(text: string, esc: Escape): void {
  if (splitRaw(text, esc).some((w) => HEREDOC.test(w))) {
    throw new LineError('heredocs (<<EOF) are not supported');
  }
}

const splitWs = (s: string) => (s.trim() === '' ? [] : s.trim().split(WS));

/**
 * Splits on unquoted whitespace, keeping quotes and escapes in the words (Docker's parseWords):
 * the words are expanded later. An escape character at the very end is dropped.
 */
function splitRaw(text: string, esc: Escape): string[] {
  const words: string[] = [];
  const chars = Array.from(text);
  let word = '';
  let inWord = false;
  let quote = '';
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] ?? '';
    if (!quote && /\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (ch === esc && quote !== "'") {
      if (i + 1 === chars.length) continue;
      word += ch + chars[++i];
      continue;
    }
    if (quote ? ch === quote : ch === '"' || ch === "'") quote = quote ? '' : ch;
    word += ch;
  }
  if (inWord) words.push(word);
  return words;
}

/** ENV/LABEL: `k=v k2="v 2"`, or the legacy `k v w` (one pair, the value being the rest of the line). */
function parseNameVal(rest: string, instr: string, esc: Escape): KeyValue[] {
  const words = splitRaw(rest, esc);
  const first = words[0] ?? '';
  if (!first.includes('=')) {
    const m = WS.exec(rest);
    if (!m) throw new LineError(`${instr} must have two arguments`);
    return [{ key: rest.slice(0, m.index), value: rest.slice(m.index + m[0].length) }];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) throw new LineError(`Syntax error - can't find = in "${w}". Must be of the form: name=value`);
    if (eq === 0) throw new LineError(`${instr} names can not be blank`);
    return { key: w.slice(0, eq), value: w.slice(eq + 1) };
  });
}

/** A word that expandValue turns back into exactly `text` (single quotes, `'` escaped). */
function literalWord(text: string, esc: Escape): string {
  return text
    .split("'")
    .map((p) => (p === '' ? '' : `'${p}'`))
    .join(`${esc}'`);
}

/**
 * The exposed ports of one EXPOSE word, after expansion: `80` → ['80/tcp'], `53/UDP` → ['53/udp'],
 * `8000-8001` → ['8000/tcp', '8001/tcp']. Protocols: tcp, udp, sctp.
 */
export function exposedPorts(
  spec: string,
  onError: (msg: string) => never = (m) => throwInvalid(m),
): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/([a-zA-Z]+))?$/.exec(spec);
  const proto = (m?.[3] ?? 'tcp').toLowerCase();
  if (!m || !['tcp', 'udp', 'sctp'].includes(proto)) return onError(`invalid port specification: "${spec}"`);
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535 || end < start) return onError(`invalid port specification: "${spec}"`);
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

function throwInvalid(msg: string): never {
  throw invalid(msg);
}

const UNITS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n, // U+00B5
  μs: 1_000n, // U+03BC
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX_DURATION = 2n ** 63n - 1n;

/**
 * Go's time.ParseDuration, in nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or `0`, units
 * ns us µs ms s m h (`30s`, `1m30s`, `1.5h`, `500ms`). Throws an Error on anything else.
 */
export function parseDuration(text: string): number {
  const bad = () => new Error(`invalid duration "${text}"`);
  let s = text;
  let neg = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw bad();
  let total = 0n;
  const part = /^(\d*)(?:\.(\d*))?([^\d.]*)/;
  while (s !== '') {
    const m = part.exec(s);
    const [all, int = '', frac, unit = ''] = m ?? [];
    if (!all || (int === '' && (frac === undefined || frac === ''))) throw bad();
    if (unit === '') throw new Error(`missing unit in duration "${text}"`);
    const mult = UNITS[unit];
    if (mult === undefined) throw new Error(`unknown unit "${unit}" in duration "${text}"`);
    let v = BigInt(int || '0') * mult;
    if (frac) v += (BigInt(frac) * mult) / 10n ** BigInt(frac.length);
    total += v;
    if (total > MAX_DURATION + (neg ? 1n : 0n)) throw bad();
    s = s.slice(all.length);
  }
  return Number(neg ? -total : total);
}

// ---------------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------------

/** The stage a `--from`/`--target` value names (name case-insensitive, or a stage index), if any. */
export function findStage(df: Dockerfile, nameOrIndex: string): number | undefined {
  const lower = nameOrIndex.toLowerCase();
  const byName = df.stages.findIndex((s) => s.name === lower);
  if (byName >= 0) return byName;
  if (/^\d+$/.test(nameOrIndex)) {
    const n = Number(nameOrIndex);
    if (n < df.stages.length) return n;
  }
  return undefined;
}

/** Like findStage, but an unknown stage is an invalid(`target stage "x" could not be found`). */
export function stageIndex(df: Dockerfile, nameOrIndex: string): number {
  const i = findStage(df, nameOrIndex);
  if (i === undefined) throw invalid(`target stage "${nameOrIndex}" could not be found`);
  return i;
}

// ---------------------------------------------------------------------------------------------
// Expansion (Docker's ShellLex)
// ---------------------------------------------------------------------------------------------

/** Collects the result as one string and as words split on unquoted whitespace. */
class Collector {
  text = '';
  readonly words: string[] = [];
  private word = '';
  private inWord = false;
  /** Text that is never split: quoted strings, escaped characters. */
  raw(s: string): void {
    this.text += s;
    this.word += s;
    this.inWord = true;
  }
  /** Unquoted text and expansion results: whitespace ends a word. */
  plain(s: string): void {
    this.text += s;
    for (const ch of s) {
      if (/\s/.test(ch)) {
        if (this.inWord) this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      } else {
        this.word += ch;
        this.inWord = true;
      }
    }
  }
  end(): string[] {
    if (this.inWord) this.words.push(this.word);
    this.inWord = false;
    return this.words;
  }
}

const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

class ShellLex {
  private readonly chars: string[];
  private pos = 0;
  constructor(
    text: string,
    private readonly vars: Record<string, string>,
    private readonly esc: string,
  ) {
    this.chars = Array.from(text);
  }

  run(): Collector {
    const out = new Collector();
    this.until(undefined, out);
    out.end();
    return out;
  }

  private get(name: string): string | undefined {
    return Object.hasOwn(this.vars, name) ? this.vars[name] : undefined;
  }

  /** Processes up to `stop` (consumed) or the end; `stop` missing is an error. */
  private until(stop: string | undefined, out: Collector): void {
    const c = this.chars;
    while (this.pos < c.length) {
      const ch = c[this.pos] ?? '';
      if (stop !== undefined && ch === stop) {
        this.pos++;
        return;
      }
      if (ch === "'") out.raw(this.singleQuoted());
      else if (ch === '"') out.raw(this.doubleQuoted());
      else if (ch === '$') out.plain(this.dollar());
      else if (ch === this.esc) {
        this.pos += 2;
        if (this.pos <= c.length) out.raw(c[this.pos - 1] ?? '');
      } else {
        this.pos++;
        out.plain(ch);
      }
    }
    if (stop !== undefined) throw invalid(`syntax error: missing '${stop}'`);
  }

  private singleQuoted(): string {
    const c = this.chars;
    const end = c.indexOf("'", this.pos + 1);
    if (end < 0) throw invalid('unexpected end of statement while looking for matching single-quote');
    const s = c.slice(this.pos + 1, end).join('');
    this.pos = end + 1;
    return s;
  }

  private doubleQuoted(): string {
    const c = this.chars;
    let s = '';
    this.pos++;
    while (this.pos < c.length) {
      const ch = c[this.pos] ?? '';
      if (ch === '"') {
        this.pos++;
        return s;
      }
      if (ch === '$') {
        s += this.dollar();
        continue;
      }
      if (ch === this.esc) {
        const next = c[this.pos + 1];
        if (next === undefined) {
          this.pos++;
          continue;
        }
        if (next === '"' || next === '$' || next === this.esc) {
          s += next;
          this.pos += 2;
          continue;
        }
      }
      s += ch;
      this.pos++;
    }
    throw invalid('unexpected end of statement while looking for matching double-quote');
  }

  private name(): string {
    const c = this.chars;
    const first = c[this.pos];
    if (first === undefined) return '';
    if (/^\p{Nd}$/u.test(first)) {
      let n = '';
      while (/^\p{Nd}$/u.test(c[this.pos] ?? '')) n += c[this.pos++];
      return n;
    }
    if (SPECIAL_PARAMS.has(first)) {
      this.pos++;
      return first;
    }
    let n = '';
    while (/^[\p{L}\p{Nd}_]$/u.test(c[this.pos] ?? '')) n += c[this.pos++];
    return n;
  }

  /** The word of `${x:-word}`: processed fully (quotes, escapes, nested $), up to the `}`. */
  private nested(): string {
    const out = new Collector();
    this.until('}', out);
    return out.text;
  }

  private dollar(): string {
    const c = this.chars;
    this.pos++;
    if (c[this.pos] !== '{') {
      const name = this.name();
      return name === '' ? '$' : (this.get(name) ?? '');
    }
    this.pos++;
    const first = c[this.pos];
    if (first === undefined) throw invalid("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw invalid('syntax error: bad substitution');
    const name = this.name();
    const op = c[this.pos++];
    const value = this.get(name);
    switch (op) {
      case undefined:
        throw invalid("syntax error: missing '}'");
      case '}':
        return value ?? '';
      case ':': {
        const mod = c[this.pos++];
        if (mod === undefined) throw invalid("syntax error: missing '}'");
        const word = this.nested();
        if (mod === '-') return value ? value : word;
        if (mod === '+') return value ? word : '';
        if (mod === '?') {
          if (!value) throw invalid(`${name}: ${word || 'is not allowed to be empty'}`);
          return value;
        }
        throw invalid(`unsupported modifier (${mod}) in substitution`);
      }
      case '-': {
        const word = this.nested();
        return value !== undefined ? value : word;
      }
      case '+': {
        const word = this.nested();
        return value !== undefined ? word : '';
      }
      case '?': {
        const word = this.nested();
        if (value === undefined) throw invalid(`${name}: ${word || 'is not allowed to be unset'}`);
        return value;
      }
      default:
        throw invalid(`unsupported modifier (${op}) in substitution`);
    }
  }
}

/**
 * Expands one word the way Docker's ShellLex.ProcessWord does: `$VAR`, `${VAR}`, `${VAR:-d}`,
 * `${VAR-d}`, `${VAR:+a}`, `${VAR+a}`, `${VAR:?msg}`, `${VAR?msg}`; undefined variables are empty;
 * 'single quotes' are literal, "double quotes" expand (`\"`, `\$` and the escape character can be
 * escaped in them), quotes are removed; outside quotes the escape character makes the next
 * character literal (`\$HOME` → `$HOME`). Whitespace is kept. Errors are invalid(...) without a
 * location: the caller prefixes FILE:LINE.
 */
export function expandValue(text: string, vars: Record<string, string>, esc = '\\'): string {
  return new ShellLex(text, vars, esc).run().text;
}

/** Same as expandValue. */
export const expand = expandValue;

/**
 * Expands like expandValue and splits into words (Docker's ProcessWords): unquoted whitespace
 * separates words, also whitespace coming from an unquoted variable; quoted text stays one word.
 */
export function expandWords(text: string, vars: Record<string, string>, esc = '\\'): string[] {
  return new ShellLex(text, vars, esc).run().words;
}

/**
 * Returns the instruction with its arguments expanded as Docker does (see EXPANDS); others are
 * returned as they are. Every pair of one ENV/LABEL/ARG line sees the same `vars` (the state
 * before the instruction). EXPOSE words are split (`EXPOSE $PORTS`); COPY/ADD --from, --chown
 * and --chmod are expanded too. Errors are invalid(...) without a location.
 */
export function expandInstruction<T extends Instruction>(
  instr: T,
  vars: Record<string, string>,
  esc: string,
): T {
  const x = (s: string) => expandValue(s, vars, esc);
  const pairs = (p: KeyValue[]) => p.map(({ key, value }) => ({ key: x(key), value: x(value) }));
  const i: Instruction = instr;
  switch (i.kind) {
    case 'copy':
    case 'add': {
      const out: CopyInstr | AddInstr = { ...i, sources: i.sources.map(x), dest: x(i.dest) };
      if (i.chown !== undefined) out.chown = x(i.chown);
      if (i.chmod !== undefined) out.chmod = x(i.chmod);
      if (i.kind === 'copy' && i.from !== undefined) (out as CopyInstr).from = x(i.from);
      return out as T;
    }
    case 'env':
    case 'label':
      return { ...i, pairs: pairs(i.pairs) } as T;
    case 'arg':
      return {
        ...i,
        args: i.args.map((a) => (a.default === undefined ? a : { name: a.name, default: x(a.default) })),
      } as T;
    case 'expose':
      return { ...i, ports: i.ports.flatMap((p) => expandWords(p, vars, esc)) } as T;
    case 'volume':
      return { ...i, paths: i.paths.map(x) } as T;
    case 'workdir':
      return { ...i, path: x(i.path) } as T;
    case 'user':
      return { ...i, user: x(i.user) } as T;
    case 'stopsignal':
      return { ...i, signal: x(i.signal) } as T;
    default:
      return instr;
  }
}
