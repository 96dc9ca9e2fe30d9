import t from 'tap';
import { CronClock, cronError, scheduleFrom, timezoneError } from './schedule.js';

t.test('cron expressions are checked with node-cron, with a clear message', async (t) => {
  t.equal(cronError('*/5 * * * *'), undefined);
  t.equal(cronError('*/2 * * * * *'), undefined, 'seconds first');
  t.equal(cronError('0 9 * * mon-fri'), undefined, 'names');
  t.match(cronError('* * *'), /5 fields .* or 6 with seconds first/);
  t.match(cronError('* * * * * * *'), /5 fields/);
  t.match(cronError('61 * * * *'), /invalid cron expression "61 \* \* \* \*": minute/);
  t.match(cronError('* * * * 99'), /week day/);
  t.match(cronError(''), /invalid cron expression ""/);
});

t.test('time zones are IANA names', async (t) => {
  t.equal(timezoneError('Europe/Berlin'), undefined);
  t.equal(timezoneError('UTC'), undefined);
  t.match(timezoneError('Mars/Olympus'), /unknown time zone "Mars\/Olympus"/);
});

t.test('a schedule gets its defaults; bad parts are refused', async (t) => {
  t.same(scheduleFrom({ cron: ' */5 * * * * ' }), {
    cron: '*/5 * * * *',
    timezone: 'UTC',
    concurrency: 'forbid',
    history: 5,
    missed: 'run-once',
  });
  t.throws(() => scheduleFrom({ cron: 'nope' }), { code: 'invalid_argument', message: /invalid cron/ });
  t.throws(() => scheduleFrom({ cron: '* * * * *', timezone: 'Nowhere/X' }), {
    message: /unknown time zone/,
  });
  t.throws(() => scheduleFrom({ cron: '* * * * *', concurrency: 'sometimes' as 'allow' }), {
    message: /forbid, allow or replace/,
  });
  t.throws(() => scheduleFrom({ cron: '* * * * *', history: 0 }), {
    message: /history must be a whole number ≥ 1/,
  });
  t.throws(() => scheduleFrom({ cron: '* * * * *', missed: 'later' as 'skip' }), {
    message: /run-once or skip/,
  });
  t.throws(() => scheduleFrom({}), { message: /needs a cron expression/ });
});

t.test('firing times between two instants, in the schedule’s time zone', async (t) => {
  const base = Date.UTC(2026, 0, 5, 10, 0, 0); // a Monday, 10:00 UTC = 11:00 in Berlin
  const every2s = new CronClock(scheduleFrom({ cron: '*/2 * * * * *' }));
  t.same(every2s.between(base, base + 7000).times, [base + 2000, base + 4000, base + 6000], '(after, until]');
  t.same(every2s.between(base - 1, base).times, [base], 'until is included');
  const capped = every2s.between(base, base + 60_000, 10);
  t.equal(capped.times.length, 10);
  t.equal(capped.more, 20, 'the older ones are counted');
  t.equal(capped.times.at(-1), base + 60_000, 'the newest are kept');

  const berlin = new CronClock(scheduleFrom({ cron: '30 11 * * *', timezone: 'Europe/Berlin' }));
  t.same(berlin.between(base, base + 24 * 3600_000).times, [base + 30 * 60_000], '11:30 Berlin = 10:30 UTC');
  const weekdays = new CronClock(scheduleFrom({ cron: '0 12 * * sat,sun' }));
  t.same(
    weekdays.between(base, base + 7 * 24 * 3600_000).times.map((x) => new Date(x).getUTCDay()),
    [6, 0],
    'only the weekend',
  );
  const next = every2s.next()!;
  t.ok(next > Date.now() && next <= Date.now() + 2000 && next % 2000 === 0, 'the next firing');

  // daylight saving time in Berlin: 2026-10-25 03:00 CEST falls back to 02:00 CET
  const fallBack = new CronClock(scheduleFrom({ cron: '30 2 * * *', timezone: 'Europe/Berlin' }));
  const day = Date.UTC(2026, 9, 24, 12);
  t.same(
    fallBack.between(day, day + 24 * 3600_000).times,
    [Date.UTC(2026, 9, 25, 0, 30)],
    'the repeated 02:30 fires once',
  );
  const spring = Date.UTC(2026, 2, 28, 12); // 2026-03-29 02:00 CET jumps to 03:00 CEST
  t.same(
    fallBack.between(spring, spring + 24 * 3600_000).times,
    [],
    'a 02:30 that does not exist: no firing',
  );
});
