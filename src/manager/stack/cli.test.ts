// biome-ignore-all lint/suspicious/noTemplateCurlyInString: stack files write ${VAR} literally
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';

// `tsswarm stack config` as a user runs it: the compiled CLI, no daemon anywhere.
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(repo, 'dist/src/cli/main.js');
const tmp = await mkdtemp('/tmp/tsswarm-test-');
t.teardown(() => rm(tmp, { recursive: true, force: true }));

function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: tmp,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    child.on('error', fail);
    child.on('close', (code) => done({ code: code ?? -1, out, err }));
  });
}

const good = join(tmp, 'good.yml');
const override = join(tmp, 'override.yml');
const bad = join(tmp, 'bad.yml');
await writeFile(
  good,
  'services:\n  web:\n    image: busybox:${TAG:-latest}\n    volumes: [data:/data]\n    deploy:\n      replicas: 2\n',
);
await writeFile(override, 'services:\n  web:\n    deploy:\n      replicas: 4\n');
await writeFile(
  bad,
  'services:\n  web:\n    image: busybox\n    deploy:\n      replicas: three\n  db:\n    imagee: x\n',
);

t.test('stack config prints the normalised stack as JSON, warnings on stderr', async (t) => {
  const r = await run(['stack', 'config', '-c', good, '--format', 'json', 'demo'], { TAG: '1.36' });
  t.equal(r.code, 0, r.err);
  const stack = JSON.parse(r.out);
  t.equal(stack.name, 'demo');
  t.equal(stack.services.web.name, 'demo_web');
  t.equal(stack.services.web.image, 'busybox:1.36', 'interpolated from the environment');
  t.equal(stack.services.web.deploy.replicas, 2);
  t.equal(stack.services.web.deploy.updateConfig.monitorMs, 5000, 'defaults filled');
  t.equal(r.err, `WARNING: ${good}:4: services.web.volumes: not supported by tsswarm yet; ignored\n`);
});

t.test('YAML by default; repeated -c merges, later files win', async (t) => {
  const r = await run(['stack', 'config', '-c', good, '-c', override]);
  t.equal(r.code, 0, r.err);
  const stack = parse(r.out);
  t.equal(stack.name, basename(tmp).toLowerCase(), 'named after the directory');
  t.equal(stack.services.web.deploy.replicas, 4);
  t.equal(stack.services.web.image, 'busybox:latest');
});

t.test('errors: every problem with FILE:LINE, exit 125, nothing on stdout', async (t) => {
  const r = await run(['stack', 'config', '-c', bad, '--format', 'json', 'x']);
  t.equal(r.code, 125);
  t.equal(r.out, '');
  t.equal(r.err, `tsswarm: ${bad}:7: services.db: unknown key "imagee"; did you mean "image"?\n`);

  await writeFile(bad, 'services:\n  web:\n    image: busybox\n    deploy:\n      replicas: three\n');
  const r2 = await run(['stack', 'config', '-c', bad, 'x']);
  t.equal(r2.code, 125);
  t.equal(r2.err, `tsswarm: ${bad}:5: services.web.deploy.replicas: must be integer (got "three")\n`);

  const missing = await run(['stack', 'config', '-c', join(tmp, 'nope.yml')]);
  t.equal(missing.code, 125);
  t.match(missing.err, /^tsswarm: stack file .*nope\.yml not found\n$/);

  const noFile = await run(['stack', 'config']);
  t.equal(noFile.code, 125);
  t.match(noFile.err, /required option '-c, --compose-file <file>'/);

  const format = await run(['stack', 'config', '-c', good, '--format', 'xml']);
  t.equal(format.code, 125);
  t.match(format.err, /Allowed choices are yaml, json/);
});

t.test('the example stacks pass', async (t) => {
  for (const f of ['web', 'jobs']) {
    const r = await run(['stack', 'config', '-c', join(repo, 'stacks', `${f}.yml`), '--format', 'json', f]);
    t.equal(r.code, 0, r.err);
    t.equal(r.err, '', `${f}.yml: no warnings`);
    t.equal(JSON.parse(r.out).name, f);
  }
});
