import t from 'tap';
import { SharedWork } from './shared.js';

/** Work that ends when told to, or when its signal aborts. */
function controllable() {
  let finish!: (v: string) => void;
  let seen: AbortSignal | undefined;
  const work = new SharedWork<string>(
    (signal) =>
      new Promise<string>((resolve, reject) => {
        seen = signal;
        finish = resolve;
        signal.addEventListener('abort', () => reject(new Error('work aborted')));
      }),
  );
  return { work, finish: (v: string) => finish(v), signal: () => seen! };
}

t.test('the work goes on while one caller waits; every caller gets its result', async (t) => {
  const { work, finish, signal } = controllable();
  const a = new AbortController();
  const first = work.join(a.signal);
  const second = work.join(new AbortController().signal);
  a.abort(new Error('first went away'));
  await t.rejects(first, /first went away/, 'the caller that went away is rejected at once');
  t.notOk(signal().aborted, 'the other still waits: the work goes on');
  finish('done');
  t.equal(await second, 'done');
  t.notOk(work.abandoned);
});

t.test('when every caller has gone, the work is aborted', async (t) => {
  const { work, signal } = controllable();
  const a = new AbortController();
  const b = new AbortController();
  const pa = work.join(a.signal);
  const pb = work.join(b.signal);
  a.abort();
  t.notOk(signal().aborted);
  b.abort();
  t.ok(signal().aborted, 'aborted once the last caller left');
  t.ok(work.abandoned);
  await t.rejects(pa);
  await t.rejects(pb);
  await t.rejects(work.done, /work aborted/);
});

t.test('a caller without a signal keeps the work going; an aborted signal leaves at once', async (t) => {
  const { work, finish, signal } = controllable();
  const forever = work.join();
  const gone = new AbortController();
  gone.abort(new Error('already gone'));
  await t.rejects(work.join(gone.signal), /already gone/);
  t.notOk(signal().aborted, 'the caller without a signal still waits');
  finish('ok');
  t.equal(await forever, 'ok');
});

t.test('callers leaving after the work ended abort nothing', async (t) => {
  const { work, finish, signal } = controllable();
  const a = new AbortController();
  const p = work.join(a.signal);
  finish('fine');
  t.equal(await p, 'fine');
  a.abort();
  t.notOk(signal().aborted);
});
