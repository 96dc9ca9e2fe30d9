import t from 'tap';
import { apply, converge, counter, makeNode, makeService, makeTask } from './fixtures.js';
import { reconcileGlobal } from './global.js';
import type { Task } from './types.js';

const svc = makeService({ mode: 'global', replicas: 0 });
const onNodes = (tasks: readonly Task[]) =>
  tasks
    .filter((x) => x.desiredState === 'running')
    .map((x) => x.nodeId)
    .sort();

t.test('one task per eligible node, a joining node gains one, idempotent', async (t) => {
  const nodes = [makeNode('n1'), makeNode('n2')];
  const res = reconcileGlobal(svc, [], nodes, 0, counter());
  t.same(onNodes(res.create), ['n1', 'n2']);
  t.ok(res.create.every((x) => x.slot === undefined));
  let tasks = converge(apply([], res), 1);
  t.same(reconcileGlobal(svc, tasks, nodes, 2, counter('x')), { create: [], shutdown: [], remove: [] });
  const joined = [...nodes, makeNode('n3')];
  const more = reconcileGlobal(svc, tasks, joined, 3, counter('x'));
  t.same(onNodes(more.create), ['n3']);
  tasks = apply(tasks, more);
  t.same(reconcileGlobal(svc, tasks, joined, 4, counter('y')).create, []);
});

t.test('drained, down, deleted and paused nodes', async (t) => {
  const tasks = ['n1', 'n2', 'n3', 'n4'].map((n, i) => makeTask(`t${i}`, { nodeId: n }));
  const nodes = [
    makeNode('n1', { availability: 'drain' }),
    makeNode('n2', { status: 'down' }),
    makeNode('n3', { availability: 'pause' }),
  ];
  const res = reconcileGlobal(svc, tasks, nodes, 0, counter());
  t.same(
    res.shutdown.sort(),
    ['t0', 't1', 't3'],
    'drained, down and deleted lose their task; paused keeps it',
  );
  t.same(res.create, [], 'no new task anywhere');
  // a drained node made active again gains a task back
  const back = reconcileGlobal(svc, apply(tasks, res), [makeNode('n1'), ...nodes.slice(1)], 1, counter('x'));
  t.same(onNodes(back.create), ['n1']);
});

t.test('placement constraints decide eligibility', async (t) => {
  const c = makeService({ mode: 'global', constraints: ['node.labels.zone==a', 'node.role!=manager'] });
  const nodes = [
    makeNode('n1', { labels: { zone: 'a' } }),
    makeNode('n2', { labels: { zone: 'b' } }),
    makeNode('n3', { labels: { zone: 'a' }, role: 'manager' }),
  ];
  const res = reconcileGlobal(c, [], nodes, 0, counter());
  t.same(onNodes(res.create), ['n1']);
  // a label change makes a node ineligible: its task goes
  const tasks = apply([], res);
  const relabelled = [makeNode('n1', { labels: { zone: 'b' } }), ...nodes.slice(1)];
  t.same(reconcileGlobal(c, tasks, relabelled, 1, counter('x')).shutdown, ['t1']);
  t.throws(() =>
    reconcileGlobal(makeService({ mode: 'global', constraints: ['zone=a'] }), [], nodes, 0, counter()),
  );
});

t.test('restart policy per node', async (t) => {
  const nodes = [makeNode('n1')];
  const failed = [makeTask('a', { nodeId: 'n1', status: { state: 'failed', timestamp: 100 } })];
  const onFailure = makeService({
    mode: 'global',
    restartPolicy: { condition: 'on-failure', delayMs: 1000, maxAttempts: 0, windowMs: 0 },
  });
  const res = reconcileGlobal(onFailure, failed, nodes, 150, counter());
  t.same(res.shutdown, ['a']);
  t.same(
    res.create.map((x) => [x.nodeId, x.notBefore]),
    [['n1', 1100]],
  );
  t.equal(res.wakeAt, 1100);
  const none = makeService({
    mode: 'global',
    restartPolicy: { condition: 'none', delayMs: 0, maxAttempts: 0, windowMs: 0 },
  });
  t.same(reconcileGlobal(none, failed, nodes, 150, counter()), { create: [], shutdown: [], remove: [] });
  // no restart on a paused node
  t.same(
    reconcileGlobal(onFailure, failed, [makeNode('n1', { availability: 'pause' })], 150, counter()).create,
    [],
  );
});
