import t from 'tap';
import { apply, converge, counter, makeNode, makeService, report } from './fixtures.js';
import { reconcileJobs } from './jobs.js';
import type { Task } from './types.js';

const live = (tasks: readonly Task[]) =>
  tasks.filter((x) => x.desiredState === 'running' && !['complete', 'failed'].includes(x.status.state));

t.test('replicated job: completions counted, at most `replicas` at once', async (t) => {
  const job = makeService({
    mode: 'replicated-job',
    replicas: 2,
    totalCompletions: 5,
    restartPolicy: { condition: 'on-failure', delayMs: 0, maxAttempts: 0, windowMs: 0 },
  });
  const ids = counter();
  let tasks: Task[] = [];
  let now = 0;
  const seen: number[] = [];
  let failedOnce = false;
  for (let round = 0; round < 20; round++) {
    const res = reconcileJobs(job, tasks, [], now, ids);
    tasks = converge(apply(tasks, res), now);
    const up = live(tasks);
    t.ok(up.length <= 2, `round ${round}: ${up.length} running`);
    seen.push(res.progress.succeeded);
    if (res.progress.done) break;
    now += 10;
    // each round the first running task completes; the very first one fails once
    const first = up[0];
    if (!first) continue;
    if (!failedOnce) {
      tasks = report(tasks, [first.id], 'failed', now, 1);
      failedOnce = true;
    } else tasks = report(tasks, [first.id], 'complete', now, 0);
  }
  const final = reconcileJobs(job, tasks, [], now, ids);
  t.same(final.progress, { total: 5, succeeded: 5, failed: 0, running: 0, done: true });
  t.same(final.create, []);
  t.same(
    seen,
    [...seen].sort((a, b) => a - b),
    'succeeded never decreases',
  );
  t.equal(tasks.filter((x) => x.status.state === 'complete').length, 5);
  t.equal(tasks.filter((x) => x.status.state === 'failed').length, 1);
});

t.test('replicated job: first round and a failure given up', async (t) => {
  const job = makeService({
    mode: 'replicated-job',
    replicas: 3,
    totalCompletions: 4,
    restartPolicy: { condition: 'none', delayMs: 0, maxAttempts: 0, windowMs: 0 },
  });
  const first = reconcileJobs(job, [], [], 0, counter());
  t.same(
    first.create.map((x) => x.slot),
    [1, 2, 3],
  );
  t.same(first.progress, { total: 4, succeeded: 0, failed: 0, running: 3, done: false });
  let tasks = converge(apply([], first), 1);
  tasks = report(tasks, ['t1'], 'failed', 2, 1);
  tasks = report(tasks, ['t2', 't3'], 'complete', 2, 0);
  const next = reconcileJobs(job, tasks, [], 3, counter('x'));
  t.same(
    next.create.map((x) => x.slot),
    [4],
  );
  t.same(next.progress, { total: 4, succeeded: 2, failed: 1, running: 1, done: false });
  tasks = report(converge(apply(tasks, next), 4), ['x1'], 'complete', 5, 0);
  t.same(reconcileJobs(job, tasks, [], 6, counter('y')).progress, {
    total: 4,
    succeeded: 3,
    failed: 1,
    running: 0,
    done: true,
  });
  // a new version is a new run
  const v2 = reconcileJobs({ ...job, version: 2 }, tasks, [], 7, counter('z'));
  t.equal(v2.create.length, 3);
  t.equal(v2.progress.succeeded, 0);
});

t.test('global job: one success per eligible node, a late node runs it too', async (t) => {
  const job = makeService({ mode: 'global-job', constraints: ['node.labels.gpu!=no'] });
  const nodes = [makeNode('n1'), makeNode('n2'), makeNode('n3', { labels: { gpu: 'no' } })];
  const r1 = reconcileJobs(job, [], nodes, 0, counter());
  t.same(r1.create.map((x) => x.nodeId).sort(), ['n1', 'n2']);
  let tasks = report(converge(apply([], r1), 1), ['t1', 't2'], 'complete', 2, 0);
  const r2 = reconcileJobs(job, tasks, nodes, 3, counter('x'));
  t.same(r2.create, []);
  t.same(r2.progress, { total: 2, succeeded: 2, failed: 0, running: 0, done: true });
  const late = [...nodes, makeNode('n4')];
  const r3 = reconcileJobs(job, tasks, late, 4, counter('y'));
  t.same(
    r3.create.map((x) => x.nodeId),
    ['n4'],
  );
  t.same(r3.progress, { total: 3, succeeded: 2, failed: 0, running: 1, done: false });
  tasks = report(converge(apply(tasks, r3), 5), ['y1'], 'complete', 6, 0);
  t.same(reconcileJobs(job, tasks, late, 7, counter('z')).progress.done, true);
});

t.test('a new version is a new run: the old run becomes history, pruned as any other', async (t) => {
  const job = makeService({
    mode: 'replicated-job',
    replicas: 2,
    totalCompletions: 2,
    restartPolicy: { condition: 'on-failure', delayMs: 0, maxAttempts: 0, windowMs: 0 },
  });
  let tasks = converge(apply([], reconcileJobs(job, [], [], 0, counter())), 1);
  tasks = report(tasks, ['t1', 't2'], 'complete', 2, 0);
  t.same(reconcileJobs(job, tasks, [], 3, counter('y')).progress.done, true);
  const v2 = { ...job, version: 2 };
  const r = reconcileJobs(v2, tasks, [], 3, counter('x'));
  t.same(r.shutdown.sort(), ['t1', 't2'], "the old run's successes no longer count");
  t.same(
    r.create.map((x) => x.slot),
    [1, 2],
  );
  t.same(r.remove, [], 'within the history limit');
  const none = reconcileJobs(v2, tasks, [], 3, counter('x'), { historyLimit: 0 });
  t.same(none.remove.sort(), ['t1', 't2'], 'no history kept: deleted at once');
  t.same(none.shutdown, []);
});

t.test('a job task that keeps failing: its slot keeps at most the history limit', async (t) => {
  const job = makeService({
    mode: 'replicated-job',
    replicas: 1,
    restartPolicy: { condition: 'on-failure', delayMs: 0, maxAttempts: 0, windowMs: 0 },
  });
  const ids = counter();
  let tasks: Task[] = [];
  for (let round = 1; round <= 12; round++) {
    tasks = converge(
      apply(tasks, reconcileJobs(job, tasks, [], round * 10, ids, { historyLimit: 3 })),
      round * 10,
    );
    const up = live(tasks);
    t.equal(up.length, 1, `round ${round}: one task runs`);
    t.ok(tasks.filter((x) => x.status.state === 'failed').length <= 3, `round ${round}: ≤ 3 ended kept`);
    tasks = report(tasks, [up[0]!.id], 'failed', round * 10 + 5, 1);
  }
  t.equal(ids(), 't13', '12 tasks were run, one per failure');
});

t.test('runs: tasks carry the job iteration; an earlier run stops unless concurrency is allow', async (t) => {
  const base = {
    mode: 'replicated-job' as const,
    replicas: 1,
    totalCompletions: 1,
    restartPolicy: { condition: 'on-failure' as const, delayMs: 0, maxAttempts: 0, windowMs: 0 },
  };
  const ids = counter();
  const waiting = reconcileJobs(makeService({ ...base, jobIteration: 0 }), [], [], 0, ids);
  t.same(waiting.create, [], 'iteration 0: a schedule that has not fired runs nothing');
  t.ok(waiting.progress.done);

  const run1 = makeService({ ...base, jobIteration: 1 });
  let tasks = converge(apply([], reconcileJobs(run1, [], [], 0, ids)), 0);
  t.same(
    tasks.map((x) => x.jobIteration),
    [1],
  );
  // run 2 fires while run 1 still goes; the spec version is the same
  for (const concurrency of ['forbid', 'replace', 'allow'] as const) {
    const run2 = makeService({ ...base, jobIteration: 2, concurrency });
    const res = reconcileJobs(run2, tasks, [], 10, ids);
    t.same(
      res.create.map((x) => x.jobIteration),
      [2],
      `${concurrency}: a task for run 2`,
    );
    t.same(
      res.shutdown,
      concurrency === 'allow' ? [] : [tasks[0]!.id],
      `${concurrency}: run 1 ${concurrency === 'allow' ? 'goes on' : 'stops'}`,
    );
    t.same(res.progress, { total: 1, succeeded: 0, failed: 0, running: 1, done: false });
  }
  // allow, and run 1's node is lost: its task stops anyway
  const lost = reconcileJobs(
    makeService({ ...base, jobIteration: 2, concurrency: 'allow' }),
    tasks.map((x) => ({ ...x, nodeId: 'gone' })),
    [makeNode('gone', { status: 'down' })],
    10,
    ids,
  );
  t.same(lost.shutdown, [tasks[0]!.id]);
  // a run succeeded in iteration 1 does not count for iteration 2
  tasks = report(tasks, [tasks[0]!.id], 'complete', 20, 0);
  t.ok(reconcileJobs(run1, tasks, [], 30, ids).progress.done, 'run 1 done');
  t.notOk(
    reconcileJobs(makeService({ ...base, jobIteration: 2 }), tasks, [], 30, ids).progress.done,
    'run 2 not',
  );
});
