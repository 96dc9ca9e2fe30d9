import t from 'tap';
import { apply, converge, counter, makeNode, makeService, makeTask, report } from './fixtures.js';
import { reconcileReplicated } from './replicated.js';
import type { RestartPolicy, Task } from './types.js';

const slotsUp = (tasks: readonly Task[]) =>
  tasks
    .filter((x) => x.desiredState === 'running')
    .map((x) => x.slot)
    .sort((a, b) => a! - b!);

/** Reconciles, commits and lets workers obey, until nothing changes (at most 10 rounds). */
function settleAll(svc = makeService(), tasks: Task[] = [], now = 0, ids = counter()) {
  for (let i = 0; i < 10; i++) {
    const res = reconcileReplicated(svc, tasks, now, ids);
    if (res.create.length + res.shutdown.length + res.remove.length === 0) return tasks;
    tasks = converge(apply(tasks, res), now);
  }
  throw new Error('did not converge');
}

t.test('initial create of N slots, then idempotent', async (t) => {
  const svc = makeService({ replicas: 3 });
  const res = reconcileReplicated(svc, [], 100, counter());
  t.same(
    res.create.map((x) => [x.id, x.slot, x.specVersion, x.desiredState, x.status.state, x.createdAt]),
    [
      ['t1', 1, 1, 'running', 'new', 100],
      ['t2', 2, 1, 'running', 'new', 100],
      ['t3', 3, 1, 'running', 'new', 100],
    ],
  );
  t.same(res.shutdown, []);
  t.same(res.remove, []);
  t.equal(res.wakeAt, undefined);
  // converged: new (not yet running) and running tasks alike give nothing to do
  const again = reconcileReplicated(svc, apply([], res), 200, counter('x'));
  t.same(again, { create: [], shutdown: [], remove: [] });
  const running = converge(apply([], res), 150);
  t.same(reconcileReplicated(svc, running, 300, counter('x')), { create: [], shutdown: [], remove: [] });
});

t.test('ignores other services', async (t) => {
  const other = makeTask('o1', { serviceId: 'other', slot: 1 });
  const res = reconcileReplicated(makeService({ replicas: 1 }), [other], 0, counter());
  t.equal(res.create.length, 1);
  t.same(res.shutdown, []);
});

t.test('scale up fills the free slots', async (t) => {
  const tasks = settleAll(makeService({ replicas: 2 }));
  t.same(slotsUp(tasks), [1, 2]);
  const res = reconcileReplicated(makeService({ replicas: 5 }), tasks, 1, counter('n'));
  t.same(
    res.create.map((x) => x.slot),
    [3, 4, 5],
  );
  // a gap is filled first
  const gap = [makeTask('a', { slot: 1 }), makeTask('b', { slot: 3 })];
  t.same(
    reconcileReplicated(makeService({ replicas: 3 }), gap, 0, counter()).create.map((x) => x.slot),
    [2],
  );
});

t.test('scale down stops the highest slots first', async (t) => {
  const tasks = settleAll(makeService({ replicas: 5 }));
  const res = reconcileReplicated(makeService({ replicas: 2 }), tasks, 1, counter('n'));
  t.same(res.create, []);
  t.same(res.shutdown.map((id) => tasks.find((x) => x.id === id)!.slot).sort(), [3, 4, 5]);
  const after = converge(apply(tasks, res), 2);
  t.same(reconcileReplicated(makeService({ replicas: 2 }), after, 3, counter('n')), {
    create: [],
    shutdown: [],
    remove: [],
  });
  // scaling back up reuses the vacated slots
  t.same(
    reconcileReplicated(makeService({ replicas: 4 }), after, 4, counter('n')).create.map((x) => x.slot),
    [3, 4],
  );
  const zero = reconcileReplicated(makeService({ replicas: 0 }), after, 5, counter('n'));
  t.equal(zero.shutdown.length, 2);
});

const policy = (p: Partial<RestartPolicy>): RestartPolicy => ({
  condition: 'any',
  delayMs: 0,
  maxAttempts: 0,
  windowMs: 0,
  ...p,
});

t.test('restart condition none: an ended slot stays dead', async (t) => {
  const svc = makeService({ replicas: 1, restartPolicy: policy({ condition: 'none' }) });
  const failed = [makeTask('a', { slot: 1, status: { state: 'failed', timestamp: 10, exitCode: 1 } })];
  t.same(reconcileReplicated(svc, failed, 20, counter()), { create: [], shutdown: [], remove: [] });
});

t.test('restart condition on-failure', async (t) => {
  const svc = makeService({ replicas: 1, restartPolicy: policy({ condition: 'on-failure' }) });
  const clean = [makeTask('a', { slot: 1, status: { state: 'complete', timestamp: 10, exitCode: 0 } })];
  t.same(reconcileReplicated(svc, clean, 20, counter()).create, [], 'a clean exit is not restarted');
  const nonZero = [makeTask('a', { slot: 1, status: { state: 'complete', timestamp: 10, exitCode: 2 } })];
  const r1 = reconcileReplicated(svc, nonZero, 20, counter());
  t.same(
    r1.create.map((x) => x.slot),
    [1],
    'a non-zero exit is',
  );
  t.same(r1.shutdown, ['a'], 'the ended task becomes history');
  const failed = [makeTask('a', { slot: 1, status: { state: 'failed', timestamp: 10 } })];
  t.equal(reconcileReplicated(svc, failed, 20, counter()).create.length, 1, 'a failure is');
  const rejected = [makeTask('a', { slot: 1, status: { state: 'rejected', timestamp: 10 } })];
  t.equal(reconcileReplicated(svc, rejected, 20, counter()).create.length, 1, 'a rejection is');
});

t.test('restart condition any: even a clean exit', async (t) => {
  const svc = makeService({ replicas: 1, restartPolicy: policy({ condition: 'any' }) });
  const clean = [makeTask('a', { slot: 1, status: { state: 'complete', timestamp: 10, exitCode: 0 } })];
  const res = reconcileReplicated(svc, clean, 20, counter());
  t.equal(res.create.length, 1);
  t.equal(res.create[0]!.notBefore, undefined, 'no delay, no notBefore');
  // once committed, converged
  t.same(reconcileReplicated(svc, apply(clean, res), 21, counter('x')), {
    create: [],
    shutdown: [],
    remove: [],
  });
});

t.test('restart delay: notBefore = failure time + delay, and wakeAt', async (t) => {
  const svc = makeService({ replicas: 1, restartPolicy: policy({ delayMs: 5000 }) });
  const failed = [makeTask('a', { slot: 1, status: { state: 'failed', timestamp: 1000 } })];
  const res = reconcileReplicated(svc, failed, 1200, counter());
  t.equal(res.create[0]!.notBefore, 6000);
  t.equal(res.wakeAt, 6000);
  const late = reconcileReplicated(svc, failed, 9000, counter());
  t.equal(late.create[0]!.notBefore, 6000, 'deterministic whenever it runs');
  t.equal(late.wakeAt, undefined, 'nothing to wake for once past');
});

t.test('max attempts within the window', async (t) => {
  const svc = makeService({ replicas: 1, restartPolicy: policy({ maxAttempts: 2, windowMs: 60_000 }) });
  const ids = counter();
  let tasks = converge(apply([], reconcileReplicated(svc, [], 0, ids)), 0);
  const fails: number[] = [];
  // fail every 10 s: two restarts, then the slot is given up
  for (let round = 1; round <= 3; round++) {
    const up = tasks.find((x) => x.desiredState === 'running' && x.status.state === 'running')!;
    tasks = report(tasks, [up.id], 'failed', round * 10_000);
    const res = reconcileReplicated(svc, tasks, round * 10_000 + 1, ids);
    fails.push(res.create.length);
    tasks = converge(apply(tasks, res), round * 10_000 + 2);
  }
  t.same(fails, [1, 1, 0]);
  const dead = tasks.find((x) => x.desiredState === 'running')!;
  t.equal(dead.status.state, 'failed', 'the slot keeps its failed task');
  t.same(dead.restarts, [10_000, 20_000]);
  t.same(reconcileReplicated(svc, tasks, 40_000, ids), { create: [], shutdown: [], remove: [] });

  // outside the window the attempts are forgotten
  const old = makeTask('x', {
    slot: 1,
    restarts: [10_000, 20_000],
    status: { state: 'failed', timestamp: 200_000 },
  });
  const res = reconcileReplicated(svc, [old], 200_001, counter('y'));
  t.equal(res.create.length, 1);
  t.same(res.create[0]!.restarts, [200_000]);

  // window 0 = ever
  const ever = makeService({ replicas: 1, restartPolicy: policy({ maxAttempts: 2, windowMs: 0 }) });
  t.equal(reconcileReplicated(ever, [old], 200_001, counter('y')).create.length, 0);
  // unlimited attempts
  const unl = makeService({ replicas: 1, restartPolicy: policy({ maxAttempts: 0 }) });
  t.equal(reconcileReplicated(unl, [old], 200_001, counter('y')).create.length, 1);
});

t.test('history pruned to the last N terminal tasks per slot', async (t) => {
  const svc = makeService({ replicas: 2 });
  const hist: Task[] = [];
  for (let k = 1; k <= 8; k++) {
    hist.push(
      makeTask(`h${k}`, {
        slot: 1,
        desiredState: 'shutdown',
        status: { state: 'failed', timestamp: k },
        createdAt: k,
      }),
    );
  }
  hist.push(makeTask('cur1', { slot: 1, createdAt: 9 }));
  hist.push(
    makeTask('old2', { slot: 2, desiredState: 'shutdown', status: { state: 'shutdown', timestamp: 1 } }),
  );
  hist.push(makeTask('cur2', { slot: 2 }));
  const res = reconcileReplicated(svc, hist, 100, counter());
  t.same(res.remove.sort(), ['h1', 'h2', 'h3']);
  t.same(res.create, []);
  const limited = reconcileReplicated(svc, hist, 100, counter(), { historyLimit: 1 });
  t.same(limited.remove.sort(), ['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7']);
  t.same(reconcileReplicated(svc, apply(hist, res), 101, counter()).remove, [], 'idempotent');
});

t.test('tasks on down, drained or deleted nodes are moved', async (t) => {
  const svc = makeService({ replicas: 3 });
  const tasks = [
    makeTask('a', { slot: 1, nodeId: 'n1', restarts: [5] }),
    makeTask('b', { slot: 2, nodeId: 'n2' }),
    makeTask('c', { slot: 3, nodeId: 'n3' }),
  ];
  const nodes = [
    makeNode('n1', { status: 'down' }),
    makeNode('n2', { availability: 'drain' }),
    makeNode('n3'),
  ];
  const res = reconcileReplicated(svc, tasks, 50, counter(), { nodes });
  t.same(res.shutdown.sort(), ['a', 'b']);
  t.same(
    res.create.map((x) => [x.slot, x.nodeId, x.restarts]),
    [
      [1, undefined, [5]],
      [2, undefined, undefined],
    ],
    'same slots, left for the scheduler, moves are no restart attempts',
  );
  const moved = apply(tasks, res);
  t.same(reconcileReplicated(svc, moved, 60, counter('x'), { nodes }), {
    create: [],
    shutdown: [],
    remove: [],
  });
  // pause and unknown keep their tasks
  const calm = [
    makeNode('n1', { availability: 'pause' }),
    makeNode('n2', { status: 'unknown' }),
    makeNode('n3'),
  ];
  t.same(reconcileReplicated(svc, tasks, 50, counter(), { nodes: calm }).shutdown, []);
  // a node that disappeared from the store
  const gone = reconcileReplicated(svc, tasks, 50, counter(), { nodes: [makeNode('n1'), makeNode('n2')] });
  t.same(gone.shutdown, ['c']);
});

t.test('duplicates of one version in a slot are stopped, versions side by side are left', async (t) => {
  const svc = makeService({ replicas: 1 });
  const dup = [
    makeTask('a', { slot: 1, createdAt: 1 }),
    makeTask('b', { slot: 1, createdAt: 2, status: { state: 'pending', timestamp: 2 } }),
  ];
  t.same(reconcileReplicated(svc, dup, 3, counter()).shutdown, ['b'], 'the most advanced stays');
  const update = [makeTask('a', { slot: 1 }), makeTask('b', { slot: 1, specVersion: 2 })];
  t.same(reconcileReplicated(svc, update, 3, counter()).shutdown, []);
});
