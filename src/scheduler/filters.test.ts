import t from 'tap';
import { Pipeline } from './filters.js';
import { CPU, GiB, makeNode, makeSpec, makeTasks, running } from './fixtures.js';
import { schedule } from './schedule.js';
import { compileSpec } from './spec.js';
import { ClusterState } from './state.js';
import type { Node, PendingTask, SchedulePlan } from './types.js';

const run = (nodes: Node[], pending: PendingTask[], seed = 1): SchedulePlan =>
  schedule({ nodes }, pending, { seed });
const perNode = (plan: SchedulePlan) => {
  const m: Record<string, number> = {};
  for (const a of plan.assignments) m[a.nodeId] = (m[a.nodeId] ?? 0) + 1;
  return m;
};

t.test('ready filter: drained, paused, down and unknown nodes take nothing', async (t) => {
  const nodes = [
    makeNode('ok'),
    makeNode('drained', { availability: 'drain' }),
    makeNode('paused', { availability: 'pause' }),
    makeNode('down', { status: 'down' }),
    makeNode('unknown', { status: 'unknown' }),
  ];
  t.same(perNode(run(nodes, makeTasks('s', 10))), { ok: 10 });
  const plan = run(nodes, makeTasks('s', 1, makeSpec({ constraints: ['node.id!=ok'] })));
  t.same(plan.unplaced, [
    {
      taskId: 's.1',
      reasons: ['4 nodes not available', 'scheduling constraints not satisfied on 1 node'],
      summary: 'no suitable node (4 nodes not available; scheduling constraints not satisfied on 1 node)',
    },
  ]);
});

t.test('resource filter: reservations against capacity minus running and planned tasks', async (t) => {
  const nodes = [
    makeNode('a', { resources: { nanoCpus: 2 * CPU, memoryBytes: 8 * GiB } }),
    makeNode('b', { resources: { nanoCpus: 2 * CPU, memoryBytes: 8 * GiB } }),
    makeNode('c', {
      resources: { nanoCpus: 2 * CPU, memoryBytes: 8 * GiB },
      tasks: [running('other', { nanoCpus: 1.5 * CPU })],
    }),
    makeNode('d', { resources: { nanoCpus: 8 * CPU, memoryBytes: 1 * GiB } }),
  ];
  const spec = makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: 1.5 * GiB } });
  const plan = run(nodes, makeTasks('s', 6, spec));
  t.same(perNode(plan), { a: 2, b: 2 }, 'c lacks cpu, d lacks memory; a and b fill up');
  t.same(
    plan.unplaced.map((u) => u.summary),
    [
      'no suitable node (insufficient resources on 4 nodes)',
      'no suitable node (insufficient resources on 4 nodes)',
    ],
  );
  t.same(plan.unplaced[0]!.reasons, ['insufficient resources on 4 nodes']);
});

t.test("the brief's example explanation, most frequent first", async (t) => {
  const full = [running('x', { nanoCpus: 4 * CPU })];
  const nodes = [
    makeNode('a1', { labels: { zone: 'a' }, tasks: full }),
    makeNode('a2', { labels: { zone: 'a' }, tasks: full }),
    makeNode('a3', { labels: { zone: 'a' }, tasks: full }),
    makeNode('b1', { labels: { zone: 'b' } }),
    makeNode('b2', { labels: { zone: 'b' } }),
    makeNode('a4', { labels: { zone: 'a' }, availability: 'drain' }),
  ];
  const plan = run(
    nodes,
    makeTasks(
      's',
      1,
      makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: 0 }, constraints: ['node.labels.zone==a'] }),
    ),
  );
  t.same(plan.assignments, []);
  t.same(plan.unplaced, [
    {
      taskId: 's.1',
      reasons: [
        'insufficient resources on 3 nodes',
        'scheduling constraints not satisfied on 2 nodes',
        '1 node not available',
      ],
      summary:
        'no suitable node (insufficient resources on 3 nodes; scheduling constraints not satisfied on 2 nodes; 1 node not available)',
    },
  ]);
});

t.test('a node counts for the first filter that refuses it; equal counts keep pipeline order', async (t) => {
  const nodes = [
    makeNode('drained-and-wrong', { availability: 'drain' }),
    makeNode('full-and-wrong', { resources: { nanoCpus: 0, memoryBytes: 0 } }),
    makeNode('wrong-zone', { labels: { zone: 'b' } }),
  ];
  const plan = run(
    nodes,
    makeTasks(
      's',
      1,
      makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: 0 }, constraints: ['node.labels.zone==a'] }),
    ),
  );
  t.same(plan.unplaced[0]!.reasons, [
    '1 node not available',
    'insufficient resources on 1 node',
    'scheduling constraints not satisfied on 1 node',
  ]);
});

t.test('platform filter: one of the image platforms, architectures normalised', async (t) => {
  const nodes = [
    makeNode('x86', { platform: { os: 'linux', arch: 'x86_64' } }),
    makeNode('arm', { platform: { os: 'linux', arch: 'aarch64' } }),
    makeNode('win', { platform: { os: 'windows', arch: 'x86_64' } }),
  ];
  t.same(perNode(run(nodes, makeTasks('s', 3, makeSpec({ platforms: [{ os: 'linux', arch: 'arm64' }] })))), {
    arm: 3,
  });
  t.same(perNode(run(nodes, makeTasks('s', 2, makeSpec({ platforms: [{ os: 'linux', arch: 'amd64' }] })))), {
    x86: 2,
  });
  t.same(perNode(run(nodes, makeTasks('s', 2, makeSpec({ platforms: [{ os: 'linux', arch: '' }] })))), {
    x86: 1,
    arm: 1,
  });
  t.same(perNode(run(nodes, makeTasks('s', 3, makeSpec({ platforms: [] })))), { x86: 1, arm: 1, win: 1 });
  const plan = run(nodes, makeTasks('s', 1, makeSpec({ platforms: [{ os: 'linux', arch: 's390x' }] })));
  t.same(plan.unplaced[0]!.reasons, ['unsupported platform on 3 nodes']);
});

t.test('host port filter: conflicts with running and planned tasks, per protocol', async (t) => {
  const nodes = [
    makeNode('a', { tasks: [running('web', {}, [{ port: 80, protocol: 'tcp' }])] }),
    makeNode('b'),
  ];
  const tcp = makeSpec({ hostPorts: [{ port: 80, protocol: 'tcp' }] });
  const plan = run(nodes, makeTasks('s', 3, tcp));
  t.same(plan.assignments, [{ taskId: 's.1', nodeId: 'b' }]);
  t.same(plan.unplaced[0]!.summary, 'no suitable node (host-mode port already in use on 2 nodes)');
  t.equal(plan.unplaced.length, 2);
  const udp = makeSpec({ hostPorts: [{ port: 80, protocol: 'udp' }] });
  t.same(perNode(run(nodes, makeTasks('s', 2, udp))), { a: 1, b: 1 }, 'udp/80 is free on a');
  const other = makeSpec({ hostPorts: [{ port: 80, protocol: 'tcp' }] });
  const two = run(nodes, [...makeTasks('s', 1, tcp), ...makeTasks('t', 1, other)]);
  t.same(two.assignments, [{ taskId: 's.1', nodeId: 'b' }], 'another service sees the planned port');
  t.same(two.unplaced[0]!.reasons, ['host-mode port already in use on 2 nodes']);
});

t.test('max replicas per node: running and planned tasks of the service count', async (t) => {
  const nodes = [makeNode('a', { tasks: [running('s'), running('other'), running('other')] }), makeNode('b')];
  const plan = run(nodes, makeTasks('s', 5, makeSpec({ maxReplicasPerNode: 2 })));
  t.same(perNode(plan), { a: 1, b: 2 });
  t.same(plan.unplaced[0]!.reasons, ['max replicas per node (2) reached on 2 nodes']);
  t.equal(plan.unplaced.length, 2);
  t.same(
    perNode(run(nodes, makeTasks('s', 5, makeSpec({ maxReplicasPerNode: 0 })))),
    { a: 2, b: 3 },
    '0: no limit',
  );
});

t.test('the cluster has no nodes', async (t) => {
  t.same(run([], makeTasks('s', 1)).unplaced, [
    {
      taskId: 's.1',
      reasons: ['the cluster has no nodes'],
      summary: 'no suitable node (the cluster has no nodes)',
    },
  ]);
});

t.test('bad specs are unplaced with what is wrong, and take nothing', async (t) => {
  const nodes = [makeNode('a', { labels: { zone: 'b' } })];
  const plan = run(nodes, [
    ...makeTasks('bad', 2, makeSpec({ constraints: ['node.labels.zone=b'] })),
    ...makeTasks('good', 1, makeSpec({ constraints: ['node.labels.zone==b'] })),
  ]);
  t.same(plan.assignments, [{ taskId: 'good.1', nodeId: 'a' }]);
  const why = 'invalid constraint "node.labels.zone=b": expected == or !=';
  t.same(plan.unplaced, [
    { taskId: 'bad.1', reasons: [why], summary: why },
    { taskId: 'bad.2', reasons: [why], summary: why },
  ]);
  const many = run(nodes, [
    ...makeTasks(
      'x',
      1,
      makeSpec({
        reservations: { nanoCpus: -1, memoryBytes: 0 },
        preferences: [{ spread: 'node.hostname' }],
        maxReplicasPerNode: 1.5,
        hostPorts: [{ port: 70000, protocol: 'tcp' }],
      }),
    ),
  ]);
  t.same(many.unplaced[0]!.reasons, [
    'invalid reservation: nanoCpus must be a number ≥ 0, not -1',
    'invalid placement preference spread="node.hostname": expected node.labels.<name> or engine.labels.<name>',
    'invalid max replicas per node: expected a whole number ≥ 0, not 1.5',
    'invalid host port 70000: expected 1-65535',
  ]);
  t.equal(many.unplaced[0]!.summary, many.unplaced[0]!.reasons.join('; '));
});

t.test('Pipeline: filters in order, only those that apply, each counting its rejections', async (t) => {
  const nodes = [
    makeNode('ok', { labels: { tier: 'app' } }),
    makeNode('drained', { availability: 'drain', labels: { tier: 'app' } }),
    makeNode('db', { labels: { tier: 'db' } }),
    makeNode('small', { labels: { tier: 'app' }, resources: { nanoCpus: CPU / 2, memoryBytes: GiB } }),
    makeNode('port', { labels: { tier: 'app' }, tasks: [running('s', {}, [{ port: 53, protocol: 'udp' }])] }),
    makeNode('arm', { labels: { tier: 'app' }, platform: { os: 'linux', arch: 'arm64' } }),
  ];
  const state = new ClusterState(nodes);
  state.loadService('s');
  const compiled = compileSpec(
    makeSpec({
      reservations: { nanoCpus: CPU, memoryBytes: 0 },
      constraints: ['node.labels.tier==app'],
      platforms: [{ os: 'linux', arch: 'amd64' }],
      hostPorts: [{ port: 53, protocol: 'udp' }],
      maxReplicasPerNode: 1,
    }),
  );
  if (compiled.errors) throw new Error(compiled.errors.join());
  const p = new Pipeline(state, compiled.spec);
  t.same(
    p.filters.map((f) => f.name),
    ['ready', 'resources', 'constraints', 'platform', 'hostPorts', 'maxReplicas'],
  );
  t.same(
    p.dynamicFilters.map((f) => f.name),
    ['resources', 'hostPorts', 'maxReplicas'],
  );
  t.same(
    nodes.map((_, i) => p.check(i)),
    [true, false, false, false, false, false],
  );
  t.same(
    p.filters.map((f) => [f.name, f.rejections]),
    [
      ['ready', 1],
      ['resources', 1],
      ['constraints', 1],
      ['platform', 1],
      ['hostPorts', 1],
      ['maxReplicas', 0],
    ],
  );
  state.place(0, compiled.spec.reservations, []);
  t.notOk(p.recheck(0), 'one task of s on ok: max replicas reached');
  t.equal(p.filters[5]!.rejections, 1);
  t.same(p.explain(), [
    '1 node not available',
    'insufficient resources on 1 node',
    'scheduling constraints not satisfied on 1 node',
    'unsupported platform on 1 node',
    'host-mode port already in use on 1 node',
    'max replicas per node (1) reached on 1 node',
  ]);
  p.reset();
  t.same(p.explain(), []);
  const bare = compileSpec(makeSpec());
  if (bare.errors) throw new Error();
  t.same(
    new Pipeline(state, bare.spec).filters.map((f) => f.name),
    ['ready'],
    'filters that do not apply are left out',
  );
});
