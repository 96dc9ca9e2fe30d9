import t from 'tap';
import { SharedWork, SharedWorks } from './shared.js';

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

t.test(
  'SharedWorks: one work per key; after an abandoned one, a new one starts once it settled',
  async (t) => {
    const works = new SharedWorks<string>();
    const order: string[] = [];
    const first = works.obtain('k', (signal) => {
      order.push('first starts');
      return new Promise<string>((_resolve, reject) => {
        signal.addEventListener('abort', () =>
          setTimeout(() => {
            order.push('first cleaned up');
            reject(new Error('aborted'));
          }, 50),
        );
      });
    });
    t.ok(first.created);
    await new Promise((r) => setImmediate(r));
    const again = works.obtain('k', async () => 'unused');
    t.notOk(again.created, 'a second caller of the key joins the work going');
    t.equal(again.work, first.work);
    const gone = new AbortController();
    void first.work.join(gone.signal).catch(() => {});
    gone.abort();
    t.ok(first.work.abandoned);
    const next = works.obtain('k', async () => {
      order.push('second starts');
      return 'second';
    });
    t.ok(next.created, 'an abandoned work is not joined');
    t.equal(await next.work.join(), 'second');
    t.same(order, ['first starts', 'first cleaned up', 'second starts'], 'after the first settled');
    const later = works.obtain('k', async () => 'third');
    t.ok(later.created, 'a settled key is forgotten');
    t.equal(await later.work.join(), 'third');
  },
);
