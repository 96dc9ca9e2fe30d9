/**
 * Variable interpolation as Compose does it: `$VAR`, `${VAR}`, `${VAR:-default}`,
 * `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+replacement}`,
 * `${VAR+replacement}`, and `$$` for a literal `$`. Defaults and replacements may themselves
 * hold variables. A `$` followed by anything else is an error, as in Compose.
 */

/** Returns a variable's value, or undefined when it is unset. */
export type Lookup = (name: string) => string | undefined;

export interface InterpolationIssue {
  severity: 'error' | 'warning';
  message: string;
  /** The `$…` expression the issue is about, as written (to find its line in the source). */
  expression: string;
}

export interface Interpolated {
  value: string;
  issues: InterpolationIssue[];
}

const NAME = /^[_a-zA-Z][_a-zA-Z0-9]*/;

/** Expands every variable of `template`; problems are returned, never thrown. */
export function interpolate(template: string, lookup: Lookup): Interpolated {
  const issues: InterpolationIssue[] = [];
  const value = expand(template, lookup, issues);
  return { value, issues };
}

function expand(s: string, lookup: Lookup, issues: InterpolationIssue[]): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const dollar = s.indexOf('$', i);
    if (dollar < 0) {
      out += s.slice(i);
      break;
    }
    out += s.slice(i, dollar);
    const next = s[dollar + 1];
    if (next === '$') {
      out += '$';
      i = dollar + 2;
      continue;
    }
    if (next === '{') {
      const end = closingBrace(s, dollar + 2);
      if (end < 0) {
        issues.push(invalidFormat(s, s.slice(dollar)));
        return out;
      }
      const expression = s.slice(dollar, end + 1);
      out += braced(s.slice(dollar + 2, end), expression, s, lookup, issues);
      i = end + 1;
      continue;
    }
    const name = NAME.exec(s.slice(dollar + 1))?.[0];
    if (!name) {
      issues.push(invalidFormat(s, s.slice(dollar, dollar + 2)));
      i = dollar + 1;
      continue;
    }
    out += plain(name, `$${name}`, lookup, issues);
    i = dollar + 1 + name.length;
  }
  return out;
}

/** Index of the `}` closing a `${` whose body starts at `from`; nested `${…}` are skipped. */
function closingBrace(s: string, from: number): number {
  let depth = 1;
  for (let j = from; j < s.length; j++) {
    if (s[j] === '$' && s[j + 1] === '$') j++;
    else if (s[j] === '$' && s[j + 1] === '{') {
      depth++;
      j++;
    } else if (s[j] === '}' && --depth === 0) return j;
  }
  return -1;
}

function braced(
  body: string,
  expression: string,
  template: string,
  lookup: Lookup,
  issues: InterpolationIssue[],
): string {
  const name = NAME.exec(body)?.[0];
  if (!name) {
    issues.push(invalidFormat(template, expression));
    return '';
  }
  const rest = body.slice(name.length);
  if (rest === '') return plain(name, expression, lookup, issues);
  const op = /^(:-|-|:\?|\?|:\+|\+)/.exec(rest)?.[0];
  if (!op) {
    issues.push(invalidFormat(template, expression));
    return '';
  }
  const arg = rest.slice(op.length);
  const value = lookup(name);
  const emptyCounts = op.startsWith(':');
  const missing = value === undefined || (emptyCounts && value === '');
  switch (op) {
    case ':-':
    case '-':
      return missing ? expand(arg, lookup, issues) : value!;
    case ':?':
    case '?': {
      if (!missing) return value!;
      const detail = expand(arg, lookup, issues);
      issues.push({
        severity: 'error',
        expression,
        message: `required variable ${name} is missing a value${detail ? `: ${detail}` : ''}`,
      });
      return '';
    }
    default:
      return missing ? '' : expand(arg, lookup, issues);
  }
}

function plain(name: string, expression: string, lookup: Lookup, issues: InterpolationIssue[]): string {
  const value = lookup(name);
  if (value !== undefined) return value;
  issues.push({
    severity: 'warning',
    expression,
    message: `the "${name}" variable is not set; defaulting to a blank string`,
  });
  return '';
}

function invalidFormat(template: string, expression: string): InterpolationIssue {
  return {
    severity: 'error',
    expression,
    message: `invalid interpolation format ${JSON.stringify(template)} (write $$ for a literal $)`,
  };
}
