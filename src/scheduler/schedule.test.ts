import t from 'tap';
import type { TsswarmError } from '../api/errors.js';
import { CPU, GiB, makeNode, makeSpec, makeTasks, running } from './fixtures.js';
import { schedule } from './schedule.js';
import type { Node, PendingTask, SchedulePlan, Strategy } from './types.js';

const run = (nodes: Node[], pending: PendingTask[], seed = 7, strategy?: Strategy): SchedulePlan =>
  schedule({ nodes }, pending, { seed, strategy });
const perNode = (plan: SchedulePlan) => {
  const m: Record<string, number> = {};
  for (const a of plan.assignments) m[a.nodeId] = (m[a.nodeId] ?? 0) + 1;
  return m;
};
const perLabel = (plan: SchedulePlan, nodes: Node[], label: string) => {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const m: Record<string, number> = {};
  for (const a of plan.assignments) {
    const v = byId.get(a.nodeId)!.labels[label] ?? '(none)';
    m[v] = (m[v] ?? 0) + 1;
  }
  return m;
};
const five = () => ['n1', 'n2', 'n3', 'n4', 'n5'].map((id) => makeNode(id));

t.test('spread: 10 tasks on 5 nodes, 2 each, whatever the seed', async (t) => {
  for (const seed of [0, 1, 2, 3, 99, -5, 2 ** 40]) {
    const plan = run(five(), makeTasks('s', 10), seed);
    t.same(perNode(plan), { n1: 2, n2: 2, n3: 2, n4: 2, n5: 2 }, `seed ${seed}`);
    t.equal(plan.unplaced.length, 0);
  }
});

t.test('spread: fewest tasks of the service first, then fewest tasks overall', async (t) => {
  const nodes = [
    makeNode('has-two', { tasks: [running('s'), running('s')] }),
    makeNode('busy', { tasks: [running('x'), running('x'), running('x')] }),
    makeNode('idle'),
  ];
  t.same(perNode(run(nodes, makeTasks('s', 1))), { idle: 1 });
  t.same(perNode(run(nodes, makeTasks('s', 2))), { idle: 1, busy: 1 });
  t.same(perNode(run(nodes, makeTasks('s', 4))), { idle: 2, busy: 2 }, 'has-two already has its share');
  t.same(perNode(run(nodes, makeTasks('s', 7))), { idle: 3, busy: 3, 'has-two': 1 });
});

t.test('spread over label values first: zone a has 1 node, zone b has 3', async (t) => {
  const nodes = [
    makeNode('a1', { labels: { zone: 'a' } }),
    makeNode('b1', { labels: { zone: 'b' } }),
    makeNode('b2', { labels: { zone: 'b' } }),
    makeNode('b3', { labels: { zone: 'b' } }),
  ];
  const spec = makeSpec({ preferences: [{ spread: 'node.labels.zone' }] });
  const plan = run(nodes, makeTasks('s', 6, spec));
  t.same(perLabel(plan, nodes, 'zone'), { a: 3, b: 3 });
  t.same(perNode(plan), { a1: 3, b1: 1, b2: 1, b3: 1 });
  const eight = run(nodes, makeTasks('s', 8, spec));
  t.same(perLabel(eight, nodes, 'zone'), { a: 4, b: 4 });
  t.equal(perNode(eight).a1, 4);
  t.same(Object.values(perNode(eight)).sort(), [1, 1, 2, 4], 'zone b: 4 tasks over 3 nodes');
  const noPref = perNode(run(nodes, makeTasks('s', 8, makeSpec())));
  t.same(noPref, { a1: 2, b1: 2, b2: 2, b3: 2 }, 'without the preference: per node');
});

t.test(
  'spread over label values: existing tasks count, nodes without the label form one group',
  async (t) => {
    const nodes = [
      makeNode('a1', { labels: { zone: 'a' }, tasks: [running('s'), running('s')] }),
      makeNode('b1', { labels: { zone: 'b' } }),
      makeNode('x1'),
      makeNode('x2'),
    ];
    const spec = makeSpec({ preferences: [{ spread: 'node.labels.zone' }] });
    const plan = run(nodes, makeTasks('s', 4, spec));
    t.same(perLabel(plan, nodes, 'zone'), { b: 2, '(none)': 2 }, 'zone a already has 2');
    t.same(perNode(plan), { b1: 2, x1: 1, x2: 1 });
    const more = run(nodes, makeTasks('s', 7, spec));
    t.same(perLabel(more, nodes, 'zone'), { a: 1, b: 3, '(none)': 3 }, 'then 3/3/3 in all');
  },
);

t.test('nested preferences: zone, then rack within each zone', async (t) => {
  const nodes = [
    makeNode('a-r1-1', { labels: { zone: 'a', rack: 'r1' } }),
    makeNode('a-r2-1', { labels: { zone: 'a', rack: 'r2' } }),
    makeNode('a-r2-2', { labels: { zone: 'a', rack: 'r2' } }),
    makeNode('b-r3-1', { labels: { zone: 'b', rack: 'r3' } }),
    makeNode('b-r3-2', { labels: { zone: 'b', rack: 'r3' } }),
    makeNode('b-r3-3', { labels: { zone: 'b', rack: 'r3' } }),
  ];
  const spec = makeSpec({ preferences: [{ spread: 'node.labels.zone' }, { spread: 'node.labels.rack' }] });
  for (const seed of [1, 2, 3, 4]) {
    const plan = run(nodes, makeTasks('s', 8, spec), seed);
    t.same(perLabel(plan, nodes, 'zone'), { a: 4, b: 4 }, `seed ${seed}: zones`);
    t.same(perLabel(plan, nodes, 'rack'), { r1: 2, r2: 2, r3: 4 }, `seed ${seed}: racks within zone a`);
    const n = perNode(plan);
    t.same([n['a-r1-1'], n['a-r2-1'], n['a-r2-2']], [2, 1, 1], `seed ${seed}: nodes within rack r2`);
    t.same([n['b-r3-1'], n['b-r3-2'], n['b-r3-3']].sort(), [1, 1, 2], `seed ${seed}: nodes within rack r3`);
  }
});

t.test('engine labels as a preference', async (t) => {
  const nodes = [
    makeNode('g1', { engineLabels: { gpu: 'yes' } }),
    makeNode('c1'),
    makeNode('c2'),
    makeNode('c3'),
  ];
  const plan = run(nodes, makeTasks('s', 4, makeSpec({ preferences: [{ spread: 'engine.labels.gpu' }] })));
  t.equal(perNode(plan).g1, 2);
});

t.test('a full branch is skipped, then the others take the rest', async (t) => {
  const nodes = [
    makeNode('a1', { labels: { zone: 'a' }, resources: { nanoCpus: CPU, memoryBytes: GiB } }),
    makeNode('b1', { labels: { zone: 'b' } }),
    makeNode('b2', { labels: { zone: 'b' } }),
  ];
  const spec = makeSpec({
    reservations: { nanoCpus: CPU, memoryBytes: 0 },
    preferences: [{ spread: 'node.labels.zone' }],
  });
  const plan = run(nodes, makeTasks('s', 6, spec));
  t.equal(perNode(plan).a1, 1);
  t.equal((perNode(plan).b1 ?? 0) + (perNode(plan).b2 ?? 0), 5);
  t.equal(plan.unplaced.length, 0);
});

t.test('reservations exhaust nodes, spread still even where it fits', async (t) => {
  const nodes = ['a', 'b', 'c'].map((id) =>
    makeNode(id, { resources: { nanoCpus: 2 * CPU, memoryBytes: 4 * GiB } }),
  );
  const spec = makeSpec({ reservations: { nanoCpus: 0.5 * CPU, memoryBytes: GiB } });
  const plan = run(nodes, makeTasks('s', 14, spec));
  t.same(perNode(plan), { a: 4, b: 4, c: 4 });
  t.same(
    plan.unplaced.map((u) => u.taskId),
    ['s.13', 's.14'],
  );
  t.equal(plan.unplaced[0]!.summary, 'no suitable node (insufficient resources on 3 nodes)');
  const next = run(nodes, [...makeTasks('s', 12, spec), ...makeTasks('t', 1, makeSpec())]);
  t.equal(next.assignments.length, 13, 'a task with no reservations still fits on full nodes');
});

t.test('global tasks: pinned to their node, checked there, placed before the rest', async (t) => {
  const nodes = [
    makeNode('a', { resources: { nanoCpus: 2 * CPU, memoryBytes: 4 * GiB } }),
    makeNode('b', { resources: { nanoCpus: 2 * CPU, memoryBytes: 4 * GiB } }),
    makeNode('c', { availability: 'drain' }),
    makeNode('d', { labels: { tier: 'db' } }),
  ];
  const agent = makeSpec({
    reservations: { nanoCpus: CPU, memoryBytes: 0 },
    constraints: ['node.labels.tier!=db'],
  });
  const global = ['a', 'b', 'c', 'd', 'gone'].map((nodeId) => ({
    id: `agent.${nodeId}`,
    serviceId: 'agent',
    nodeId,
    spec: agent,
  }));
  const web = makeTasks('web', 3, makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: 0 } }));
  // the replicated tasks come first in the input, the pinned ones still go first
  const plan = run(nodes, [...web, ...global]);
  const where = Object.fromEntries(plan.assignments.map((a) => [a.taskId, a.nodeId]));
  t.equal(where['agent.a'], 'a');
  t.equal(where['agent.b'], 'b');
  t.same(
    plan.unplaced.filter((u) => u.taskId.startsWith('agent')),
    [
      {
        taskId: 'agent.c',
        reasons: ['1 node not available'],
        summary: 'no suitable node (1 node not available)',
      },
      {
        taskId: 'agent.d',
        reasons: ['scheduling constraints not satisfied on 1 node'],
        summary: 'no suitable node (scheduling constraints not satisfied on 1 node)',
      },
      {
        taskId: 'agent.gone',
        reasons: ['node "gone" is not in the cluster'],
        summary: 'no suitable node (node "gone" is not in the cluster)',
      },
    ],
  );
  t.same(perNode({ assignments: plan.assignments.filter((a) => a.taskId.startsWith('web')), unplaced: [] }), {
    a: 1,
    b: 1,
    d: 1,
  });
  const tight = run(
    [makeNode('a', { resources: { nanoCpus: CPU, memoryBytes: GiB } })],
    [
      {
        id: 'g',
        serviceId: 'g',
        nodeId: 'a',
        spec: makeSpec({ reservations: { nanoCpus: 2 * CPU, memoryBytes: 0 } }),
      },
    ],
  );
  t.same(tight.unplaced[0]!.summary, 'no suitable node (insufficient resources on 1 node)');
});

t.test('binpack: fills the fullest node that fits before the next', async (t) => {
  const nodes = ['a', 'b', 'c'].map((id) =>
    makeNode(id, { resources: { nanoCpus: 4 * CPU, memoryBytes: 4 * GiB } }),
  );
  nodes[2]!.tasks = [running('other', { nanoCpus: 2 * CPU, memoryBytes: 2 * GiB })];
  const spec = makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: GiB } });
  const two = run(nodes, makeTasks('s', 2, spec), 7, 'binpack');
  t.same(perNode(two), { c: 2 }, 'the half-full node first');
  const seven = run(nodes, makeTasks('s', 7, spec), 7, 'binpack');
  const n = perNode(seven);
  t.equal(n.c, 2);
  t.same([n.a ?? 0, n.b ?? 0].sort(), [1, 4], 'then one whole node, then the next');
  const limited = run(nodes, makeTasks('s', 5, makeSpec({ ...spec, maxReplicasPerNode: 2 })), 7, 'binpack');
  t.equal(perNode(limited).c, 2);
  t.same(Object.values(perNode(limited)).sort(), [1, 2, 2], 'max replicas per node still holds');
  const ports = run(
    nodes,
    makeTasks('s', 3, makeSpec({ ...spec, hostPorts: [{ port: 1, protocol: 'tcp' }] })),
    7,
    'binpack',
  );
  t.same(Object.values(perNode(ports)), [1, 1, 1], 'host ports still hold');
  const drained = nodes.map((x) => (x.id === 'c' ? { ...x, availability: 'drain' as const } : x));
  t.notOk(perNode(run(drained, makeTasks('s', 3, spec), 7, 'binpack')).c, 'filters still hold');
});

t.test(
  'determinism: the same seed gives the same plan; another seed only breaks ties differently',
  async (t) => {
    const nodes = Array.from({ length: 20 }, (_, k) =>
      makeNode(`n${k}`, {
        labels: { zone: `z${k % 3}` },
        resources: { nanoCpus: (1 + (k % 4)) * CPU, memoryBytes: 8 * GiB },
      }),
    );
    const pending = [
      ...makeTasks('a', 13, makeSpec({ preferences: [{ spread: 'node.labels.zone' }] })),
      ...makeTasks('b', 9, makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: 0 } })),
    ];
    const first = run(nodes, pending, 123);
    t.same(run(nodes, pending, 123), first, 'same seed, same plan');
    t.same(
      run(structuredClone(nodes), structuredClone(pending), 123),
      first,
      'copies of the input, same plan',
    );
    const seen = new Set<string>();
    for (let seed = 0; seed < 20; seed++) {
      const plan = run(nodes, pending, seed);
      seen.add(JSON.stringify(plan.assignments));
      const a = { assignments: plan.assignments.filter((x) => x.taskId.startsWith('a.')), unplaced: [] };
      t.same(
        Object.values(perLabel(a, nodes, 'zone')).sort(),
        [4, 4, 5],
        `seed ${seed}: a spread over zones 5/4/4`,
      );
      const counts = Object.values(
        perNode({ assignments: plan.assignments.filter((a) => a.taskId.startsWith('b.')), unplaced: [] }),
      );
      t.ok(
        Math.max(...counts) - Math.min(...counts) <= 1 && counts.length === 9,
        `seed ${seed}: b on 9 distinct nodes`,
      );
    }
    t.ok(seen.size > 1, 'different seeds break ties differently');
  },
);

t.test('output follows the order of the pending tasks', async (t) => {
  const nodes = five();
  const pending = [
    ...makeTasks('x', 1),
    { id: 'g', serviceId: 'g', nodeId: 'n3', spec: makeSpec() },
    ...makeTasks('y', 2, makeSpec({ constraints: ['node.id==none'] })),
    ...makeTasks('x', 2).map((p) => ({ ...p, id: `${p.id}b` })),
  ];
  const plan = run(nodes, pending);
  t.same(
    plan.assignments.map((a) => a.taskId),
    ['x.1', 'g', 'x.1b', 'x.2b'],
  );
  t.same(
    plan.unplaced.map((u) => u.taskId),
    ['y.1', 'y.2'],
  );
});

t.test('bad options throw typed errors', async (t) => {
  const e = t.throws(() => schedule({ nodes: [] }, [], { seed: Number.NaN })) as TsswarmError;
  t.equal(e.code, 'invalid_argument');
  t.equal(e.message, 'scheduler seed must be a finite number, not NaN');
  const s = t.throws(() =>
    schedule({ nodes: [] }, [], { seed: 1, strategy: 'random' as Strategy }),
  ) as TsswarmError;
  t.equal(s.message, 'unknown scheduling strategy "random": use spread or binpack');
});

t.test('the input is not modified', async (t) => {
  const nodes = [makeNode('a', { tasks: [running('s', { nanoCpus: CPU })] })];
  const pending = makeTasks('s', 2, makeSpec({ reservations: { nanoCpus: CPU, memoryBytes: 0 } }));
  const before = JSON.stringify([nodes, pending]);
  run(nodes, pending);
  t.equal(JSON.stringify([nodes, pending]), before);
});
