// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} here is Dockerfile syntax under test, not a template
import t, { type Test } from 'tap';
import { TsswarmError } from '../../api/errors.js';
import {
  type Dockerfile,
  EXPANDS,
  expand,
  expandInstruction,
  expandValue,
  expandWords,
  exposedPorts,
  findStage,
  type Instruction,
  parseDockerfile,
  parseDuration,
  stageIndex,
} from './dockerfile.js';

/** The instructions of the only (or given) stage. */
const instrs = (text: string, stage = 0): Instruction[] =>
  parseDockerfile(text).stages[stage]?.instructions ?? [];
const one = (line: string): Instruction => {
  const got = instrs(`FROM scratch\n${line}\n`);
  if (got.length !== 1 || !got[0]) throw new Error(`expected one instruction, got ${got.length}`);
  return got[0];
};
/** Asserts parseDockerfile throws an invalid_argument error with exactly this message. */
const fails = (t: Test, text: string, message: string, file?: string) =>
  t.throws(() => parseDockerfile(text, file), { name: 'TsswarmError', code: 'invalid_argument', message });

t.test(
  'FROM: image, platform, AS name (case-insensitive keyword, name lowercased), stage indices',
  async (t) => {
    const df = parseDockerfile(
      'FROM alpine:3.19 AS Build\nRUN make\nfrom --platform=linux/arm64 debian\nFrom build as final\n',
    );
    t.same(df.args, []);
    t.equal(df.stages.length, 3);
    t.same(df.stages[0]?.from, { image: 'alpine:3.19', line: 1, original: 'FROM alpine:3.19 AS Build' });
    t.equal(df.stages[0]?.name, 'build');
    t.equal(df.stages[0]?.index, 0);
    t.same(df.stages[1]?.from, {
      image: 'debian',
      platform: 'linux/arm64',
      line: 3,
      original: 'from --platform=linux/arm64 debian',
    });
    t.notOk('name' in (df.stages[1] ?? {}), 'no AS: no name');
    t.equal(df.stages[2]?.name, 'final');
    t.equal(df.stages[2]?.from.image, 'build');
    t.equal(df.stages[2]?.index, 2);
    t.equal(df.escape, '\\');
    t.equal(df.file, 'Dockerfile');
  },
);

t.test('global ARGs before the first FROM; ARG in a stage is an instruction', async (t) => {
  const df = parseDockerfile('ARG BASE=alpine\nARG TAG\nFROM ${BASE}:${TAG}\nARG X=1 Y\n');
  t.same(
    df.args.map((a) => a.args),
    [[{ name: 'BASE', default: 'alpine' }], [{ name: 'TAG' }]],
  );
  t.equal(df.args[1]?.line, 2);
  t.equal(df.stages[0]?.from.image, '${BASE}:${TAG}', 'FROM is kept raw');
  t.same(df.stages[0]?.instructions, [
    { kind: 'arg', line: 4, original: 'ARG X=1 Y', args: [{ name: 'X', default: '1' }, { name: 'Y' }] },
  ]);
  t.same((one('ARG msg="a b" e=') as { args: unknown }).args, [
    { name: 'msg', default: '"a b"' },
    { name: 'e', default: '' },
  ]);
});

t.test('continuations: joined as Docker joins them, comments and blank lines inside skipped', async (t) => {
  const text = [
    'FROM scratch',
    'RUN echo a \\',
    '  # a comment inside the continuation',
    '',
    '    && echo b \\  ',
    '\t&& echo c',
    'RUN x\\',
    'y',
    'CMD run',
  ].join('\n');
  const got = instrs(text);
  t.same(got[0], {
    kind: 'run',
    line: 2,
    original: 'RUN echo a     && echo b \t&& echo c',
    form: 'shell',
    command: 'echo a     && echo b \t&& echo c',
  });
  t.same(got[1], { kind: 'run', line: 7, original: 'RUN xy', form: 'shell', command: 'xy' });
  t.equal(got[2]?.line, 9, 'the line numbers count the physical lines');
  t.same(instrs('FROM scratch\nRUN a \\\n'), [
    { kind: 'run', line: 2, original: 'RUN a', form: 'shell', command: 'a' },
  ]);
  t.same(instrs('FROM scratch\r\nRUN a \\\r\n b\r\n')[0], {
    kind: 'run',
    line: 2,
    original: 'RUN a  b',
    form: 'shell',
    command: 'a  b',
  });
});

t.test('comments, blank lines, indentation, BOM, case-insensitive instruction names', async (t) => {
  const df = parseDockerfile(
    '\uFEFF# a comment\n\n   # indented comment\n  from scratch\n\twOrKdIr /app\n  # x\nrun ls\n',
  );
  t.same(
    df.stages[0]?.instructions.map((i) => [i.kind, i.line, i.original]),
    [
      ['workdir', 5, 'wOrKdIr /app'],
      ['run', 7, 'run ls'],
    ],
  );
  t.equal(df.stages[0]?.from.line, 4);
  t.same(one('RUN echo a # not a comment'), {
    kind: 'run',
    line: 2,
    original: 'RUN echo a # not a comment',
    form: 'shell',
    command: 'echo a # not a comment',
  });
});

t.test('parser directives: escape=` , syntax ignored, only at the top, duplicates refused', async (t) => {
  const df = parseDockerfile(
    '# syntax=docker/dockerfile:1\n# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir c:\\ `\n  && echo done\nCOPY a `\n  b c:\\dest\\\n',
  );
  t.equal(df.escape, '`');
  const [run, copy] = df.stages[0]?.instructions ?? [];
  t.same(run, {
    kind: 'run',
    line: 4,
    original: 'RUN dir c:\\   && echo done',
    form: 'shell',
    command: 'dir c:\\   && echo done',
  });
  t.same(copy, {
    kind: 'copy',
    line: 6,
    original: 'COPY a   b c:\\dest\\',
    sources: ['a', 'b'],
    dest: 'c:\\dest\\',
  });

  t.equal(parseDockerfile('#ESCAPE = `\nFROM x\n').escape, '`', 'directive names are case-insensitive');
  t.equal(parseDockerfile('# hello\n# escape=`\nFROM x\n').escape, '\\', 'after a comment: a comment');
  t.equal(parseDockerfile('\n# escape=`\nFROM x\n').escape, '\\', 'after a blank line: a comment');
  t.equal(parseDockerfile('# foo=bar\n# escape=`\nFROM x\n').escape, '\\', 'after an unknown directive');
  t.equal(parseDockerfile('FROM x\n# escape=`\nRUN a\\\nb\n').stages[0]?.instructions[0]?.original, 'RUN ab');
  fails(t, '# escape=`\n# escape=\\\nFROM x\n', 'Dockerfile:2: only one escape parser directive can be used');
  fails(t, '# escape=x\nFROM x\n', "Dockerfile:1: invalid escape token 'x' does not match ` or \\");
});

t.test('RUN: shell form, exec form, flags refused, heredocs refused', async (t) => {
  t.same(one('RUN ["sh", "-c", "echo $HOME"]'), {
    kind: 'run',
    line: 2,
    original: 'RUN ["sh", "-c", "echo $HOME"]',
    form: 'exec',
    args: ['sh', '-c', 'echo $HOME'],
  });
  t.match(one('RUN [not json'), { form: 'shell', command: '[not json' }, 'invalid JSON: shell form');
  t.match(one('RUN echo $HOME \\$X'), { form: 'shell', command: 'echo $HOME \\$X' }, 'not expanded');
  fails(
    t,
    'FROM x\nRUN [1, "a"]\n',
    'Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only',
  );
  fails(t, 'FROM x\nRUN --mount=type=cache,target=/c make\n', 'Dockerfile:2: RUN --mount is not supported');
  fails(t, 'FROM x\nRUN --network=none make\n', 'Dockerfile:2: RUN --network is not supported');
  fails(t, 'FROM x\nRUN\n', 'Dockerfile:2: RUN requires at least one argument');
  fails(t, 'FROM x\nRUN cat <<EOF\nhi\nEOF\n', 'Dockerfile:2: heredocs (<<EOF) are not supported');
  t.match(one('RUN echo "<<EOF"'), { command: 'echo "<<EOF"' }, 'a quoted << is no heredoc');
});

t.test('CMD / ENTRYPOINT / SHELL', async (t) => {
  t.same(one('CMD ["nginx", "-g", "daemon off;"]'), {
    kind: 'cmd',
    line: 2,
    original: 'CMD ["nginx", "-g", "daemon off;"]',
    form: 'exec',
    args: ['nginx', '-g', 'daemon off;'],
  });
  t.match(one('CMD echo "hi there"'), { kind: 'cmd', form: 'shell', command: 'echo "hi there"' });
  t.match(one('entrypoint ["/init"]'), { kind: 'entrypoint', form: 'exec', args: ['/init'] });
  t.match(one('ENTRYPOINT exec top -b'), { kind: 'entrypoint', form: 'shell', command: 'exec top -b' });
  t.match(one('ENTRYPOINT []'), { kind: 'entrypoint', form: 'exec', args: [] });
  t.match(one('CMD'), { kind: 'cmd', form: 'exec', args: [] });
  t.match(one('SHELL ["powershell", "-command"]'), { kind: 'shell', shell: ['powershell', '-command'] });
  fails(t, 'FROM x\nSHELL /bin/bash -c\n', 'Dockerfile:2: SHELL requires the arguments to be in JSON form');
  fails(t, 'FROM x\nSHELL []\n', 'Dockerfile:2: SHELL requires at least one argument');
  fails(t, 'FROM x\nCMD --port=80\n', 'Dockerfile:2: unknown flag: port');
});

t.test('COPY / ADD: flags, JSON form, plain form with quotes, at least two arguments', async (t) => {
  t.same(one('COPY --from=build --chown=app:app --chmod=0755 /out/bin "/usr/local/my bin/"'), {
    kind: 'copy',
    line: 2,
    original: 'COPY --from=build --chown=app:app --chmod=0755 /out/bin "/usr/local/my bin/"',
    sources: ['/out/bin'],
    dest: '"/usr/local/my bin/"',
    chown: 'app:app',
    chmod: '0755',
    from: 'build',
  });
  t.match(one('COPY ["a b", "c", "/d/"]'), { sources: ['a b', 'c'], dest: '/d/' });
  t.match(one('COPY "--chown=a" x y'), { sources: ['"--chown=a"', 'x'], dest: 'y' }, 'only leading flags');
  t.match(one('COPY --chown="a b" x y'), { chown: 'a b' }, 'quotes removed from flag values');
  t.same(one('ADD --chown=1:1 https://example.com/a.tgz /x'), {
    kind: 'add',
    line: 2,
    original: 'ADD --chown=1:1 https://example.com/a.tgz /x',
    sources: ['https://example.com/a.tgz'],
    dest: '/x',
    chown: '1:1',
  });
  fails(t, 'FROM x\nCOPY onlyone\n', 'Dockerfile:2: COPY requires at least two arguments');
  fails(t, 'FROM x\nADD ["a"]\n', 'Dockerfile:2: ADD requires at least two arguments');
  fails(t, 'FROM x\nADD --from=b a c\n', 'Dockerfile:2: unknown flag: from');
  fails(t, 'FROM x\nCOPY --link a c\n', 'Dockerfile:2: COPY --link is not supported');
  fails(t, 'FROM x\nCOPY --from a c\n', 'Dockerfile:2: missing a value on flag: --from');
  fails(t, 'FROM x\nCOPY --from=a --from=b a c\n', 'Dockerfile:2: duplicate flag specified: --from');
  fails(t, 'FROM x\nCOPY <<EOF /x\nhi\nEOF\n', 'Dockerfile:2: heredocs (<<EOF) are not supported');
});

t.test('ENV and LABEL: key=value pairs with quotes, legacy form, errors', async (t) => {
  t.same(one('ENV A=1 B="two words" C=\'$lit\' D=a\\ b E='), {
    kind: 'env',
    line: 2,
    original: 'ENV A=1 B="two words" C=\'$lit\' D=a\\ b E=',
    pairs: [
      { key: 'A', value: '1' },
      { key: 'B', value: '"two words"' },
      { key: 'C', value: "'$lit'" },
      { key: 'D', value: 'a\\ b' },
      { key: 'E', value: '' },
    ],
  });
  t.same((one('ENV PATH /usr/local/bin:$PATH  and more') as { pairs: unknown }).pairs, [
    { key: 'PATH', value: '/usr/local/bin:$PATH  and more' },
  ]);
  t.same((one('LABEL "com.example.vendor"="ACME Inc" version=1.0') as { pairs: unknown }).pairs, [
    { key: '"com.example.vendor"', value: '"ACME Inc"' },
    { key: 'version', value: '1.0' },
  ]);
  t.same((one('LABEL description some text') as { pairs: unknown }).pairs, [
    { key: 'description', value: 'some text' },
  ]);
  fails(t, 'FROM x\nENV\n', 'Dockerfile:2: ENV requires at least one argument');
  fails(t, 'FROM x\nENV ONLYKEY\n', 'Dockerfile:2: ENV must have two arguments');
  fails(
    t,
    'FROM x\nENV a=1 b\n',
    'Dockerfile:2: Syntax error - can\'t find = in "b". Must be of the form: name=value',
  );
  fails(t, 'FROM x\nLABEL =v\n', 'Dockerfile:2: LABEL names can not be blank');
});

t.test('MAINTAINER becomes the label maintainer, its text literal', async (t) => {
  const m = one(`MAINTAINER Jane "JD" O'Neil <jane@$HOST>`);
  t.equal(m.kind, 'label');
  t.equal(m.original, `MAINTAINER Jane "JD" O'Neil <jane@$HOST>`);
  if (m.kind !== 'label') return;
  t.equal(m.pairs[0]?.key, 'maintainer');
  const value = expandValue(m.pairs[0]?.value ?? '', { HOST: 'nope' });
  t.equal(value, `Jane "JD" O'Neil <jane@$HOST>`);
  const bt = parseDockerfile("# escape=`\nFROM x\nMAINTAINER a'b $c\n").stages[0]?.instructions[0];
  t.equal(bt?.kind === 'label' ? expandValue(bt.pairs[0]?.value ?? '', {}, '`') : '', "a'b $c");
});

t.test('WORKDIR, USER, STOPSIGNAL, EXPOSE, VOLUME', async (t) => {
  t.same(one('WORKDIR /my app/$DIR'), {
    kind: 'workdir',
    line: 2,
    original: 'WORKDIR /my app/$DIR',
    path: '/my app/$DIR',
  });
  t.match(one('USER app:staff'), { kind: 'user', user: 'app:staff' });
  t.match(one('STOPSIGNAL SIGQUIT'), { kind: 'stopsignal', signal: 'SIGQUIT' });
  t.match(one('EXPOSE 80 443/tcp   53/udp $P'), { kind: 'expose', ports: ['80', '443/tcp', '53/udp', '$P'] });
  t.match(one('VOLUME ["/data", "/var/log x"]'), { kind: 'volume', paths: ['/data', '/var/log x'] });
  t.match(one('VOLUME /a /b'), { kind: 'volume', paths: ['/a', '/b'] });
  fails(t, 'FROM x\nEXPOSE 80/xyz\n', 'Dockerfile:2: invalid port specification: "80/xyz"');
  fails(t, 'FROM x\nEXPOSE 70000\n', 'Dockerfile:2: invalid port specification: "70000"');
  fails(t, 'FROM x\nWORKDIR\n', 'Dockerfile:2: WORKDIR requires exactly one argument');
  fails(t, 'FROM x\nVOLUME\n', 'Dockerfile:2: VOLUME requires at least one argument');
  fails(t, 'FROM x\nUSER --x=1 a\n', 'Dockerfile:2: unknown flag: x');
  t.same(exposedPorts('8000-8002/UDP'), ['8000/udp', '8001/udp', '8002/udp']);
  t.same(exposedPorts('80'), ['80/tcp']);
  t.throws(() => exposedPorts('80-70'), {
    code: 'invalid_argument',
    message: 'invalid port specification: "80-70"',
  });
});

t.test('HEALTHCHECK: NONE, CMD forms, durations in nanoseconds, errors', async (t) => {
  t.same(one('HEALTHCHECK NONE'), {
    kind: 'healthcheck',
    line: 2,
    original: 'HEALTHCHECK NONE',
    test: ['NONE'],
    interval: 0,
    timeout: 0,
    startPeriod: 0,
    startInterval: 0,
    retries: 0,
  });
  t.same(
    one(
      'HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2h --start-interval=1.5s --retries=3 CMD curl -f http://localhost/ || exit 1',
    ),
    {
      kind: 'healthcheck',
      line: 2,
      original:
        'HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2h --start-interval=1.5s --retries=3 CMD curl -f http://localhost/ || exit 1',
      test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'],
      interval: 90_000_000_000,
      timeout: 500_000_000,
      startPeriod: 7_200_000_000_000,
      startInterval: 1_500_000_000,
      retries: 3,
    },
  );
  t.match(one('healthcheck --interval=30s cmd ["/bin/check", "-q"]'), {
    test: ['CMD', '/bin/check', '-q'],
    interval: 30_000_000_000,
    timeout: 0,
  });
  t.match(one('HEALTHCHECK --interval=0 CMD true'), { interval: 0 }, '0 means inherit');
  fails(
    t,
    'FROM x\nHEALTHCHECK --interval=30 CMD true\n',
    'Dockerfile:2: HEALTHCHECK --interval: missing unit in duration "30"',
  );
  fails(
    t,
    'FROM x\nHEALTHCHECK --timeout=5x CMD true\n',
    'Dockerfile:2: HEALTHCHECK --timeout: unknown unit "x" in duration "5x"',
  );
  fails(
    t,
    'FROM x\nHEALTHCHECK --interval=10us CMD true\n',
    'Dockerfile:2: HEALTHCHECK --interval cannot be less than 1ms',
  );
  fails(t, 'FROM x\nHEALTHCHECK --retries=-1 CMD true\n', 'Dockerfile:2: --retries cannot be negative (-1)');
  fails(t, 'FROM x\nHEALTHCHECK --bogus=1 CMD true\n', 'Dockerfile:2: unknown flag: bogus');
  fails(t, 'FROM x\nHEALTHCHECK CMD\n', 'Dockerfile:2: Missing command after HEALTHCHECK CMD');
  fails(t, 'FROM x\nHEALTHCHECK NONE extra\n', 'Dockerfile:2: HEALTHCHECK NONE takes no arguments');
  fails(t, 'FROM x\nHEALTHCHECK RUN true\n', 'Dockerfile:2: Unknown type "RUN" in HEALTHCHECK (try CMD)');
});

t.test('parseDuration follows Go', async (t) => {
  t.equal(parseDuration('30s'), 30e9);
  t.equal(parseDuration('1m30s'), 90e9);
  t.equal(parseDuration('500ms'), 5e8);
  t.equal(parseDuration('1h2m3s4ms5us6ns'), 3_723_004_005_006);
  t.equal(parseDuration('.5s'), 5e8);
  t.equal(parseDuration('1.s'), 1e9);
  t.equal(parseDuration('2µs'), 2000);
  t.equal(parseDuration('-1.5m'), -90e9);
  t.equal(parseDuration('0'), 0);
  for (const bad of ['', '30', 's', '.s', '1sec', '-', '1.5.5s', '9999999999h']) {
    t.throws(() => parseDuration(bad), `rejects ${JSON.stringify(bad)}`);
  }
});

t.test('errors carry the file and line', async (t) => {
  fails(t, 'FROM x\n\nRUNN make\n', 'Dockerfile:3: unknown instruction: RUNN');
  fails(t, 'FROM x\nfoo bar\n', 'ctx/Dockerfile.dev:2: unknown instruction: foo', 'ctx/Dockerfile.dev');
  fails(t, 'RUN x\nFROM y\n', 'Dockerfile:1: no build stage in current context');
  fails(t, '# only a comment\n\n', 'Dockerfile:1: file with no instructions');
  fails(t, 'ARG A=1\n', 'Dockerfile:1: no build stage: the file has no FROM');
  fails(t, 'FROM a b\n', 'Dockerfile:1: FROM requires either one or three arguments');
  fails(
    t,
    'FROM a AS 1st\n',
    `Dockerfile:1: invalid name for build stage: "1st", name can't start with a number or contain symbols`,
  );
  fails(t, 'FROM a AS x\nFROM b AS X\n', 'Dockerfile:2: duplicate stage name "x"');
  fails(t, 'FROM a\nONBUILD RUN x\n', 'Dockerfile:2: ONBUILD is not supported');
  fails(t, 'FROM --bogus=1 a\n', 'Dockerfile:1: unknown flag: bogus');
  const e = t.throws(() => parseDockerfile('FROM x\nFOO\n'));
  t.ok(e instanceof TsswarmError && e.httpStatus === 400, 'a user error (invalid_argument)');
});

t.test('stageIndex / findStage', async (t) => {
  const df: Dockerfile = parseDockerfile('FROM a AS Builder\nFROM b\nFROM c AS out\n');
  t.equal(stageIndex(df, 'builder'), 0);
  t.equal(stageIndex(df, 'BUILDER'), 0);
  t.equal(stageIndex(df, 'out'), 2);
  t.equal(stageIndex(df, '1'), 1);
  t.equal(findStage(df, '3'), undefined);
  t.equal(findStage(df, 'alpine:3'), undefined);
  t.throws(() => stageIndex(df, 'nope'), {
    code: 'invalid_argument',
    message: 'target stage "nope" could not be found',
  });
  t.throws(() => stageIndex(df, '7'), { message: 'target stage "7" could not be found' });
});

t.test('expandValue: $VAR, ${VAR}, defaults and alternatives, undefined → empty', async (t) => {
  const v = { A: 'alpha', EMPTY: '', SP: 'x  y' };
  const x = (s: string) => expandValue(s, v);
  t.equal(x('$A'), 'alpha');
  t.equal(x('${A}_1'), 'alpha_1');
  t.equal(x('$A_1'), '', 'the name runs on: A_1 is undefined');
  t.equal(x('pre-$NOPE-post'), 'pre--post');
  t.equal(x('${NOPE}'), '');
  t.equal(x('${NOPE:-dflt}'), 'dflt');
  t.equal(x('${EMPTY:-dflt}'), 'dflt', ':- also for empty');
  t.equal(x('${EMPTY-dflt}'), '', '- only for unset');
  t.equal(x('${NOPE-dflt}'), 'dflt');
  t.equal(x('${A:-dflt}'), 'alpha');
  t.equal(x('${A:+alt}'), 'alt');
  t.equal(x('${EMPTY:+alt}'), '', ':+ not for empty');
  t.equal(x('${EMPTY+alt}'), 'alt', '+ for set, even empty');
  t.equal(x('${NOPE+alt}'), '');
  t.equal(x('${NOPE:-$A/${EMPTY:-z}}'), 'alpha/z', 'nested');
  t.equal(x('${NOPE:-a b}'), 'a b');
  t.equal(x('${NOPE:-\\}}'), '}');
  t.equal(x('$'), '$');
  t.equal(x('a$ b$/'), 'a$ b$/');
  t.equal(x('$1x'), 'x', 'positional parameters are empty');
  t.equal(x('$SP'), 'x  y', 'whitespace kept');
  t.equal(x('$constructor${toString}'), '', 'no prototype lookups');
  t.equal(expand('${A}', v), 'alpha', 'expand is expandValue');
  t.throws(() => x('${A'), { code: 'invalid_argument', message: "syntax error: missing '}'" });
  t.throws(() => x('${}'), { message: 'syntax error: bad substitution' });
  t.throws(() => x('${A:=x}'), { message: 'unsupported modifier (=) in substitution' });
  t.throws(() => x('${A%x}'), { message: 'unsupported modifier (%) in substitution' });
  t.throws(() => x('${NOPE:?must be set}'), { message: 'NOPE: must be set' });
  t.throws(() => x('${NOPE?}'), { message: 'NOPE: is not allowed to be unset' });
  t.equal(x('${EMPTY?}'), '');
});

t.test('expandValue: quotes and escapes', async (t) => {
  const v = { A: 'alpha' };
  const x = (s: string, esc = '\\') => expandValue(s, v, esc);
  t.equal(x('\\$A'), '$A', 'escaped dollar stays literal');
  t.equal(x("'$A'"), '$A', 'single quotes: no expansion');
  t.equal(x('"$A"'), 'alpha', 'double quotes: expansion');
  t.equal(
    x('"a \\"q\\" \\$A \\\\ \\n"'),
    'a "q" $A \\ \\n',
    'in double quotes only " $ and the escape are escaped',
  );
  t.equal(x("'a\\b'"), 'a\\b', 'no escapes in single quotes');
  t.equal(x('"it\'s"'), "it's");
  t.equal(x('a\\ b'), 'a b');
  t.equal(x('x\\'), 'x', 'an escape at the end is dropped');
  t.equal(x('pre"$A"\'$A\'$A'), 'prealpha$Aalpha');
  t.equal(x('`$A \\x', '`'), '$A \\x', 'with escape=` the backslash is literal');
  t.equal(x('C:\\dir\\$A', '`'), 'C:\\dir\\alpha');
  t.throws(() => x('"open'), {
    message: 'unexpected end of statement while looking for matching double-quote',
  });
  t.throws(() => x("'open"), {
    message: 'unexpected end of statement while looking for matching single-quote',
  });
});

t.test('expandWords: quote-aware splitting, unquoted variables split', async (t) => {
  const v = { P: '80 443', Q: 'one' };
  t.same(expandWords('a "b c"  d\\ e', v), ['a', 'b c', 'd e']);
  t.same(expandWords('$P 53/udp', v), ['80', '443', '53/udp']);
  t.same(expandWords('"$P"', v), ['80 443']);
  t.same(expandWords('x$Q"y z"', v), ['xoney z']);
  t.same(expandWords('$NOPE a', v), ['a']);
  t.same(expandWords('""', v), ['']);
  t.same(expandWords('   ', v), []);
});

t.test('EXPANDS and expandInstruction', async (t) => {
  for (const k of [
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
  ] as const) {
    t.ok(EXPANDS.has(k), k);
  }
  for (const k of ['run', 'cmd', 'entrypoint', 'shell', 'healthcheck'] as const) t.notOk(EXPANDS.has(k), k);

  const df = parseDockerfile(
    [
      'FROM x',
      'COPY --from=$S --chown=${U}:${U} "$SRC" \'$lit\' /dst/$U/',
      'ENV A=$U B="${U} x" C=\'${U}\'',
      'EXPOSE $PORTS 53/udp',
      'WORKDIR /home/$U',
      'RUN echo $U',
      'ARG Z=${U:-n}',
      'LABEL k-$U=v',
      'VOLUME $U /v',
      'USER $U',
      'STOPSIGNAL $SIG',
    ].join('\n'),
  );
  const vars = { S: 'build', U: 'app', SRC: 'a b', PORTS: '80 443', SIG: 'SIGINT' };
  const got = (df.stages[0]?.instructions ?? []).map((i) => expandInstruction(i, vars, df.escape));
  t.match(got[0], {
    kind: 'copy',
    from: 'build',
    chown: 'app:app',
    sources: ['a b', '$lit'],
    dest: '/dst/app/',
  });
  t.same(got[1]?.kind === 'env' && got[1].pairs, [
    { key: 'A', value: 'app' },
    { key: 'B', value: 'app x' },
    { key: 'C', value: '${U}' },
  ]);
  t.match(got[2], { ports: ['80', '443', '53/udp'] });
  t.match(got[3], { path: '/home/app' });
  t.equal(got[4], df.stages[0]?.instructions[4], 'RUN is returned as it is');
  t.match(got[5], { args: [{ name: 'Z', default: 'app' }] });
  t.match(got[6], { pairs: [{ key: 'k-app', value: 'v' }] });
  t.match(got[7], { paths: ['app', '/v'] });
  t.match(got[8], { user: 'app' });
  t.match(got[9], { signal: 'SIGINT' });
  t.match(
    df.stages[0]?.instructions[0],
    { sources: ['"$SRC"', "'$lit'"] },
    'the parsed instruction is unchanged',
  );
});
