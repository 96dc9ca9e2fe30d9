import t from 'tap';
import { applyActions, converge, counter, makeService, makeTask, report } from './fixtures.js';
import type { ServiceView, Task, UpdateConfig } from './types.js';
import { startUpdate, type UpdateAction, type UpdaterState, updateStep } from './updater.js';

const v2 = (update: Partial<UpdateConfig> = {}, over: Partial<ServiceView> = {}) => {
  const base = makeService({ version: 2, replicas: 5, ...over });
  return { ...base, update: { ...base.update, ...update } };
};
const fiveV1 = () => [1, 2, 3, 4, 5].map((slot) => makeTask(`old${slot}`, { slot }));

interface Trace {
  at: number;
  actions: UpdateAction[];
}

/** Steps, commits, lets the workers obey; stops when the update is no longer in progress. */
function drive(
  svc: ServiceView,
  tasks: Task[],
  state: UpdaterState,
  hook?: (tasks: Task[], now: number) => Task[],
  ids = counter('n'),
) {
  const trace: Trace[] = [];
  let now = 0;
  for (; now < 10_000; now++) {
    if (hook) tasks = hook(tasks, now);
    const res = updateStep(svc, 1, tasks, state, now, ids);
    state = res.state;
    if (res.actions.length > 0) trace.push({ at: now, actions: res.actions });
    tasks = converge(applyActions(tasks, res.actions), now);
    if (state.status !== 'updating' && state.status !== 'rollback_started') break;
  }
  return { tasks, state, trace, now };
}

const starts = (trace: Trace[]) =>
  trace
    .map((x) => ({ at: x.at, slots: x.actions.filter((a) => a.type === 'start').map((a) => a.slot) }))
    .filter((x) => x.slots.length > 0);

t.test('parallelism 2 over 5 slots: 3 batches with the delay between them', async (t) => {
  const svc = v2({ parallelism: 2, delayMs: 1000 });
  const { tasks, state, trace } = drive(svc, fiveV1(), startUpdate('update', svc, 1, 0));
  t.equal(state.status, 'completed');
  t.equal(state.updated, 5);
  const batches = starts(trace);
  t.same(
    batches.map((b) => b.slots),
    [[1, 2], [3, 4], [5]],
  );
  t.ok(batches[1]!.at - batches[0]!.at >= 1000, `second batch at ${batches[1]!.at}`);
  t.ok(batches[2]!.at - batches[1]!.at >= 1000, `third batch at ${batches[2]!.at}`);
  const up = tasks.filter((x) => x.desiredState === 'running');
  t.same(
    up.map((x) => [x.slot, x.specVersion, x.status.state]).sort(),
    [1, 2, 3, 4, 5].map((s) => [s, 2, 'running']),
    'every slot runs the new version',
  );
  // a finished update does nothing more
  t.same(updateStep(svc, 1, tasks, state, 99_999, counter()).actions, []);
});

t.test('stop-first: old stopped, new created ready and run once the old one ended', async (t) => {
  const svc = v2({ order: 'stop-first' }, { replicas: 1 });
  let tasks = [makeTask('old', { slot: 1 })];
  const ids = counter('n');
  let s = startUpdate('update', svc, 1, 0);
  const r1 = updateStep(svc, 1, tasks, s, 0, ids);
  t.same(
    r1.actions.map((a) => [a.type, a.type === 'start' ? a.task.desiredState : a.taskId]),
    [
      ['start', 'ready'],
      ['stop', 'old'],
    ],
  );
  tasks = applyActions(tasks, r1.actions);
  s = r1.state;
  // old still running: nothing more yet
  t.same(updateStep(svc, 1, tasks, s, 1, ids).actions, []);
  tasks = report(tasks, ['old'], 'shutdown', 2);
  const r2 = updateStep(svc, 1, tasks, s, 3, ids);
  t.same(r2.actions, [{ type: 'run', slot: 1, taskId: 'n1' }]);
});

t.test('start-first: new started, old stopped once the new one runs', async (t) => {
  const svc = v2({ order: 'start-first' }, { replicas: 1 });
  let tasks = [makeTask('old', { slot: 1 })];
  const ids = counter('n');
  const r1 = updateStep(svc, 1, tasks, startUpdate('update', svc, 1, 0), 0, ids);
  t.same(
    r1.actions.map((a) => [a.type, a.type === 'start' ? a.task.desiredState : a.taskId]),
    [['start', 'running']],
  );
  tasks = applyActions(tasks, r1.actions);
  t.same(updateStep(svc, 1, tasks, r1.state, 1, ids).actions, [], 'old stays while the new one starts');
  tasks = report(tasks, ['n1'], 'running', 2);
  const r2 = updateStep(svc, 1, tasks, r1.state, 3, ids);
  t.same(r2.actions, [{ type: 'stop', slot: 1, taskId: 'old' }]);
  t.equal(r2.state.status, 'completed');
});

/** Fails the first new task 5 ms after it starts running (within a 1 s monitor). */
const failFirst = () => {
  let done = false;
  return (tasks: Task[], now: number) => {
    const victim = tasks.find((x) => x.specVersion === 2 && x.status.state === 'running');
    if (done || !victim || now < victim.status.timestamp + 5) return tasks;
    done = true;
    return report(tasks, [victim.id], 'failed', now, 1);
  };
};

t.test('failure during monitor with ratio 0 → pause', async (t) => {
  const svc = v2({ parallelism: 1, delayMs: 100, monitorMs: 1000, failureAction: 'pause' });
  const { state, tasks } = drive(svc, fiveV1(), startUpdate('update', svc, 1, 0), failFirst());
  t.equal(state.status, 'paused');
  t.match(state.message, /paused due to failure or early termination of task n1/);
  t.equal(state.failures, 1);
  t.equal(tasks.filter((x) => x.specVersion === 2).length, 1, 'no further slot was touched');
  t.same(updateStep(svc, 1, tasks, state, 10_000, counter()).actions, [], 'paused stays paused');
});

t.test('failure during monitor → rollback, then the rollback runs with rollback config', async (t) => {
  const svc = v2({ parallelism: 1, delayMs: 100, monitorMs: 1000, failureAction: 'rollback' });
  const { state, tasks } = drive(svc, fiveV1(), startUpdate('update', svc, 1, 0), failFirst());
  t.equal(state.status, 'rollback_started');
  t.match(state.message, /rolled back/);
  // the caller swaps to the previous spec as version 3 and rolls back with rollback config
  const prev: ServiceView = {
    ...svc,
    version: 3,
    rollback: { ...svc.update, parallelism: 0, monitorMs: 0, order: 'start-first' },
  };
  const back = drive(prev, tasks, startUpdate('rollback', prev, 2, 0), undefined, counter('r'));
  t.equal(back.state.status, 'rollback_completed');
  t.same(starts(back.trace).length, 1, 'parallelism 0: every slot at once');
  const up = back.tasks.filter((x) => x.desiredState === 'running' && x.status.state === 'running');
  t.equal(up.length, 5);
  t.ok(up.every((x) => x.specVersion === 3));
});

t.test('continue ignores failures', async (t) => {
  const svc = v2({ parallelism: 1, monitorMs: 1000, failureAction: 'continue' });
  const { state } = drive(svc, fiveV1(), startUpdate('update', svc, 1, 0), failFirst());
  t.equal(state.status, 'completed');
  t.equal(state.failures, 1);
  t.equal(state.updated, 5);
});

t.test('a failure after the monitor window does not count; a tolerated ratio goes on', async (t) => {
  const svc = v2({ parallelism: 1, monitorMs: 2, failureAction: 'pause' });
  const { state } = drive(svc, fiveV1(), startUpdate('update', svc, 1, 0), failFirst());
  t.equal(state.status, 'completed');
  t.equal(state.failures, 0);
  const tolerant = v2({ parallelism: 1, monitorMs: 1000, failureAction: 'pause', maxFailureRatio: 0.5 });
  const r = drive(tolerant, fiveV1(), startUpdate('update', tolerant, 1, 0), failFirst());
  t.equal(r.state.status, 'completed', '1 failure of 5 is within 0.5… once more than 2 are updated');
});

t.test('the replicated orchestrator leaves an update in progress alone', async (t) => {
  const { reconcileReplicated } = await import('./replicated.js');
  for (const order of ['stop-first', 'start-first'] as const) {
    const svc = v2({ parallelism: 2, order });
    let tasks = fiveV1();
    let state = startUpdate('update', svc, 1, 0);
    const ids = counter('n');
    for (let now = 0; now < 50 && state.status === 'updating'; now++) {
      const res = updateStep(svc, 1, tasks, state, now, ids);
      state = res.state;
      tasks = applyActions(tasks, res.actions);
      const rec = reconcileReplicated(svc, tasks, now, counter('x'));
      t.same(rec, { create: [], shutdown: [], remove: [] }, `${order} at ${now}`);
      tasks = converge(tasks, now);
    }
    t.equal(state.status, 'completed', order);
  }
});
