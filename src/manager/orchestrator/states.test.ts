import t from 'tap';
import { makeTask } from './fixtures.js';
import { canTransition, endedInFailure, isTerminal, ownerOf, rankOf, TASK_STATES } from './states.js';

t.test('states are ordered and never go backwards', async (t) => {
  t.equal(TASK_STATES.length, 14);
  for (const [i, a] of TASK_STATES.entries()) {
    t.equal(rankOf(a), i);
    t.notOk(canTransition(a, a), `${a} -> ${a}`);
    for (const b of TASK_STATES.slice(0, i)) t.notOk(canTransition(a, b), `${a} -> ${b} is backwards`);
  }
  t.ok(canTransition('new', 'pending'));
  t.ok(canTransition('pending', 'running'), 'skipping forward is allowed');
  t.ok(canTransition('running', 'failed'));
  t.ok(canTransition('assigned', 'rejected'));
  t.notOk(canTransition('failed', 'running'));
  t.notOk(canTransition('complete', 'failed'), 'a terminal state does not change how it ended');
  t.ok(canTransition('failed', 'orphaned'));
  t.ok(canTransition('complete', 'remove'));
  t.throws(() => rankOf('bogus' as never));
});

t.test('terminal states and owners', async (t) => {
  t.same(TASK_STATES.filter(isTerminal), [
    'complete',
    'shutdown',
    'failed',
    'rejected',
    'remove',
    'orphaned',
  ]);
  t.same(
    TASK_STATES.filter((s) => ownerOf(s) === 'manager'),
    ['new', 'pending', 'assigned', 'remove', 'orphaned'],
  );
  t.equal(ownerOf('accepted'), 'worker');
  t.equal(ownerOf('failed'), 'worker');
});

t.test('failure vs clean exit', async (t) => {
  t.notOk(endedInFailure(makeTask('a', { status: { state: 'complete', timestamp: 1, exitCode: 0 } })));
  t.ok(endedInFailure(makeTask('a', { status: { state: 'complete', timestamp: 1, exitCode: 3 } })));
  t.ok(endedInFailure(makeTask('a', { status: { state: 'failed', timestamp: 1, exitCode: 1 } })));
  t.ok(endedInFailure(makeTask('a', { status: { state: 'rejected', timestamp: 1 } })));
  t.notOk(endedInFailure(makeTask('a')));
});
