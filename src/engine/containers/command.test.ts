import t from 'tap';
import { mergeEnv, parseUserns, resolveCommand } from './command.js';

t.test('ENTRYPOINT and CMD combine as Docker combines them', async (t) => {
  const img = { Entrypoint: ['/bin/ep'], Cmd: ['--default'] };
  t.same(resolveCommand(img, {}), { path: '/bin/ep', args: ['--default'] });
  t.same(resolveCommand(img, { cmd: ['x', 'y'] }), { path: '/bin/ep', args: ['x', 'y'] });
  t.same(resolveCommand(img, { entrypoint: '/bin/other' }), { path: '/bin/other', args: [] });
  t.same(resolveCommand(img, { entrypoint: '/bin/other', cmd: ['a'] }), { path: '/bin/other', args: ['a'] });
  t.same(resolveCommand({ Cmd: ['sh'] }, {}), { path: 'sh', args: [] });
  t.same(resolveCommand({ Entrypoint: ['/bin/ep'], Cmd: ['c'] }, { entrypoint: '', cmd: ['ls'] }), {
    path: 'ls',
    args: [],
  });
  // shell form stays a shell: run arguments become $0.. of `sh -c`, as in Docker
  t.same(resolveCommand({ Entrypoint: ['/bin/sh', '-c', 'echo hi'] }, { cmd: ['ignored'] }), {
    path: '/bin/sh',
    args: ['-c', 'echo hi', 'ignored'],
  });
  t.throws(() => resolveCommand({}, {}), /no command specified/);
});

t.test('environment merges by key', async (t) => {
  t.same(mergeEnv(['PATH=/bin', 'A=1'], ['A=2', 'B=3']), ['PATH=/bin', 'A=2', 'B=3']);
  t.throws(() => mergeEnv(['=x']), /invalid environment variable/);
});

t.test('--userns parses and refuses bad maps', async (t) => {
  t.same(parseUserns('0:100000:65536'), { containerId: 0, hostId: 100000, size: 65536 });
  t.throws(() => parseUserns('0:100000'), /expected CONTAINER_ID:HOST_ID:SIZE/);
  t.throws(() => parseUserns('0:1:0'), /size must be at least 1/);
});

t.test('capabilities follow --cap-add/--cap-drop', async (t) => {
  const { resolveCapabilities, DEFAULT_CAPABILITIES } = await import('./capabilities.js');
  t.same(resolveCapabilities().sort(), [...DEFAULT_CAPABILITIES].sort());
  t.ok(resolveCapabilities(['net_admin']).includes('CAP_NET_ADMIN'));
  t.notOk(resolveCapabilities([], ['chown']).includes('CAP_CHOWN'));
  t.same(resolveCapabilities(['CAP_KILL'], ['ALL']), ['CAP_KILL']);
  t.throws(() => resolveCapabilities(['CAP_NOPE']), /unknown capability: "CAP_NOPE"/);
});
