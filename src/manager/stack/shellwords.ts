import type { Parsed } from './units.js';

/**
 * Splits a command string into argv as Compose does for `command:` and `entrypoint:` strings
 * (go-shellwords without environment expansion): whitespace separates words, single quotes
 * are literal, double quotes group, a backslash escapes the next character outside single
 * quotes. Nothing runs through a shell, so an unquoted `;`, `&`, `|`, `<` or `>` is refused
 * rather than silently cut (write `["sh", "-c", "..."]` for a shell).
 */
export function splitShellWords(line: string): Parsed<string[]> {
  const argv: string[] = [];
  let word = '';
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= line.length) return { ok: false, error: 'ends with a lone backslash' };
      word += line[++i];
      inWord = true;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = undefined;
      else word += c;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) argv.push(word);
      word = '';
      inWord = false;
    } else if (';&|<>'.includes(c)) {
      return {
        ok: false,
        error: `contains the shell operator "${c}", but the command is not run through a shell: quote it, or write ["sh", "-c", "..."]`,
      };
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) return { ok: false, error: `has an unterminated ${quote === '"' ? 'double' : 'single'} quote` };
  if (inWord) argv.push(word);
  return { ok: true, value: argv };
}
