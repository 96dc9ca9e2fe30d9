import t from 'tap';
import type { JobRunRecord, JobSchedule } from '../../api/cluster.js';
import { decideFiring, type FiringInput, ON_TIME_MS, pruneRuns } from './firing.js';

const schedule = (over: Partial<JobSchedule> = {}): JobSchedule => ({
  cron: '*/2 * * * * *',
  timezone: 'UTC',
  concurrency: 'forbid',
  history: 5,
  missed: 'run-once',
  ...over,
});
const input = (over: Partial<FiringInput> = {}): FiringInput => ({
  schedule: schedule(),
  due: [],
  more: 0,
  now: 100_000,
  iteration: 3,
  running: false,
  seq: 7,
  ...over,
});

t.test('nothing due: no firing', async (t) => {
  t.equal(decideFiring(input()), undefined);
});

t.test('one time due on time: one run, the cursor moves to it', async (t) => {
  const d = decideFiring(input({ due: [99_000] }))!;
  t.equal(d.cursor, 99_000);
  t.equal(d.iteration, 4);
  t.same(d.records, [
    { seq: 8, trigger: 'schedule', scheduledAt: 99_000, createdAt: 100_000, iteration: 4, result: 'running' },
  ]);
});

t.test('forbid: a firing while the run goes is recorded as skipped, no new run', async (t) => {
  const d = decideFiring(input({ due: [99_000], running: true }))!;
  t.equal(d.iteration, 3);
  t.equal(d.cursor, 99_000);
  t.match(d.records, [{ seq: 8, result: 'skipped', scheduledAt: 99_000, reason: /run 3 is still going/ }]);
  t.equal(d.records.length, 1);
});

t.test('allow and replace start a new run while one goes', async (t) => {
  for (const concurrency of ['allow', 'replace'] as const) {
    const d = decideFiring(input({ due: [99_000], running: true, schedule: schedule({ concurrency }) }))!;
    t.equal(d.iteration, 4, concurrency);
    t.match(d.records, [{ result: 'running', iteration: 4 }]);
  }
});

t.test('missed times with run-once: one run stands for all of them', async (t) => {
  const now = 100_000;
  const due = [60_000, 62_000, 98_000];
  const d = decideFiring(input({ due, now }))!;
  t.equal(d.records.length, 1);
  t.match(d.records[0], {
    scheduledAt: 98_000,
    missed: [60_000, 62_000],
    iteration: 4,
    reason: /also stands for 2 scheduled times missed/,
  });
  t.equal(d.cursor, 98_000);
  // the newest one late too: still one run, for all three
  const late = decideFiring(input({ due, now: 98_000 + ON_TIME_MS + 1 }))!;
  t.match(late.records, [{ scheduledAt: 98_000, missed: [60_000, 62_000], reason: /one late run for 3/ }]);
});

t.test('missed times with skip: one skipped record for them, the on-time one runs', async (t) => {
  const s = schedule({ missed: 'skip' });
  const d = decideFiring(input({ due: [60_000, 62_000, 98_000], schedule: s, more: 4 }))!;
  t.equal(d.records.length, 2);
  t.match(d.records[0], {
    seq: 8,
    result: 'skipped',
    scheduledAt: 62_000,
    missed: [60_000],
    missedMore: 4,
    reason: /missed: 6 scheduled times/,
  });
  t.match(d.records[1], { seq: 9, result: 'running', scheduledAt: 98_000, iteration: 4 });
  t.notOk('missed' in d.records[1]!);
  const allLate = decideFiring(input({ due: [60_000, 62_000], schedule: s, now: 200_000 }))!;
  t.equal(allLate.records.length, 1);
  t.equal(allLate.iteration, 3, 'no run');
  t.equal(allLate.cursor, 62_000);
});

t.test('every due time ends in exactly one record', async (t) => {
  for (const missed of ['run-once', 'skip'] as const)
    for (const running of [false, true])
      for (const now of [100_000, 200_000]) {
        const due = [50_000, 52_000, 54_000, 98_000];
        const d = decideFiring(input({ due, now, running, schedule: schedule({ missed }) }))!;
        const covered = d.records
          .flatMap((r) => [...(r.missed ?? []), r.scheduledAt])
          .sort((a, b) => a! - b!);
        t.same(covered, due, `${missed} running=${running} now=${now}`);
      }
});

t.test('pruning keeps the last runs and the skips among them, never a run going', async (t) => {
  const rec = (seq: number, iteration: number | undefined, result: JobRunRecord['result']): JobRunRecord => ({
    serviceId: 's',
    serviceName: 'j',
    seq,
    trigger: 'schedule',
    ...(iteration !== undefined ? { iteration } : {}),
    createdAt: seq,
    result,
  });
  const records = [
    rec(1, 1, 'running'), // allow: still going
    rec(2, 2, 'succeeded'),
    rec(3, undefined, 'skipped'),
    rec(4, 3, 'failed'),
    rec(5, undefined, 'skipped'),
    rec(6, 4, 'succeeded'),
  ];
  t.same(
    pruneRuns(records, 2).map((r) => r.seq),
    [2, 3],
    'runs 3 and 4 are kept with the skip between them; run 1 still goes',
  );
  t.same(pruneRuns(records, 10), []);
  t.same(
    pruneRuns(
      [rec(1, undefined, 'skipped'), rec(2, undefined, 'skipped'), rec(3, undefined, 'skipped')],
      2,
    ).map((r) => r.seq),
    [1],
  );
});
