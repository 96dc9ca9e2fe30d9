import { GRPCInvalidArgumentError, GRPCUnavailableError, isRecoverableError } from 'etcd3';
import t from 'tap';
import { CircuitOpenError, retryUnsent, shortBreaker, unsent } from './etcd-faults.js';

type Policy = {
  execute<T>(fn: (ctx: { signal: AbortSignal; attempt: number }) => PromiseLike<T> | T): Promise<T>;
};
const asPolicy = (p: unknown) => p as Policy;
const down = () => new GRPCUnavailableError('14 UNAVAILABLE: no leader');
const fail = (e: Error) => () => Promise.reject(e);

t.test(
  'a breaker opens after three recoverable failures in a row, then tries the member again',
  async (t) => {
    t.ok(isRecoverableError(down()), 'the failure used is one etcd3 deems recoverable');
    const b = asPolicy(shortBreaker({ openMs: 150 }));
    for (let i = 0; i < 3; i++) await t.rejects(b.execute(fail(down())), { message: /UNAVAILABLE/ });
    let called = false;
    const skipped = b.execute(() => {
      called = true;
      return 1;
    });
    await t.rejects(skipped, { message: /circuit breaker is open/ }, 'the open breaker skips the member');
    t.notOk(called, 'without calling it');
    await new Promise((r) => setTimeout(r, 200));
    t.equal(await b.execute(() => 2), 2, 'once open time is over, the member is called again');
  },
);

t.test('failures that are not recoverable, or a success in between, do not open it', async (t) => {
  const b = asPolicy(shortBreaker({ openMs: 10_000 }));
  for (let i = 0; i < 5; i++) await t.rejects(b.execute(fail(new GRPCInvalidArgumentError('bad key'))));
  await t.rejects(b.execute(fail(down())));
  await t.rejects(b.execute(fail(down())));
  t.equal(await b.execute(() => 'ok'), 'ok');
  await t.rejects(b.execute(fail(down())));
  await t.rejects(b.execute(fail(down())));
  t.equal(await b.execute(() => 'still'), 'still', 'two failures since the last success: still closed');
});

t.test("a client's only member is never skipped", async (t) => {
  const b = asPolicy(shortBreaker({ openMs: 10_000, single: true }));
  for (let i = 0; i < 6; i++) await t.rejects(b.execute(fail(down())));
  t.equal(await b.execute(() => 'called'), 'called');
});

t.test('which failures never reached etcd', async (t) => {
  t.ok(unsent(new CircuitOpenError(0)));
  t.ok(unsent(new Error('14 UNAVAILABLE: No connection established')));
  t.ok(unsent(new Error('connect ECONNREFUSED 10.0.0.1:2379')));
  t.notOk(unsent(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded')), 'a timeout may have been applied');
  t.notOk(unsent(down()), 'nor an answer from etcd');
});

/**
 * What etcd3's pool does with one request: each call goes through the members in turn, starting
 * after the one the last call ended on, and moves on only from a member it skipped.
 */
function pool(members: Policy[], answer: (i: number) => Promise<string>) {
  let next = 0;
  return async () => {
    let last: unknown;
    for (let n = 0; n < members.length; n++) {
      const i = next++ % members.length;
      let called = false;
      try {
        return await members[i]!.execute(() => {
          called = true;
          return answer(i);
        });
      } catch (e) {
        if (called) throw e;
        last = e;
      }
    }
    throw last;
  };
}

t.test('every member skipped: a request waits for one to be tried again', async (t) => {
  const members = [asPolicy(shortBreaker({ openMs: 300 })), asPolicy(shortBreaker({ openMs: 300 }))];
  // both members failed three calls in a row (one is gone, the other was electing a leader)
  for (const m of members) for (let i = 0; i < 3; i++) await t.rejects(m.execute(fail(down())));
  const leaderBack = (i: number) =>
    i === 0
      ? Promise.reject(new GRPCUnavailableError('14 UNAVAILABLE: No connection established'))
      : Promise.resolve('ok');
  const request = () => pool(members, leaderBack)();
  await t.rejects(request(), { message: /circuit breaker is open/ }, 'the pool alone fails at once');

  const global = asPolicy(retryUnsent({ attempts: 3, breakerWaitMs: 1_000, pollMs: 20 }));
  t.equal(
    await global.execute(pool(members, leaderBack)),
    'ok',
    'the request is answered by the member left',
  );

  for (const m of members) for (let i = 0; i < 3; i++) await t.rejects(m.execute(fail(down())));
  const impatient = asPolicy(retryUnsent({ attempts: 3, breakerWaitMs: 100, pollMs: 20 }));
  await t.rejects(
    impatient.execute(pool(members, leaderBack)),
    { message: /circuit breaker is open/ },
    'it waits no longer than breakerWaitMs',
  );
});

t.test(
  'refused connections go to the next member, a bounded number of times; sent calls are not repeated',
  async (t) => {
    const global = asPolicy(retryUnsent({ attempts: 3, breakerWaitMs: 1_000 }));
    let calls = 0;
    await t.rejects(
      global.execute(() => {
        calls++;
        return Promise.reject(new GRPCUnavailableError('14 UNAVAILABLE: No connection established'));
      }),
      { message: /No connection established/ },
    );
    t.equal(calls, 3, 'three calls, then the error');
    calls = 0;
    await t.rejects(
      global.execute(() => {
        calls++;
        return Promise.reject(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded'));
      }),
    );
    t.equal(calls, 1, 'a call that may have been applied is not made again');
  },
);
