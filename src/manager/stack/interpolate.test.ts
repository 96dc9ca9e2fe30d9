// biome-ignore-all lint/suspicious/noTemplateCurlyInString: stack files write ${VAR} literally
import t from 'tap';
import { parseEnvFile } from './dotenv.js';
import { interpolate } from './interpolate.js';

const env: Record<string, string> = { NAME: 'web', EMPTY: '', PORT: '8080' };
const lookup = (n: string) => env[n];
const value = (s: string) => interpolate(s, lookup).value;

t.test('every form of variable', async (t) => {
  t.equal(value('$NAME'), 'web');
  t.equal(value('${NAME}'), 'web');
  t.equal(value('x-$NAME-y'), 'x-web-y');
  t.equal(value('${NAME}_1'), 'web_1');
  t.equal(value('$NAME.example'), 'web.example', 'a name stops at the first non-name character');
  t.equal(value('${MISSING:-dflt}'), 'dflt');
  t.equal(value('${EMPTY:-dflt}'), 'dflt', ':- also replaces an empty value');
  t.equal(value('${EMPTY-dflt}'), '', '- replaces only an unset value');
  t.equal(value('${MISSING-dflt}'), 'dflt');
  t.equal(value('${NAME:-dflt}'), 'web');
  t.equal(value('${NAME:+alt}'), 'alt');
  t.equal(value('${EMPTY:+alt}'), '');
  t.equal(value('${EMPTY+alt}'), 'alt');
  t.equal(value('${MISSING:-${NAME}-${PORT}}'), 'web-8080', 'defaults may hold variables');
  t.equal(value('${MISSING:-a b:c}'), 'a b:c');
});

t.test('$$ is a literal dollar', async (t) => {
  t.equal(value('$$NAME'), '$NAME');
  t.equal(value('cost: $$5 and $$$NAME'), 'cost: $5 and $web');
  t.equal(value('echo $$(hostname)'), 'echo $(hostname)');
  t.same(interpolate('$$', lookup).issues, []);
});

t.test('required variables', async (t) => {
  const r = interpolate('${MISSING:?set MISSING to the database URL}', lookup);
  t.equal(r.issues.length, 1);
  t.equal(r.issues[0]!.severity, 'error');
  t.equal(
    r.issues[0]!.message,
    'required variable MISSING is missing a value: set MISSING to the database URL',
  );
  t.equal(r.issues[0]!.expression, '${MISSING:?set MISSING to the database URL}');
  t.equal(interpolate('${EMPTY:?no}', lookup).issues.length, 1, ':? refuses an empty value');
  t.same(interpolate('${EMPTY?no}', lookup).issues, [], '? accepts an empty value');
  t.equal(
    interpolate('${MISSING?}', lookup).issues[0]!.message,
    'required variable MISSING is missing a value',
  );
  t.equal(interpolate('${NAME:?x}', lookup).value, 'web');
});

t.test('unset plain variables are blank, with a warning', async (t) => {
  const r = interpolate('a${MISSING}b$OTHER', lookup);
  t.equal(r.value, 'ab');
  t.same(
    r.issues.map((i) => [i.severity, i.message]),
    [
      ['warning', 'the "MISSING" variable is not set; defaulting to a blank string'],
      ['warning', 'the "OTHER" variable is not set; defaulting to a blank string'],
    ],
  );
});

t.test('malformed references are errors', async (t) => {
  for (const bad of ['cost $ 5', 'end $', '${', '${NAME', '${}', '${1X}', '${NAME:x}', '$-']) {
    const r = interpolate(bad, lookup);
    t.ok(
      r.issues.some((i) => i.severity === 'error' && /invalid interpolation format/.test(i.message)),
      `${bad} is refused`,
    );
  }
});

t.test('env files', async (t) => {
  const text = [
    '# comment',
    '',
    'A=1',
    'export B = two words ',
    'C="line1\\nline2"',
    "D='${A} literal'",
    'E=${A}-${HOST_ONLY}',
    'F=value # trailing comment',
    'G="multi',
    'line"',
    'H=',
    'HOST_ONLY',
    'NOT_SET_ANYWHERE',
  ].join('\n');
  const r = parseEnvFile(text, 'x.env', (n) => (n === 'HOST_ONLY' ? 'h' : undefined));
  t.same(r.errors, []);
  t.same(r.vars, {
    A: '1',
    B: 'two words',
    C: 'line1\nline2',
    D: '${A} literal',
    E: '1-h',
    F: 'value',
    G: 'multi\nline',
    H: '',
    HOST_ONLY: 'h',
  });
  const bad = parseEnvFile('OK=1\n1BAD=x\nQ="open\n', 'bad.env', () => undefined);
  t.same(bad.errors, [
    'bad.env:2: invalid variable name "1BAD"',
    'bad.env:3: unterminated double-quoted value',
  ]);
  const req = parseEnvFile('X=${NEED:?is required}\n', 'r.env', () => undefined);
  t.same(req.errors, ['r.env:1: required variable NEED is missing a value: is required']);
});
