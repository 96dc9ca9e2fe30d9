/**
 * `tsswarm build` against a real daemon: a multi-stage Dockerfile whose image runs, every
 * config instruction, .dockerignore, --chown, ADD of a local tar, the cache rules (all cached;
 * a changed file rebuilds its COPY and what follows; a changed build arg rebuilds its RUN;
 * --no-cache), --target, and errors pointing at their Dockerfile line.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { hostPlatform } from '../src/engine/images/oci.js';
import { startTestDaemon, type TestDaemon } from './lib/harness.js';
import { loadImagesOn } from './lib/hosts.js';

const DOCKERFILE = `# syntax=docker/dockerfile:1
ARG BASE=busybox:test
FROM \${BASE} AS builder
ARG GREETING=hello
WORKDIR /src
COPY greet.txt .
RUN echo "$GREETING from RUN" > /src/out.txt && \\
    cat greet.txt >> /src/out.txt
RUN echo built-by-step-two > /src/two.txt

FROM busybox:test
LABEL org.example.built=yes org.example.stage="final"
ENV APP_HOME=/app
WORKDIR $APP_HOME
COPY --from=builder /src/out.txt ./
COPY --chown=1000:1000 data/ ./data/
ADD archive.tar.gz /opt/
COPY . /ctx/
COPY greet.txt /tmp/
EXPOSE 8080/tcp 53/udp
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
VOLUME /var/data
ENTRYPOINT ["cat"]
CMD ["/app/out.txt"]
`;

async function ok(d: TestDaemon, args: string[]) {
  const r = await d.cli(args, { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`tsswarm ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The build's steps in order: 'cache' or 'run' for each instruction after a FROM. */
function stepsOf(out: string): Array<{ step: string; cached: boolean }> {
  const steps: Array<{ step: string; cached: boolean }> = [];
  const lines = out.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^Step \d+\/\d+ : (.*)$/.exec(lines[i]!);
    if (!m || /^FROM /i.test(m[1]!)) continue;
    if (/^ARG /i.test(m[1]!)) continue;
    steps.push({ step: m[1]!, cached: lines[i + 1] === ' ---> Using cache' });
  }
  return steps;
}

t.test('multi-stage build, config instructions, cache rules, errors with their line', async (t) => {
  const d = await startTestDaemon(t);
  await loadImagesOn(d);
  const ctx = join(d.dir, 'ctx');
  await fs.mkdir(join(ctx, 'data'), { recursive: true });
  await fs.mkdir(join(ctx, 'secret'), { recursive: true });
  await fs.writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
  await fs.writeFile(join(ctx, 'greet.txt'), 'greetings v1\n');
  await fs.writeFile(join(ctx, 'data', 'a.txt'), 'a\n');
  await fs.writeFile(join(ctx, 'secret', 'key'), 'do not send\n');
  await fs.writeFile(join(ctx, 'notes.md'), 'ignored\n');
  await fs.writeFile(join(ctx, 'keep.md'), 'kept by an exception\n');
  await fs.writeFile(join(ctx, '.dockerignore'), 'secret/\n*.md\n!keep.md\n');
  const tarSrc = join(d.dir, 'tarsrc');
  await fs.mkdir(join(tarSrc, 'pkg'), { recursive: true });
  await fs.writeFile(join(tarSrc, 'pkg', 'inside.txt'), 'from the archive\n');
  execFileSync('tar', ['-czf', join(ctx, 'archive.tar.gz'), '-C', tarSrc, 'pkg']);

  const first = await ok(d, ['build', '-t', 'built:1', ctx]);
  t.match(first, /Step 1\/\d+ : ARG BASE=busybox:test/, 'steps are printed');
  t.match(first, /Successfully built [a-f0-9]{12}/);
  t.match(first, /Successfully tagged built:1/);
  t.ok(
    stepsOf(first).every((s) => !s.cached),
    'nothing cached on the first build',
  );

  // the image runs: ENTRYPOINT + CMD, the RUN output copied from the first stage
  const run = await ok(d, ['container', 'run', '--rm', 'built:1']);
  t.equal(run, 'hello from RUN\ngreetings v1\n', 'multi-stage image runs');
  t.equal(
    await ok(d, ['container', 'run', '--rm', 'built:1', '/opt/pkg/inside.txt']),
    'from the archive\n',
    'run arguments replace CMD; ADD unpacked the tar',
  );
  const owners = await ok(d, [
    'container',
    'run',
    '--rm',
    '--entrypoint',
    'stat',
    'built:1',
    '-c',
    '%u:%g %n',
    '/app/data/a.txt',
    '/app/out.txt',
  ]);
  t.equal(owners, '1000:1000 /app/data/a.txt\n0:0 /app/out.txt\n', '--chown applies; COPY defaults to root');
  t.equal(
    await ok(d, ['container', 'run', '--rm', '--entrypoint', 'stat', 'built:1', '-c', '%a %u', '/tmp']),
    '1777 0\n',
    'a COPY into /tmp leaves its mode alone',
  );
  const ctxList = await ok(d, ['container', 'run', '--rm', '--entrypoint', 'ls', 'built:1', '-a', '/ctx']);
  t.notMatch(ctxList, /secret|notes\.md/, '.dockerignore keeps files out of the context');
  t.match(ctxList, /keep\.md/, 'an exception brings one back');

  const cfg = JSON.parse(await ok(d, ['image', 'inspect', 'built:1']))[0].config;
  t.same(cfg.Entrypoint, ['cat']);
  t.same(cfg.Cmd, ['/app/out.txt']);
  t.equal(cfg.WorkingDir, '/app');
  t.ok(cfg.Env.includes('APP_HOME=/app'), 'ENV');
  t.same(cfg.Labels, { 'org.example.built': 'yes', 'org.example.stage': 'final' }, 'LABEL');
  t.same(Object.keys(cfg.ExposedPorts).sort(), ['53/udp', '8080/tcp'], 'EXPOSE');
  t.equal(cfg.StopSignal, 'SIGINT');
  t.same(
    cfg.Healthcheck,
    { Test: ['CMD-SHELL', 'true'], Interval: 5e9, Retries: 2 },
    'HEALTHCHECK (shell form) in nanoseconds',
  );
  t.same(Object.keys(cfg.Volumes), ['/var/data'], 'VOLUME');

  // everything cached
  const second = await ok(d, ['build', '-t', 'built:1', ctx]);
  t.ok(
    stepsOf(second).every((s) => s.cached),
    'an unchanged build comes entirely from cache',
  );

  // a file one COPY uses changes: that COPY and everything after it in its stage rebuild
  await fs.writeFile(join(ctx, 'greet.txt'), 'greetings v2\n');
  const third = stepsOf(await ok(d, ['build', '-t', 'built:2', ctx]));
  const idx = third.findIndex((s) => s.step === 'COPY greet.txt .');
  t.ok(idx > 0, 'the COPY step is there');
  t.ok(
    third.slice(0, idx).every((s) => s.cached),
    'steps before the changed COPY come from cache',
  );
  t.ok(
    third.slice(idx, idx + 3).every((s) => !s.cached),
    'the COPY and the RUNs after it rebuild',
  );
  const finalStage = third.slice(idx + 3);
  t.ok(
    finalStage.slice(0, 3).every((s) => s.cached),
    'the second stage is cached up to COPY --from',
  );
  t.notOk(finalStage[3]?.cached, 'COPY --from of the changed file rebuilds');
  t.equal(await ok(d, ['container', 'run', '--rm', 'built:2']), 'hello from RUN\ngreetings v2\n');

  // a build arg is part of its RUN's key
  const withArg = stepsOf(await ok(d, ['build', '--build-arg', 'GREETING=bye', '-t', 'built:3', ctx]));
  const run1 = withArg.find((s) => s.step.startsWith('RUN echo "$GREETING'));
  t.notOk(run1?.cached, 'a changed build arg rebuilds the RUN that sees it');
  t.equal(await ok(d, ['container', 'run', '--rm', 'built:3']), 'bye from RUN\ngreetings v2\n');

  const noCache = stepsOf(await ok(d, ['build', '--no-cache', '-t', 'built:4', ctx]));
  t.ok(
    noCache.every((s) => !s.cached),
    '--no-cache runs every step',
  );

  await ok(d, ['build', '--target', 'builder', '-t', 'stage:builder', ctx]);
  t.equal(
    await ok(d, ['container', 'run', '--rm', 'stage:builder', 'cat', '/src/two.txt']),
    'built-by-step-two\n',
    '--target stops at the stage',
  );

  // errors name the Dockerfile line
  const bad = async (text: string, pattern: RegExp, what: string) => {
    await fs.writeFile(join(ctx, 'Dockerfile.bad'), text);
    const r = await d.cli(['build', '-f', join(ctx, 'Dockerfile.bad'), ctx], { timeoutMs: 120_000 });
    t.not(r.code, 0, `${what}: build fails`);
    t.match(r.stderr, pattern, what);
    return r;
  };
  await bad(
    'FROM busybox:test\nFOO bar\n',
    /Dockerfile\.bad:2: unknown instruction: FOO/i,
    'unknown instruction',
  );
  const failing = await bad(
    'FROM busybox:test\n\nRUN echo about to fail && exit 3\n',
    /Dockerfile\.bad:3: RUN echo about to fail && exit 3 returned a non-zero code: 3/,
    'failing RUN',
  );
  t.match(failing.stdout, /about to fail/, 'its output is shown');
  await bad(
    'FROM busybox:test\nCOPY ../outside /x\n',
    /Dockerfile\.bad:2: COPY failed: forbidden path outside the build context/,
    'COPY outside the context',
  );
  await bad(
    'FROM busybox:test\nCOPY missing.txt /x\n',
    /Dockerfile\.bad:2: COPY failed: file not found in build context/,
    'COPY of a missing file',
  );
  await bad(
    'FROM busybox:test\nCOPY secret/key /x\n',
    /file not found in build context or excluded by \.dockerignore/,
    'COPY of an ignored file',
  );
  await bad(
    'FROM --platform=linux busybox:test\n',
    /Dockerfile\.bad:1: FROM --platform: invalid platform "linux": use os\/arch\[\/variant\]/,
    'FROM --platform that is not os/arch',
  );

  // the automatic platform ARGs: FROM lines see them, a stage once it declares them
  const host = hostPlatform();
  await fs.writeFile(
    join(ctx, 'Dockerfile.platform'),
    'FROM --platform=$BUILDPLATFORM busybox:test\nARG TARGETPLATFORM\nARG TARGETARCH\n' +
      'RUN echo "$TARGETPLATFORM $TARGETARCH [$BUILDARCH]" > /p.txt\nCMD ["cat", "/p.txt"]\n',
  );
  await ok(d, ['build', '-q', '-t', 'plat:1', '-f', join(ctx, 'Dockerfile.platform'), ctx]);
  t.equal(
    await ok(d, ['container', 'run', '--rm', 'plat:1']),
    `${host.os}/${host.architecture} ${host.architecture} []\n`,
    'TARGETPLATFORM and TARGETARCH once declared; BUILDARCH, not declared in the stage, is empty',
  );
  await fs.rm(join(ctx, 'Dockerfile.platform'));

  // a Dockerfile from outside the context, or from stdin: read, and not part of the context
  const elsewhere = join(d.dir, 'elsewhere');
  await fs.mkdir(elsewhere, { recursive: true });
  const listing = 'FROM busybox:test\nCOPY . /c/\nCMD ["ls", "-A", "/c"]\n';
  await fs.writeFile(join(elsewhere, 'Dockerfile.out'), listing);
  await ok(d, ['build', '-q', '-t', 'outside:1', '-f', join(elsewhere, 'Dockerfile.out'), ctx]);
  const contextFiles = (await ok(d, ['container', 'run', '--rm', 'outside:1'])).split('\n').filter(Boolean);
  t.ok(contextFiles.includes('greet.txt'), 'the context was sent', { contextFiles });
  t.notOk(
    contextFiles.some((f) => f === 'Dockerfile.out' || f.startsWith('.tsswarm-dockerfile')),
    'the Dockerfile from outside is not in the context',
    { contextFiles },
  );
  const piped = await d.cli(['build', '-q', '-t', 'stdin:1', '-f', '-', ctx], {
    input: listing,
    timeoutMs: 120_000,
  });
  t.equal(piped.code, 0, piped.stderr);
  t.same(
    (await ok(d, ['container', 'run', '--rm', 'stdin:1'])).split('\n').filter(Boolean),
    contextFiles,
    '-f - reads the Dockerfile from stdin',
  );
  // <Dockerfile>.dockerignore beside the Dockerfile replaces the context's .dockerignore
  await fs.writeFile(join(elsewhere, 'Dockerfile.out.dockerignore'), 'greet.txt\n');
  await ok(d, ['build', '-q', '-t', 'outside:2', '-f', join(elsewhere, 'Dockerfile.out'), ctx]);
  const ownIgnore = (await ok(d, ['container', 'run', '--rm', 'outside:2'])).split('\n').filter(Boolean);
  t.notOk(ownIgnore.includes('greet.txt'), "the Dockerfile's own ignore file applies", { ownIgnore });
  t.ok(
    ownIgnore.includes('notes.md') && ownIgnore.includes('secret'),
    "the context's .dockerignore does not",
    { ownIgnore },
  );
  await fs.writeFile(join(elsewhere, 'Dockerfile.out.dockerignore'), '[z-a]\n');
  const badIgnore = await d.cli(['build', '-f', join(elsewhere, 'Dockerfile.out'), ctx]);
  t.match(
    badIgnore.stderr,
    /Dockerfile\.out\.dockerignore:1: syntax error in pattern "\[z-a\]"/,
    'an error in it names that file',
  );
  await fs.rm(join(elsewhere, 'Dockerfile.out.dockerignore'));
  await fs.mkdir(join(elsewhere, 'Dockerfile.out.dockerignore'));
  const unreadable = await d.cli(['build', '-f', join(elsewhere, 'Dockerfile.out'), ctx]);
  t.match(
    unreadable.stderr,
    /cannot read .*Dockerfile\.out\.dockerignore: EISDIR/,
    'an ignore file that cannot be read stops the build (nothing is sent unfiltered)',
  );
  await fs.rm(join(elsewhere, 'Dockerfile.out.dockerignore'), { recursive: true });
  const badOutside = await d.cli(['build', '-f', '-', ctx], { input: 'FROM busybox:test\nNOPE x\n' });
  t.match(badOutside.stderr, /: Dockerfile:2: unknown instruction: NOPE/, 'its errors name the line');
  const missing = await d.cli(['build', '-f', join(elsewhere, 'none'), ctx]);
  t.match(missing.stderr, /cannot find the Dockerfile .*none: no such file/, 'a missing -f file');

  const target = await d.cli(['build', '--target', 'nope', ctx]);
  t.match(target.stderr, /target stage "nope" could not be found/, 'unknown --target');

  const leftovers = await ok(d, ['container', 'ls', '-a', '-q']);
  t.equal(leftovers.trim(), '', 'no build container is left behind');

  // prune keeps the cache chain of tagged images, removes what nothing needs
  await fs.rm(join(ctx, 'Dockerfile.bad')); // (COPY . /ctx/ sees the context)
  await ok(d, ['image', 'rm', 'built:4']);
  const pruned = await ok(d, ['image', 'prune']);
  t.match(pruned, /Deleted: sha256:/, 'the untagged build chain is pruned');
  const again = stepsOf(await ok(d, ['build', '-t', 'built:1', ctx]));
  t.ok(
    again.every((s) => s.cached),
    'the cache of tagged images survives a prune',
    { steps: again },
  );
});
