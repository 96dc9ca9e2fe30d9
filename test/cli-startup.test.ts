/**
 * The CLI runs once per command, so what it loads at start is its start-up time: commands that
 * only talk to the daemon must not load the engine, the daemon, the stack file reader or the
 * big libraries (they are loaded by the commands that use them).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { CLI, REPO } from './lib/harness.js';

const HOOK = pathToFileURL(join(REPO, 'dist', 'test', 'lib', 'loadTrace.js')).href;
// ES modules are seen by the hook; CommonJS ones (a createRequire'd node-cron, a package's own
// requires) are listed from the require cache when the CLI exits
const REGISTER = `data:text/javascript,${encodeURIComponent(
  `import { createRequire, register } from 'node:module';
import { writeSync } from 'node:fs';
register(${JSON.stringify(HOOK)});
process.on('exit', () => {
  for (const f of Object.keys(createRequire('/').cache)) writeSync(2, 'LOADED file://' + f + '\\n');
});`,
)}`;

function loadedBy(args: string[]): string[] {
  const r = spawnSync(process.execPath, ['--import', REGISTER, CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('LOADED '))
    .map((l) => l.slice('LOADED '.length));
}

const heavy = [
  /\/dist\/src\/engine\/engine\.js$/,
  /\/dist\/src\/daemon\//,
  /\/dist\/src\/manager\/stack\/(load|normalize|schema|render)\.js$/,
  /\/node_modules\/(yaml|ajv|tar|undici|etcd3|fastify|node-cron|consul)\//,
];

for (const args of [
  ['--help'],
  ['service', 'ls', '--help'],
  ['-H', 'unix:///nonexistent.sock', 'node', 'ls'],
]) {
  t.test(`tsswarm ${args.join(' ')} loads none of the heavy modules`, async (t) => {
    const loaded = loadedBy(args);
    t.ok(
      loaded.some((u) => u.endsWith('/dist/src/cli/main.js')),
      'the trace sees the CLI (the hook works)',
    );
    t.same(
      loaded.filter((u) => heavy.some((h) => h.test(u))),
      [],
      'no engine, daemon, stack reader, yaml, ajv, tar, undici, etcd3, fastify, node-cron or consul',
    );
  });
}

t.test('a command that reads a stack file loads the reader then', async (t) => {
  const loaded = loadedBy(['stack', 'config', '-c', join(REPO, 'stacks', 'hello.yml')]);
  t.ok(
    loaded.some((u) => u.endsWith('/dist/src/manager/stack/load.js')),
    'stack config loads the stack reader',
  );
  t.ok(
    loaded.some((u) => /\/node_modules\/yaml\//.test(u)),
    'and yaml',
  );
});
