/**
 * .dockerignore matching (pure), with Docker's rules (moby/patternmatcher + ignorefile.ReadAll):
 * one pattern a line; lines starting with `#` are comments, blank lines are skipped; patterns are
 * trimmed and cleaned like Go's filepath.Clean, a leading `/` dropped; `!pattern` is an
 * exception. `*` matches within one path segment, `?` one character but `/`, `[...]` a character
 * class (`[^...]` negated, ranges, no `/`), `\` escapes the next character, `**` any number of
 * directories (`**∕x` also matches `x`; a trailing `**` everything below). A path is ignored when
 * the last rule matching it or one of its parent directories is not an exception, so an ignored
 * directory ignores everything beneath it unless a later exception re-includes some of it.
 * Dockerfile and .dockerignore get no special treatment here.
 */
import { invalid } from '../../api/errors.js';

export interface Rule {
  /** The cleaned pattern, without its `!`. */
  pattern: string;
  exception: boolean;
}

export interface Matcher {
  readonly rules: readonly Rule[];
  /** Whether a path relative to the context root (`a/b`, `./a/b`, `/a/b`) is excluded. */
  ignored(relPath: string): boolean;
  /**
   * False only when nothing under the directory `dir` can be included, so a walker can skip it
   * without reading it: some exception rule after the last rule matching `dir` (or a parent)
   * could match a path below it. Conservative: true whenever that cannot be ruled out.
   */
  mayIncludeUnder(dir: string): boolean;
}

interface Compiled extends Rule {
  re: RegExp;
  /** One regexp per `/`-separated segment (see segmentRe). */
  segments: Array<RegExp | null>;
}

/** Parses .dockerignore text; a bad pattern is invalid(`FILE:LINE: ...`). */
export function parseDockerignore(text: string, file = '.dockerignore'): Matcher {
  const rules: Compiled[] = [];
  text.split('\n').forEach((rawLine, i) => {
    let line = rawLine;
    if (i === 0 && line.startsWith('\uFEFF')) line = line.slice(1);
    if (line.startsWith('#')) return;
    let p = line.trim();
    if (p === '') return;
    const exception = p.startsWith('!');
    if (exception) p = p.slice(1).trim();
    if (p === '') throw invalid(`${file}:${i + 1}: illegal exclusion pattern: "!"`);
    p = cleanPath(p);
    if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    try {
      rules.push({
        pattern: p,
        exception,
        re: new RegExp(`^${globSource(p, true)}$`, 'su'),
        segments: p.split('/').map(segmentRe),
      });
    } catch (e) {
      throw invalid(`${file}:${i + 1}: syntax error in pattern "${p}": ${(e as Error).message}`);
    }
  });
  return new PatternMatcher(rules);
}

class PatternMatcher implements Matcher {
  constructor(private readonly compiled: Compiled[]) {}

  get rules(): readonly Rule[] {
    return this.compiled.map(({ pattern, exception }) => ({ pattern, exception }));
  }

  /** Index of the last rule matching the path or one of its parents, -1 if none. */
  private lastMatch(relPath: string): number {
    const p = normalize(relPath);
    if (p === '.' || p === '') return -1;
    const prefixes: string[] = [];
    for (let at = p.indexOf('/'); at >= 0; at = p.indexOf('/', at + 1)) prefixes.push(p.slice(0, at));
    prefixes.push(p);
    for (let r = this.compiled.length - 1; r >= 0; r--) {
      const re = this.compiled[r]?.re;
      if (re && prefixes.some((x) => re.test(x))) return r;
    }
    return -1;
  }

  ignored(relPath: string): boolean {
    const r = this.lastMatch(relPath);
    return r >= 0 && !this.compiled[r]?.exception;
  }

  mayIncludeUnder(dir: string): boolean {
    const r = this.lastMatch(dir);
    if (r < 0 || this.compiled[r]?.exception) return true;
    const d = normalize(dir).split('/');
    return this.compiled.slice(r + 1).some((rule) => rule.exception && mayMatchBelow(rule.segments, d));
  }
}

/** A segment's regexp; null (could match anything) for `**` or what does not compile alone (`[/]`). */
function segmentRe(segment: string): RegExp | null {
  if (segment.includes('**')) return null;
  try {
    return new RegExp(`^${globSource(segment, false)}$`, 'su');
  } catch {
    return null;
  }
}

/**
 * Whether a pattern (its segments) could match some path strictly below the directory `dir`:
 * its first segments match the directory's and it has more. A `**` segment could match anything.
 */
function mayMatchBelow(segments: Array<RegExp | null>, dir: string[]): boolean {
  for (let k = 0; k < dir.length; k++) {
    const seg = segments[k];
    if (seg === null) return true;
    if (seg === undefined || !seg.test(dir[k] ?? '')) return false;
  }
  return segments.length > dir.length;
}

/** A path as the matcher sees it: cleaned, relative, `/`-separated. */
function normalize(relPath: string): string {
  let p = cleanPath(relPath);
  while (p.startsWith('/')) p = p.slice(1);
  return p === '' ? '.' : p;
}

/** Go's path.Clean: drops `.` and empty segments, resolves `..`, no trailing `/`; '' → '.'. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
    } else {
      out.push(seg);
    }
  }
  const joined = out.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

const escapeRe = (ch: string) => (/[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch);
const escapeInClass = (ch: string) => (ch === '-' ? '\\-' : escapeRe(ch));

/**
 * The regexp source of a glob. With `multi`, `**` spans directories as patternmatcher does:
 * `**` then `/` (or the end) matches any number of leading directories (or anything).
 */
function globSource(glob: string, multi: boolean): string {
  const c = Array.from(glob);
  let re = '';
  for (let i = 0; i < c.length; i++) {
    const ch = c[i] ?? '';
    if (ch === '*' && c[i + 1] === '*' && multi) {
      i++;
      if (c[i + 1] === '/') i++;
      re += i + 1 >= c.length ? '.*' : '(?:.*/)?';
    } else if (ch === '*') {
      re += '[^/]*';
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '\\') {
      i++;
      re += i < c.length ? escapeRe(c[i] ?? '') : '\\\\';
    } else if (ch === '[') {
      const end = classEnd(c, i);
      if (end < 0) throw new Error('unterminated character class');
      re += classSource(c.slice(i + 1, end));
      i = end;
    } else {
      re += escapeRe(ch);
    }
  }
  return re;
}

/** Index of the `]` closing the class opened at `open`, -1 if none. */
function classEnd(c: string[], open: number): number {
  let i = open + 1;
  if (c[i] === '^') i++;
  for (let first = true; i < c.length; i++, first = false) {
    if (c[i] === '\\') i++;
    else if (c[i] === ']' && !first) return i;
  }
  return -1;
}

function classSource(body: string[]): string {
  let i = 0;
  let re = '[';
  if (body[0] === '^') {
    re += '^';
    i = 1;
  }
  let n = 0;
  for (; i < body.length; i++) {
    let ch = body[i] ?? '';
    const escaped = ch === '\\';
    if (escaped) ch = body[++i] ?? '\\';
    if (ch === '-' && !escaped && n > 0 && i + 1 < body.length) re += '-';
    else re += escapeInClass(ch);
    n++;
  }
  if (n === 0) throw new Error('empty character class');
  // A class never matches the separator.
  return re.startsWith('[^') ? `${re}/]` : `(?!/)${re}]`;
}
