/**
 * Value parsers for stack files, with Docker's rules. Each returns the parsed value or a
 * string saying what was wrong (the caller adds FILE:LINE and the key path).
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

export const describe = (v: unknown): string =>
  v === null || v === undefined
    ? 'null'
    : Array.isArray(v)
      ? 'a list'
      : typeof v === 'object'
        ? 'a map'
        : typeof v === 'string'
          ? JSON.stringify(v)
          : String(v);

const DURATION_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration syntax (`10s`, `1m30s`, `500ms`, `1.5h`, `0`), never negative → milliseconds. */
export function parseDuration(v: unknown): Parsed<number> {
  if (v === 0 || v === '0') return ok(0);
  if (typeof v !== 'string') return fail(`must be a duration such as "10s" or "1m30s" (got ${describe(v)})`);
  const s = v.trim();
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let ms = 0;
  let pos = 0;
  while (pos < s.length) {
    part.lastIndex = pos;
    const m = part.exec(s);
    if (!m) break;
    ms += Number(m[1]) * DURATION_UNIT_MS[m[2]!]!;
    pos = part.lastIndex;
  }
  if (s === '' || pos !== s.length)
    return fail(`must be a duration such as "10s", "1m30s" or "500ms" (got ${describe(v)})`);
  return ok(ms);
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/** Docker's RAMInBytes: `512M`, `1g`, `1024k`, `2gb`, `1.5GiB`, or a plain number of bytes (binary units). */
export function parseBytes(v: unknown): Parsed<number> {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return ok(v);
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?) ?([kmgtp])?(?:i?b)?$/i.exec(v.trim()) : null;
  if (!m) return fail(`must be a size such as "512M" or "1g" (got ${describe(v)})`);
  return ok(Math.floor(Number(m[1]) * BYTE_UNITS[(m[2] ?? '').toLowerCase()]!));
}

/** CPUs as a decimal (`0.5`, `'1.25'`) → nano-CPUs, exactly (at most 9 decimals), as `docker --cpus`. */
export function parseNanoCpus(v: unknown): Parsed<number> {
  const s = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : '';
  const m = /^(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || s === '' || s === '.' || s.includes('e'))
    return fail(`must be a number of CPUs such as 0.5 or "1.5" (got ${describe(v)})`);
  const frac = m[2] ?? '';
  if (frac.replace(/0+$/, '').length > 9)
    return fail(`is too precise: at most 9 decimals (got ${describe(v)})`);
  return ok(Number(m[1] || '0') * 1e9 + Number(frac.padEnd(9, '0').slice(0, 9)));
}

/** An integer written as a number or a string (interpolated values are strings). */
export function parseInteger(v: unknown): Parsed<number> {
  if (typeof v === 'number' && Number.isInteger(v)) return ok(v);
  if (typeof v === 'string' && /^[-+]?\d+$/.test(v.trim())) return ok(Number(v.trim()));
  return fail(`must be integer (got ${describe(v)})`);
}

export function parseNumber(v: unknown): Parsed<number> {
  if (typeof v === 'number' && Number.isFinite(v)) return ok(v);
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return ok(Number(v));
  return fail(`must be a number (got ${describe(v)})`);
}

/** YAML booleans, and the strings an interpolated value can give. */
export function parseBoolean(v: unknown): Parsed<boolean> {
  if (typeof v === 'boolean') return ok(v);
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(s)) return ok(true);
    if (['false', 'no', 'off', '0'].includes(s)) return ok(false);
  }
  return fail(`must be true or false (got ${describe(v)})`);
}
