import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadTestImages } from './lib/fixtures.js';
import { runCli, startTestDaemon, uniquePrefix } from './lib/harness.js';

t.test('bad input gets a one-line error, a non-zero exit and leaves nothing behind', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  await d.cli(['container', 'run', '-d', '--name', 'taken', 'busybox:test', 'sleep', '300']);
  await d.cli(['container', 'create', '--name', 'stopped', 'busybox:test', 'true']);

  const good = await fs.readFile(join(d.dir, 'images', 'both.oci.tar'));
  await fs.writeFile(join(d.dir, 'truncated.tar'), good.subarray(0, Math.floor(good.length / 2)));
  await fs.writeFile(join(d.dir, 'garbage.tar'), 'this is not an archive at all\n'.repeat(100));

  const baseId = JSON.parse((await d.cli(['image', 'inspect', 'busybox:test'])).stdout)[0].id as string;
  const ctx = join(d.dir, 'ctx');
  await fs.mkdir(ctx);
  await fs.writeFile(join(ctx, 'Dockerfile'), 'FROM busybox:test\n');
  const cases: Array<[string, string[], RegExp]> = [
    ['pull: malformed reference', ['image', 'pull', 'bad//name:1'], /invalid reference format/],
    [
      'pull: malformed platform',
      ['image', 'pull', '--platform', 'amd64', 'busybox'],
      /invalid platform "amd64"/,
    ],
    ['push: unknown image', ['image', 'push', '127.0.0.1:1/nosuch:1'], /no such image/],
    ['login: no password', ['login', '127.0.0.1:1', '-u', 'someone'], /login needs a password/],
    [
      'login: no registry there',
      ['login', '127.0.0.1:1', '-u', 'a', '-p', 'b'],
      /cannot reach registry 127\.0\.0\.1:1/,
    ],
    ['build: missing context', ['build', join(d.dir, 'nope')], /is not a directory/],
    ['build: no Dockerfile', ['build', d.dir], /cannot find the Dockerfile/],
    ['build: malformed --build-arg', ['build', '--build-arg', '=x', ctx], /invalid --build-arg "=x"/],
    ['build: malformed tag', ['build', '-t', 'Bad Tag', ctx], /invalid reference format/],
    [
      'truncated archive',
      ['image', 'load', '-i', join(d.dir, 'truncated.tar')],
      /invalid image archive|truncated|unexpected end/i,
    ],
    [
      'garbage archive',
      ['image', 'load', '-i', join(d.dir, 'garbage.tar')],
      /invalid image archive|not a tar/i,
    ],
    ['missing archive file', ['image', 'load', '-i', join(d.dir, 'nope.tar')], /no such file/],
    ['unknown image', ['container', 'run', '--rm', 'nosuch:image', 'true'], /no such image: nosuch:image/],
    [
      'bad memory size',
      ['container', 'run', '--rm', '-m', '10X', 'busybox:test', 'true'],
      /invalid size: "10X"/,
    ],
    [
      'memory below 6 MB',
      ['container', 'run', '--rm', '-m', '4m', 'busybox:test', 'true'],
      /Minimum memory limit allowed is 6MB/,
    ],
    [
      'memory-swap below memory',
      ['container', 'run', '--rm', '-m', '64m', '--memory-swap', '32m', 'busybox:test', 'true'],
      /Minimum memoryswap limit should be larger than memory limit/,
    ],
    [
      'missing device for a bps limit',
      ['container', 'run', '--rm', '--device-write-bps', '/dev/nope:1mb', 'busybox:test', 'true'],
      /\/dev\/nope: no such file or directory/,
    ],
    [
      'bad bps rate',
      ['container', 'run', '--rm', '--device-write-bps', '/dev/null:fast', 'busybox:test', 'true'],
      /invalid|fast/,
    ],
    [
      'too many cpus',
      ['container', 'run', '--rm', '--cpus', '999', 'busybox:test', 'true'],
      /range of CPUs is from 0\.01 to/,
    ],
    [
      'bad blkio weight',
      ['container', 'run', '--rm', '--blkio-weight', '5', 'busybox:test', 'true'],
      /blkio-weight|weight/i,
    ],
    [
      'name in use',
      ['container', 'run', '--name', 'taken', 'busybox:test', 'true'],
      /name "taken" is already in use/,
    ],
    [
      'bad name',
      ['container', 'run', '--name', 'bad name!', 'busybox:test', 'true'],
      /invalid container name/,
    ],
    ['exec into a stopped container', ['container', 'exec', 'stopped', 'true'], /is not running/],
    ['unknown container', ['container', 'stop', 'ghost'], /no such container: ghost/],
    [
      'bad --userns',
      ['container', 'run', '--rm', '--userns', 'everyone', 'busybox:test', 'true'],
      /invalid --userns/,
    ],
    [
      'unknown capability',
      ['container', 'run', '--rm', '--cap-add', 'FLY', 'busybox:test', 'true'],
      /unknown capability/,
    ],
    ['unknown signal', ['container', 'kill', '-s', 'SIGNOPE', 'taken'], /invalid signal/],
    [
      'unknown user',
      ['container', 'run', '--rm', '-u', 'nobody-here', 'busybox:test', 'true'],
      /unable to find user nobody-here/,
    ],
    ['image in use', ['image', 'rm', baseId], /in use|used by/i],
    ['unknown flag', ['container', 'run', '--bogus', 'busybox:test'], /unknown option '--bogus'/],
  ];
  const before = (await d.cli(['container', 'ps', '-a', '-q'])).stdout;
  for (const [what, args, message] of cases) {
    await t.test(what, async (t) => {
      const r = await d.cli(args);
      t.not(r.code, 0, 'non-zero exit');
      t.match(r.stderr, message);
      t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
      t.equal(r.stdout, '', 'nothing on stdout');
    });
  }
  t.equal(
    (await d.cli(['container', 'ps', '-a', '-q'])).stdout,
    before,
    'no container was created by bad input',
  );
  await d.cli(['container', 'rm', '-f', 'taken', 'stopped']);
  t.same(await d.leftovers(), [], 'no mount, cgroup, process or bundle left');
  const tmp = (await fs.readdir(join(d.dataRoot, 'tmp')).catch(() => [] as string[])).length;
  t.equal(tmp, 0, 'no partial upload left');
});

t.test('without a daemon the CLI says so', async (t) => {
  const sock = `/tmp/${uniquePrefix()}-none.sock`;
  const r = await runCli(['-H', `unix://${sock}`, 'container', 'ps']);
  t.equal(r.code, 125);
  t.match(r.stderr, /cannot connect to the tsswarm daemon at unix:\/\/.*: is `tsswarm daemon` running\?/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
});
