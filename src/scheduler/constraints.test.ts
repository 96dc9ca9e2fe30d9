import t from 'tap';
import { TsswarmError } from '../api/errors.js';
import {
  compileConstraints,
  matchConstraint,
  normalizeArch,
  parseConstraint,
  parseConstraints,
} from './constraints.js';
import { makeNode } from './fixtures.js';

const node = makeNode('n1', {
  hostname: 'web-1',
  role: 'manager',
  labels: { zone: 'b', Disk: 'SSD' },
  engineLabels: { gpu: 'yes' },
  platform: { os: 'linux', arch: 'x86_64' },
});
const ok = (c: string) => matchConstraint(parseConstraint(c), node);

t.test('parses == and != with spaces around, keeping the text', async (t) => {
  t.same(parseConstraint(' node.labels.zone == b '), {
    text: 'node.labels.zone == b',
    field: 'node.labels',
    label: 'zone',
    operator: '==',
    value: 'b',
  });
  t.same(parseConstraint('node.role!=manager'), {
    text: 'node.role!=manager',
    field: 'node.role',
    operator: '!=',
    value: 'manager',
  });
  t.equal(parseConstraint('NODE.Hostname==x').field, 'node.hostname');
  t.equal(parseConstraint('engine.labels.gpu==yes').field, 'engine.labels');
  t.equal(parseConstraint('node.platform.arch==x86_64').field, 'node.platform.arch');
});

t.test('bad constraints say what is wrong, as typed errors', async (t) => {
  const cases: Array<[string, string]> = [
    ['node.labels.zone=b', 'invalid constraint "node.labels.zone=b": expected == or !='],
    ['==b', 'invalid constraint "==b": missing key before =='],
    ['node.role==', 'invalid constraint "node.role==": missing value after =='],
    ['node.hostname!=', 'invalid constraint "node.hostname!=": missing value after !='],
    ['node labels==x', 'invalid constraint "node labels==x": key "node labels" is invalid'],
    [
      'node.labels.zone==b;c',
      'invalid constraint "node.labels.zone==b;c": value "b;c" has characters a constraint value cannot have',
    ],
    [
      'node.name==x',
      'invalid constraint "node.name==x": unknown key "node.name" (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>)',
    ],
    ['node.labels.==x', 'invalid constraint "node.labels.==x": missing label name after node.labels.'],
    ['node.role==boss', 'invalid constraint "node.role==boss": node.role is manager or worker, not "boss"'],
  ];
  for (const [input, message] of cases) {
    const e = t.throws(() => parseConstraint(input)) as TsswarmError;
    t.ok(e instanceof TsswarmError, input);
    t.equal(e.code, 'invalid_argument', input);
    t.equal(e.message, message, input);
  }
});

t.test('parseConstraints collects every error', async (t) => {
  t.same(parseConstraints(['node.role==worker', 'a=b', 'node.x==1']).errors, [
    'invalid constraint "a=b": expected == or !=',
    'invalid constraint "node.x==1": unknown key "node.x" (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>)',
  ]);
  t.equal(parseConstraints(['node.role==worker']).constraints?.length, 1);
  t.same(parseConstraints([]).constraints, []);
});

t.test('== and != on id, hostname and role', async (t) => {
  t.ok(ok('node.id==n1'));
  t.notOk(ok('node.id==n2'));
  t.ok(ok('node.id!=n2'));
  t.ok(ok('node.hostname==web-1'));
  t.ok(ok('node.hostname==WEB-1'), 'values compare case-insensitively');
  t.notOk(ok('node.hostname!=web-1'));
  t.ok(ok('node.role==manager'));
  t.notOk(ok('node.role==worker'));
  t.ok(ok('node.role!=worker'));
});

t.test('labels: present, missing, case of names and values', async (t) => {
  t.ok(ok('node.labels.zone==b'));
  t.notOk(ok('node.labels.zone==a'));
  t.ok(ok('node.labels.zone!=a'));
  t.notOk(ok('node.labels.zone!=b'));
  t.notOk(ok('node.labels.rack==r1'), 'a missing label equals nothing');
  t.ok(ok('node.labels.rack!=r1'), 'a missing label differs from every value');
  t.ok(ok('node.labels.Disk==ssd'), 'label value case-insensitive');
  t.notOk(ok('node.labels.disk==ssd'), 'label name case-sensitive');
  t.notOk(ok('node.labels.constructor==x'), 'only own labels count');
  t.ok(ok('node.labels.toString!=x'));
  t.ok(ok('engine.labels.gpu==yes'));
  t.notOk(ok('engine.labels.gpu==no'));
  t.ok(
    matchConstraint(parseConstraint('engine.labels.gpu!=yes'), makeNode('n2')),
    'node without engine labels',
  );
});

t.test('platform os and arch, architectures normalised', async (t) => {
  t.ok(ok('node.platform.os==linux'));
  t.ok(ok('node.platform.os==Linux'));
  t.notOk(ok('node.platform.os==windows'));
  t.ok(ok('node.platform.os!=windows'));
  t.ok(ok('node.platform.arch==x86_64'));
  t.ok(ok('node.platform.arch==amd64'));
  t.notOk(ok('node.platform.arch==arm64'));
  const arm = makeNode('a', { platform: { os: 'linux', arch: 'aarch64' } });
  t.ok(matchConstraint(parseConstraint('node.platform.arch==arm64'), arm));
  t.ok(matchConstraint(parseConstraint('node.platform.arch!=x86_64'), arm));
  t.equal(normalizeArch('X86_64'), 'amd64');
  t.equal(normalizeArch('aarch64'), 'arm64');
  t.equal(normalizeArch('riscv64'), 'riscv64');
});

t.test('compileConstraints: all must hold', async (t) => {
  const cs = ['node.role==manager', 'node.labels.zone==b'].map(parseConstraint);
  t.ok(compileConstraints(cs)(node));
  t.notOk(compileConstraints([...cs, parseConstraint('node.labels.zone!=b')])(node));
  t.ok(compileConstraints([])(node), 'no constraints: every node');
});
