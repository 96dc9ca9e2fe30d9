import t from 'tap';
import { makeTask } from './fixtures.js';
import { DEFAULT_HISTORY_LIMIT, historyKey, pruneGroup, pruneHistory } from './history.js';
import type { Task, TaskState } from './types.js';

/** An ended task of slot 1 that ended at `at` (stopped by its orchestrator unless told otherwise). */
const ended = (id: string, at: number, over: Partial<Task> = {}, state: TaskState = 'failed'): Task =>
  makeTask(id, {
    slot: 1,
    desiredState: 'shutdown',
    status: { state, timestamp: at },
    createdAt: at - 1,
    ...over,
  });

t.test('a slot keeps its newest `limit` ended tasks; the running one never counts', async (t) => {
  t.equal(DEFAULT_HISTORY_LIMIT, 5, "Docker's default");
  const group = [
    ...[3, 1, 8, 5, 2, 7, 4, 6].map((k) => ended(`e${k}`, k * 10)),
    makeTask('live', { slot: 1, createdAt: 100 }),
  ];
  t.same(pruneGroup(group, 5).sort(), ['e1', 'e2', 'e3'], 'the three oldest go');
  t.same(pruneGroup(group, 1).sort(), ['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7']);
  t.same(pruneGroup(group, 0).length, 8, 'limit 0 keeps no history');
  t.same(pruneGroup(group, -1), [], 'a negative limit keeps everything');
  t.same(pruneGroup(group, 8), [], 'within the limit: nothing');
  const kept = group.filter((x) => !pruneGroup(group, 5).includes(x.id));
  t.equal(kept.filter((x) => x.status.state === 'failed').length, 5);
  t.ok(kept.some((x) => x.id === 'live'));
});

t.test('ties on the status time are broken by creation; ids are unique', async (t) => {
  const group = [
    ended('a', 10, { createdAt: 1 }),
    ended('b', 10, { createdAt: 2 }),
    ended('c', 10, { createdAt: 3 }),
  ];
  t.same(pruneGroup(group, 2), ['a']);
});

t.test('a task still wanted up is kept unless this pass stops it', async (t) => {
  // a job's success and a failure the restart policy gave up on stay desired running
  const group = [
    ended('success', 1, { desiredState: 'running' }, 'complete'),
    ...[2, 3, 4].map((k) => ended(`old${k}`, k)),
    ended('newest', 9, { desiredState: 'running' }),
  ];
  t.same(pruneGroup(group, 1).sort(), ['old2', 'old3', 'old4'], 'the success is never deleted');
  t.same(pruneGroup(group, 1, new Set(['success'])).sort(), ['old2', 'old3', 'old4', 'success']);
});

t.test('history is kept per slot, or per node for the global modes, across versions', async (t) => {
  const tasks: Task[] = [];
  for (let k = 1; k <= 7; k++) {
    tasks.push(ended(`s1v${k}`, k, { slot: 1, nodeId: 'n1', specVersion: k }));
    tasks.push(ended(`s2v${k}`, k, { slot: 2, nodeId: 'n1', specVersion: 1 }));
  }
  tasks.push(ended('removing', 0, { slot: 1, desiredState: 'remove' }));
  tasks.push(ended('noslot', 0, { slot: undefined as unknown as number }));
  t.same(pruneHistory('replicated', tasks, 5).sort(), ['s1v1', 's1v2', 's2v1', 's2v2']);
  t.same(pruneHistory('replicated-job', tasks, 5).length, 4);
  // the same tasks as a global service's: all 14 on node n1, one group
  t.same(pruneHistory('global', tasks, 5).length, 9);
  t.same(pruneHistory('global-job', tasks, 12).sort(), ['s1v1', 's2v1']);
  t.equal(historyKey('global', makeTask('x', { nodeId: 'n9', slot: 3 })), 'n:n9');
  t.equal(historyKey('replicated', makeTask('x', { nodeId: 'n9', slot: 3 })), 's:3');
  t.equal(historyKey('global-job', makeTask('x')), undefined);
});
