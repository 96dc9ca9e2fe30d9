import t from 'tap';
import { type HealthProbe, initialHealth, nextHealth, probeArgv, resolveHealthcheck } from './health.js';

const probe = (exitCode: number): HealthProbe => ({
  start: 's',
  end: 'e',
  exitCode,
  output: `exit ${exitCode}`,
});

t.test('healthy after one success, unhealthy after `retries` failures in a row', async (t) => {
  let h = initialHealth();
  h = nextHealth(h, probe(1), { retries: 2, inStartPeriod: false });
  t.match(h, { status: 'starting', failingStreak: 1 });
  h = nextHealth(h, probe(0), { retries: 2, inStartPeriod: false });
  t.match(h, { status: 'healthy', failingStreak: 0 });
  h = nextHealth(h, probe(1), { retries: 2, inStartPeriod: false });
  t.match(h, { status: 'healthy', failingStreak: 1 }, 'one failure is not enough');
  h = nextHealth(h, probe(-1), { retries: 2, inStartPeriod: false });
  t.match(h, { status: 'unhealthy', failingStreak: 2 }, 'a timeout counts as a failure');
  h = nextHealth(h, probe(0), { retries: 2, inStartPeriod: false });
  t.equal(h.status, 'healthy', 'and a success makes it healthy again');
  for (let i = 0; i < 7; i++) h = nextHealth(h, probe(i % 2), { retries: 9, inStartPeriod: false });
  t.equal(h.log.length, 5, 'the last 5 probes are kept');
});

t.test('failures during the start period do not count until the first success', async (t) => {
  let h = initialHealth();
  for (let i = 0; i < 5; i++) h = nextHealth(h, probe(1), { retries: 1, inStartPeriod: true });
  t.match(h, { status: 'starting', failingStreak: 0 });
  h = nextHealth(h, probe(0), { retries: 1, inStartPeriod: true });
  t.equal(h.status, 'healthy');
  h = nextHealth(h, probe(1), { retries: 1, inStartPeriod: true });
  t.equal(h.status, 'unhealthy', 'once healthy, a failure counts even in the start period');
});

t.test('the healthcheck: the request over the image, defaults as Docker', async (t) => {
  t.equal(resolveHealthcheck(undefined, undefined), undefined);
  t.same(resolveHealthcheck(undefined, { test: ['CMD-SHELL', 'true'] }), {
    test: ['CMD-SHELL', 'true'],
    intervalMs: 30_000,
    timeoutMs: 30_000,
    startPeriodMs: 0,
    startIntervalMs: 5_000,
    retries: 3,
  });
  const image = { Test: ['CMD', 'check'], Interval: 2e9, Timeout: 1e9, Retries: 5, StartPeriod: 3e9 };
  t.match(resolveHealthcheck(image, undefined), {
    test: ['CMD', 'check'],
    intervalMs: 2000,
    timeoutMs: 1000,
    retries: 5,
    startPeriodMs: 3000,
  });
  t.match(resolveHealthcheck(image, { intervalMs: 500 }), {
    test: ['CMD', 'check'],
    intervalMs: 500,
    retries: 5,
  });
  t.equal(resolveHealthcheck(image, { test: ['NONE'] }), undefined, 'NONE disables the image’s');
  t.throws(() => resolveHealthcheck(undefined, { test: ['SHELL', 'x'] }), {
    message: /CMD, CMD-SHELL or NONE/,
  });
  t.throws(() => resolveHealthcheck(undefined, { test: ['CMD'] }), { message: /no command/ });
  t.throws(() => resolveHealthcheck(undefined, { test: ['CMD', 'x'], retries: 1.5 }), { message: /retries/ });
  t.same(probeArgv(['CMD-SHELL', 'test -f /ok']), ['/bin/sh', '-c', 'test -f /ok']);
  t.same(probeArgv(['CMD', 'curl', '-f', 'x']), ['curl', '-f', 'x']);
});
