import { interpolate, type Lookup } from './interpolate.js';

/**
 * Reads a `.env` or `env_file` file the way Compose does: `KEY=VALUE` lines, optional
 * `export `, `#` comments (also after an unquoted value), single quotes literal, double quotes
 * with `\n \t \\ \"` escapes (both may span lines), `${VAR}` interpolated in unquoted and
 * double-quoted values (variables of the same file first, then `lookup`), and a bare `KEY`
 * taking its value from `lookup` (skipped when unset).
 */
export interface EnvFileResult {
  vars: Record<string, string>;
  /** `FILE:LINE: message` each. */
  errors: string[];
  warnings: string[];
}

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

export function parseEnvFile(text: string, file: string, lookup: Lookup): EnvFileResult {
  const vars: Record<string, string> = {};
  const errors: string[] = [];
  const warnings: string[] = [];
  const lines = text.split(/\r?\n/);
  const local: Lookup = (name) => (Object.hasOwn(vars, name) ? vars[name] : lookup(name));
  const expand = (s: string, line: number) => {
    const r = interpolate(s, local);
    for (const i of r.issues)
      (i.severity === 'error' ? errors : warnings).push(`${file}:${line}: ${i.message}`);
    return r.value;
  };

  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const trimmed = lines[n]!.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const body = trimmed.replace(/^export\s+/, '');
    const eq = body.indexOf('=');
    if (eq < 0) {
      if (KEY.test(body)) {
        const v = lookup(body);
        if (v !== undefined) vars[body] = v;
      } else errors.push(`${file}:${lineNo}: invalid line ${JSON.stringify(trimmed)}: expected KEY=VALUE`);
      continue;
    }
    const key = body.slice(0, eq).trim();
    if (!KEY.test(key)) {
      errors.push(`${file}:${lineNo}: invalid variable name ${JSON.stringify(key)}`);
      continue;
    }
    let raw = body.slice(eq + 1).trimStart();
    const quote = raw[0];
    if (quote === "'" || quote === '"') {
      // A quoted value may continue on the following lines.
      let close = closingQuote(raw, quote);
      while (close < 0 && n + 1 < lines.length) {
        n++;
        raw += `\n${lines[n]}`;
        close = closingQuote(raw, quote);
      }
      if (close < 0) {
        errors.push(`${file}:${lineNo}: unterminated ${quote === '"' ? 'double' : 'single'}-quoted value`);
        continue;
      }
      const after = raw.slice(close + 1).trim();
      if (after !== '' && !after.startsWith('#')) {
        errors.push(
          `${file}:${lineNo}: unexpected ${JSON.stringify(after)} after the quoted value of ${key}`,
        );
        continue;
      }
      const inner = raw.slice(1, close);
      vars[key] = quote === "'" ? inner : expand(unescapeDouble(inner), lineNo);
    } else {
      vars[key] = expand(raw.replace(/\s+#.*$/, '').trim(), lineNo);
    }
  }
  return { vars, errors, warnings };
}

function closingQuote(s: string, quote: string): number {
  for (let i = 1; i < s.length; i++) {
    if (quote === '"' && s[i] === '\\') i++;
    else if (s[i] === quote) return i;
  }
  return -1;
}

function unescapeDouble(s: string): string {
  return s.replace(/\\(.)/gs, (all, c: string) => {
    switch (c) {
      case 'n':
        return '\n';
      case 't':
        return '\t';
      case 'r':
        return '\r';
      case '\\':
      case '"':
        return c;
      case '$':
        return '$$';
      default:
        return all;
    }
  });
}
