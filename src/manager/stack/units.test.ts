import t from 'tap';
import { checkConstraint, parseSpread } from './constraints.js';
import { splitShellWords } from './shellwords.js';
import { closest } from './suggest.js';
import { parseBytes, parseDuration, parseInteger, parseNanoCpus } from './units.js';

const value = <T>(r: { ok: true; value: T } | { ok: false; error: string }) => (r.ok ? r.value : r.error);

t.test('durations', async (t) => {
  t.equal(value(parseDuration('10s')), 10_000);
  t.equal(value(parseDuration('1m30s')), 90_000);
  t.equal(value(parseDuration('500ms')), 500);
  t.equal(value(parseDuration('1.5h')), 5_400_000);
  t.equal(value(parseDuration('2h45m')), 9_900_000);
  t.equal(value(parseDuration('0')), 0);
  t.equal(value(parseDuration('1500us')), 1.5);
  for (const bad of ['10', '10 s', 's', '-1s', '1d', '', 'abc', 5])
    t.notOk(parseDuration(bad).ok, `${bad} refused`);
  t.equal(value(parseDuration('ten')), 'must be a duration such as "10s", "1m30s" or "500ms" (got "ten")');
});

t.test('byte sizes', async (t) => {
  t.equal(value(parseBytes('512M')), 512 * 1024 ** 2);
  t.equal(value(parseBytes('1g')), 1024 ** 3);
  t.equal(value(parseBytes('1024k')), 1024 ** 2);
  t.equal(value(parseBytes('2gb')), 2 * 1024 ** 3);
  t.equal(value(parseBytes('1.5GiB')), 1.5 * 1024 ** 3);
  t.equal(value(parseBytes('100')), 100);
  t.equal(value(parseBytes(4096)), 4096);
  for (const bad of ['1x', 'M', '-1m', '', '1 gigabyte']) t.notOk(parseBytes(bad).ok, `${bad} refused`);
});

t.test('cpus → nano-CPUs, exactly', async (t) => {
  t.equal(value(parseNanoCpus('0.5')), 500_000_000);
  t.equal(value(parseNanoCpus(1.25)), 1_250_000_000);
  t.equal(value(parseNanoCpus('2')), 2_000_000_000);
  t.equal(value(parseNanoCpus('.1')), 100_000_000);
  t.equal(value(parseNanoCpus('0.000000001')), 1);
  t.notOk(parseNanoCpus('0.0000000001').ok, 'more than 9 decimals is too precise');
  for (const bad of ['one', '-1', '1e3', '', '1.2.3']) t.notOk(parseNanoCpus(bad).ok, `${bad} refused`);
});

t.test('integers from numbers or interpolated strings', async (t) => {
  t.equal(value(parseInteger(3)), 3);
  t.equal(value(parseInteger('3')), 3);
  t.equal(value(parseInteger('three')), 'must be integer (got "three")');
  t.equal(value(parseInteger(1.5)), 'must be integer (got 1.5)');
});

t.test('command strings split like a shell, without a shell', async (t) => {
  const split = (s: string) => value(splitShellWords(s));
  t.same(split('httpd -f -p 8080'), ['httpd', '-f', '-p', '8080']);
  t.same(split(`sh -c 'echo "a b"; exit 1'`), ['sh', '-c', 'echo "a b"; exit 1']);
  t.same(split('echo "two  spaces" x\\ y'), ['echo', 'two  spaces', 'x y']);
  t.same(split('a "" b'), ['a', '', 'b']);
  t.same(split('  lead\ttabs\nnewline  '), ['lead', 'tabs', 'newline']);
  t.same(split('echo "in \\"quotes\\""'), ['echo', 'in "quotes"']);
  t.same(split('echo $HOME'), ['echo', '$HOME'], 'no expansion');
  t.same(split(''), []);
  t.match(split('echo "open'), /unterminated double quote/);
  t.match(split("echo 'open"), /unterminated single quote/);
  t.match(split('echo a; echo b'), /shell operator ";"/);
  t.match(split('cat x | wc'), /shell operator "\|"/);
});

t.test('placement constraints and preferences', async (t) => {
  for (const ok of [
    'node.role == manager',
    'node.role!=worker',
    'node.id==abc123',
    'node.hostname == host-1',
    'node.labels.zone == east',
    'node.platform.os == linux',
    'node.platform.arch != arm64',
    'engine.labels.storage == ssd',
    'NODE.ROLE == Manager',
  ])
    t.ok(checkConstraint(ok).ok, ok);
  t.equal(value(checkConstraint('  node.role == manager ')), 'node.role == manager');
  const unknown = checkConstraint('node.rol == manager');
  t.notOk(unknown.ok);
  t.match(value(unknown), /unknown key "node.rol".*did you mean "node.role"\?/);
  for (const bad of [
    'node.role = manager',
    'node.role == boss',
    'node.labels. == x',
    'node.labels.zone ==',
    'zone',
  ]) {
    t.notOk(checkConstraint(bad).ok, `${bad} refused`);
  }
  t.equal(value(parseSpread('node.labels.zone')), 'node.labels.zone');
  t.notOk(parseSpread('node.role').ok);
});

t.test('did-you-mean only for close words', async (t) => {
  t.equal(closest('imagee', ['image', 'command']), 'image');
  t.equal(closest('comand', ['image', 'command']), 'command');
  t.equal(closest('replcias', ['replicas', 'mode']), 'replicas');
  t.equal(closest('zzz', ['image', 'command']), undefined);
});
