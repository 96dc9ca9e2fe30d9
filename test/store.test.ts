import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { TsswarmError } from '../src/api/errors.js';
import { cleanupPrefix } from '../src/engine/cleanup.js';
import { EtcdSupervisor } from '../src/manager/etcd/supervisor.js';
import { StoreConflict } from '../src/manager/store/errors.js';
import type { StoreValue, WatchEvent } from '../src/manager/store/types.js';
import { alive, etcdPids, freePort, startEtcd, usedPrefixes } from './lib/etcd.js';
import { uniquePrefix } from './lib/harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects watch events; waitFor resolves as soon as the events satisfy a predicate. */
class Recorder<T extends StoreValue = StoreValue> {
  events: Array<WatchEvent<T>> = [];
  private waiters: Array<() => void> = [];
  readonly handler = (ev: WatchEvent<T>) => {
    this.events.push(ev);
    for (const w of this.waiters.splice(0)) w();
  };
  async waitFor(
    pred: (evs: Array<WatchEvent<T>>) => boolean,
    what: string,
    timeoutMs = 20_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.events)) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.summary())}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }
  /** Events as short strings: "create services/a", "reset a,b". */
  summary(): string[] {
    return this.events.map((e) =>
      e.type === 'reset' ? `reset ${e.items.map((i) => i.id).join(',')}` : `${e.type} ${e.kind}/${e.id}`,
    );
  }
}

async function rejectsWith(
  t: Test,
  p: Promise<unknown>,
  code: string,
  match?: RegExp,
): Promise<TsswarmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, TsswarmError, `throws a TsswarmError (${code})`);
  t.equal((err as TsswarmError).code, code);
  if (match) t.match((err as Error).message, match);
  return err as TsswarmError;
}

t.test('CRUD with versions, typed errors and the stored format', async (t) => {
  const etcd = await startEtcd(t);
  const s = etcd.store();
  const v1 = await s.create('services', 'web', { image: 'nginx', replicas: 1 });
  t.ok(v1 > 0, 'create returns a version');
  t.same(await s.get('services', 'web'), { value: { image: 'nginx', replicas: 1 }, version: v1 });
  await rejectsWith(
    t,
    s.create('services', 'web', { image: 'x' }),
    'conflict',
    /services\/web already exists/,
  );

  const v2 = await s.update('services', 'web', { image: 'nginx', replicas: 3 }, v1);
  t.ok(v2 > v1, 'update returns a newer version');
  const stale = await rejectsWith(
    t,
    s.update('services', 'web', { replicas: 9 }, v1),
    'conflict',
    /expected version/,
  );
  t.type(stale, StoreConflict);
  t.same((stale as StoreConflict).actualVersion, v2);
  t.same(
    (await s.get('services', 'web')).value,
    { image: 'nginx', replicas: 3 },
    'a stale update changed nothing',
  );

  const raw = await etcd.client().get('/tsswarm/v1/services/web').string();
  t.same(
    JSON.parse(raw!),
    { schema: 1, image: 'nginx', replicas: 3 },
    'stored as {schema: 1, ...object} under /tsswarm/v1/<kind>/<id>',
  );

  await s.create('services', 'api', { image: 'api' });
  await s.create('nodes', 'n1', { hostname: 'h1' });
  const listing = await s.list('services');
  t.same(
    listing.items.map((i) => i.id),
    ['api', 'web'],
    'list: one kind, sorted by id',
  );
  t.ok(listing.revision >= v2, 'list carries its revision');

  await rejectsWith(t, s.delete('services', 'web', v1), 'conflict');
  t.equal(await s.delete('services', 'web', v2), true);
  await rejectsWith(t, s.get('services', 'web'), 'not_found');
  t.equal(await s.find('services', 'web'), undefined);
  await rejectsWith(t, s.update('services', 'web', { a: 1 }, v2), 'not_found');
  t.equal(await s.delete('services', 'web'), false, 'an unconditional delete of nothing says so');

  await rejectsWith(t, s.get('Services', 'x'), 'invalid_argument');
  await rejectsWith(t, s.create('services', 'a/b', {}), 'invalid_argument');
  await rejectsWith(t, s.create('services', 'x', { schema: 2 }), 'invalid_argument');
  await rejectsWith(t, s.create('services', 'x', [] as unknown as StoreValue), 'invalid_argument');
  await etcd
    .client()
    .put('/tsswarm/v1/services/future')
    .value(JSON.stringify({ schema: 2, a: 1 }));
  await rejectsWith(t, s.get('services', 'future'), 'unsupported', /newer tsswarm/);
});

t.test('an etcd that is down is daemon_unreachable', async (t) => {
  const etcd = await startEtcd(t);
  const s = etcd.store({ callTimeoutMs: 1_000 });
  await s.create('nodes', 'n1', {});
  await etcd.members[0]!.stop();
  await rejectsWith(
    t,
    s.get('nodes', 'n1'),
    'daemon_unreachable',
    /etcd is unreachable at http:\/\/127\.0\.0\.1:\d+/,
  );
});

t.test('optimistic concurrency between two clients', async (t) => {
  const etcd = await startEtcd(t);
  const a = etcd.store();
  const b = etcd.store();
  await a.create('services', 'web', { replicas: 1 });
  const [ra, rb] = await Promise.all([a.get('services', 'web'), b.get('services', 'web')]);
  t.equal(ra.version, rb.version);
  await a.update('services', 'web', { replicas: 2 }, ra.version);
  const err = await rejectsWith(t, b.update('services', 'web', { replicas: 5 }, rb.version), 'conflict');
  t.match(err, { kind: 'services', id: 'web', expectedVersion: rb.version });
  t.same((await b.get('services', 'web')).value, { replicas: 2 }, "the first writer's value stands");
});

t.test('a multi-key txn is all or nothing', async (t) => {
  const etcd = await startEtcd(t);
  const s = etcd.store();
  const va = await s.create('services', 'a', { n: 1 });
  const vb = await s.create('services', 'b', { n: 1 });
  await s.update('services', 'b', { n: 2 }, vb); // b's version is now stale for the txn below
  const before = await s.revision();
  const err = await rejectsWith(
    t,
    s.txn([
      { op: 'update', kind: 'services', id: 'a', value: { n: 10 }, expectedVersion: va },
      { op: 'update', kind: 'services', id: 'b', value: { n: 10 }, expectedVersion: vb },
      { op: 'create', kind: 'tasks', id: 't1', value: { service: 'a' } },
    ]),
    'conflict',
    /services\/b/,
  );
  t.match(err, { kind: 'services', id: 'b' }, 'the conflict names the stale key');
  t.same((await s.get('services', 'a')).value, { n: 1 }, 'a unchanged');
  t.equal(await s.find('tasks', 't1'), undefined, 't1 not created');
  t.equal(await s.revision(), before, 'nothing was written at all');

  const b = await s.get('services', 'b');
  const res = await s.txn([
    { op: 'update', kind: 'services', id: 'a', value: { n: 10 }, expectedVersion: va },
    { op: 'delete', kind: 'services', id: 'b', expectedVersion: b.version },
    { op: 'create', kind: 'tasks', id: 't1', value: { service: 'a' } },
  ]);
  t.same(res.versions, [res.revision, 0, res.revision], 'one revision for the whole txn');
  t.equal((await s.get('tasks', 't1')).version, res.revision);
  t.equal(await s.find('services', 'b'), undefined);
  await rejectsWith(
    t,
    s.txn([{ op: 'create', kind: 'tasks', id: 't1', value: {} }]),
    'conflict',
    /already exists/,
  );
  await rejectsWith(
    t,
    s.txn([
      { op: 'delete', kind: 'tasks', id: 't1' },
      { op: 'create', kind: 'tasks', id: 't1', value: {} },
    ]),
    'invalid_argument',
  );
});

t.test('retry converges under contention: 20 concurrent increments make 20', async (t) => {
  const etcd = await startEtcd(t);
  const stores = [etcd.store(), etcd.store(), etcd.store(), etcd.store()];
  await stores[0]!.create('cluster', 'counter', { n: 0 });
  let conflicts = 0;
  await Promise.all(
    Array.from({ length: 20 }, (_, i) => {
      const s = stores[i % stores.length]!;
      return s.retry(
        async () => {
          const cur = await s.get<{ n: number }>('cluster', 'counter');
          try {
            return await s.update('cluster', 'counter', { n: cur.value.n + 1 }, cur.version);
          } catch (e) {
            conflicts++;
            throw e;
          }
        },
        { attempts: 100 },
      );
    }),
  );
  t.same((await stores[0]!.get('cluster', 'counter')).value, { n: 20 });
  t.ok(conflicts > 0, `there was contention (${conflicts} conflicts retried)`);
});

t.test('watch delivers creates, updates and deletes in order', async (t) => {
  const etcd = await startEtcd(t);
  const s = etcd.store();
  await s.create('services', 'pre', { v: 0 });
  const rec = new Recorder();
  const w = s.watch(['services', 'tasks'], {}, rec.handler);
  await w.ready;
  t.same(rec.summary(), ['reset pre'], 'without fromRevision a reset with the current state comes first');

  const v1 = await s.create('services', 'a', { v: 1 });
  await s.create('nodes', 'n1', {}); // another kind: not delivered
  const v2 = await s.update('services', 'a', { v: 2 }, v1);
  await s.txn([
    { op: 'create', kind: 'tasks', id: 't1', value: {} },
    { op: 'create', kind: 'tasks', id: 't2', value: {} },
    { op: 'delete', kind: 'services', id: 'pre' },
  ]);
  await s.delete('services', 'a', v2);
  const expected = [
    'reset pre',
    'create services/a',
    'update services/a',
    'create tasks/t1',
    'create tasks/t2',
    'delete services/pre',
    'delete services/a',
  ];
  await rec.waitFor((e) => e.length >= expected.length, 'all events');
  t.same(rec.summary(), expected);
  const revs = rec.events.map((e) => e.revision);
  t.same(
    revs,
    [...revs].sort((x, y) => x - y),
    'revisions never go back',
  );
  t.match(rec.events[2], { type: 'update', value: { v: 2 }, version: v2 });

  // fromRevision replays history, inclusive.
  const replay = new Recorder();
  const w2 = s.watch('services', { fromRevision: v1 }, replay.handler);
  await replay.waitFor((e) => e.length >= 4, 'the replay');
  t.same(replay.summary(), [
    'create services/a',
    'update services/a',
    'delete services/pre',
    'delete services/a',
  ]);
  await w.cancel();
  await w2.cancel();
  await s.create('services', 'after', {});
  await sleep(200);
  t.equal(rec.events.length, expected.length, 'nothing after cancel');
});

t.test('a killed embedded etcd is restarted by its supervisor and the watch resumes', async (t) => {
  const etcd = await startEtcd(t);
  const member = etcd.members[0]!;
  const s = etcd.store();
  const rec = new Recorder();
  await s.watch('services', {}, rec.handler).ready;
  await s.create('services', 'before', {});
  await rec.waitFor((e) => e.length === 2, 'the first create');

  const pid1 = member.pid!;
  const restarted = new Promise<number>((r) => member.once('restarted', r));
  await member.kill('SIGKILL');
  t.same(alive([pid1]), [], 'the killed etcd is gone');
  const pid2 = await restarted;
  t.not(pid2, pid1, `restarted with a new PID (${pid1} -> ${pid2})`);
  t.equal(member.pid, pid2);

  const writer = etcd.store();
  await writer.create('services', 'after', {});
  await rec.waitFor((e) => e.length === 3, 'the create written after the restart');
  t.same(
    rec.summary(),
    ['reset ', 'create services/before', 'create services/after'],
    'no event lost or repeated',
  );
  t.same((await s.get('services', 'before')).value, {}, 'the data survived the crash');
});

t.test(
  'a watch resumes from its revision after its member restarts; after compaction it re-lists',
  async (t) => {
    const etcd = await startEtcd(t, { members: 3 });
    const watching = etcd.store({ members: [0] }); // the watch can only use member 0
    const writer = etcd.store({ members: [1, 2] });
    const rec = new Recorder();
    await watching.watch('services', {}, rec.handler).ready;
    await writer.create('services', 'a', {});
    await rec.waitFor((e) => e.length === 2, 'create a');

    // Written while the watch is disconnected: it must still arrive, once.
    await etcd.members[0]!.stop();
    await writer.create('services', 'b', {});
    await writer.update('services', 'b', { x: 1 }, (await writer.get('services', 'b')).version);
    await etcd.members[0]!.start();
    await rec.waitFor((e) => e.length === 4, 'b, written while disconnected');
    t.same(rec.summary(), ['reset ', 'create services/a', 'create services/b', 'update services/b']);

    // Written and compacted while disconnected: the watch cannot resume, so it re-lists.
    await etcd.members[0]!.stop();
    await writer.create('services', 'c', {});
    await writer.delete('services', 'a');
    const rev = await writer.revision();
    await etcd.client([1, 2]).kv.compact({ revision: rev, physical: true });
    await etcd.members[0]!.start();
    await rec.waitFor((e) => e.length === 5, 'a reset after compaction');
    t.match(rec.events[4], { type: 'reset', revision: rev }, 'reset at the current revision');
    t.same(rec.summary()[4], 'reset b,c', 'the reset holds the full current list');
    await writer.create('services', 'd', {});
    await rec.waitFor((e) => e.length === 6, 'd after the reset');
    t.same(rec.summary()[5], 'create services/d', 'and the watch goes on from there');
  },
);

t.test('a watch from a compacted revision re-lists', async (t) => {
  const etcd = await startEtcd(t);
  const s = etcd.store();
  const first = await s.create('services', 'a', { v: 1 });
  await s.update('services', 'a', { v: 2 }, first);
  await s.create('services', 'b', {});
  const rev = await s.revision();
  await etcd.client().kv.compact({ revision: rev, physical: true });
  const rec = new Recorder();
  await s.watch('services', { fromRevision: first }, rec.handler).ready;
  await rec.waitFor((e) => e.length >= 1, 'the reset');
  t.match(rec.events[0], { type: 'reset', revision: rev });
  t.same(rec.summary(), ['reset a,b']);
  t.match((rec.events[0] as { items: unknown[] }).items[0], { id: 'a', value: { v: 2 } });
  await s.create('services', 'c', {});
  await rec.waitFor((e) => e.length === 2, 'c');
  t.same(rec.summary(), ['reset a,b', 'create services/c']);
});

t.test('leases: expiry removes a key, keep-alive keeps it, revoke removes it', async (t) => {
  const etcd = await startEtcd(t);
  const s = etcd.store();
  const rec = new Recorder();
  await s.watch('nodes', {}, rec.handler).ready;

  const short = await s.grantLease(1, { keepAlive: false });
  const kept = await s.grantLease(1);
  await s.putWithLease('nodes', 'gone', { hb: 1 }, short);
  await s.putWithLease('nodes', 'kept', { hb: 1 }, kept);
  const t0 = Date.now();
  await rec.waitFor(
    (e) => e.some((x) => x.type === 'delete' && x.id === 'gone'),
    'the expiry of nodes/gone',
    10_000,
  );
  t.ok(Date.now() - t0 >= 500, `expired after about its TTL (${Date.now() - t0} ms)`);
  t.equal(await s.find('nodes', 'gone'), undefined, 'the key is gone');

  await sleep(2_500); // 2.5 TTLs
  t.ok(await s.find('nodes', 'kept'), 'a kept-alive lease keeps its key');
  await kept.revoke();
  await rec.waitFor((e) => e.some((x) => x.type === 'delete' && x.id === 'kept'), 'the revoke');
  t.equal(await s.find('nodes', 'kept'), undefined);
});

t.test('election: one leader; revoking its lease elects the other, and the first learns it', async (t) => {
  const etcd = await startEtcd(t);
  const s1 = etcd.store();
  const s2 = etcd.store();
  const l1 = s1.campaign('leader', 'm1', { ttlSec: 2 });
  await l1.elected;
  const l2 = s2.campaign('leader', 'm2', { ttlSec: 2 });
  await sleep(500);
  t.ok(l1.isLeader, 'm1 leads');
  t.notOk(l2.isLeader, 'm2 waits');
  t.equal(await s2.leader('leader'), 'm1');

  const lost = new Promise<Error>((r) => l1.onLost(r));
  await etcd.client().leaseClient.leaseRevoke({ ID: l1.leaseId });
  await l2.elected;
  const reason = await lost;
  t.notOk(l1.isLeader, 'm1 no longer thinks it leads');
  t.match(reason.message, /lease|deleted/);
  t.equal(await s1.leader('leader'), 'm2');

  // Resigning hands over at once, without waiting for a TTL.
  const l3 = s1.campaign('leader', 'm3', { ttlSec: 2 });
  await sleep(300);
  let l2Lost = false;
  l2.onLost(() => (l2Lost = true));
  const t0 = Date.now();
  await l2.resign();
  await l3.elected;
  t.ok(Date.now() - t0 < 1_500, `resign hands over promptly (${Date.now() - t0} ms)`);
  t.notOk(l2Lost, 'resigning is not a loss');
  await l3.resign();
  t.equal(await s1.leader('leader'), undefined, 'nobody leads after the last resigns');
});

t.test("election: the leader's member dies; it reports the loss before the other is elected", async (t) => {
  const etcd = await startEtcd(t, { members: 3 });
  const s1 = etcd.store({ members: [0] });
  const s2 = etcd.store({ members: [1, 2] });
  const l1 = s1.campaign('leader', 'm1', { ttlSec: 2 });
  await l1.elected;
  const l2 = s2.campaign('leader', 'm2', { ttlSec: 2 });
  await sleep(300);
  t.notOk(l2.isLeader);
  let lostAt = 0;
  l1.onLost(() => (lostAt = Date.now()));
  const killedAt = Date.now();
  await etcd.members[0]!.stop(); // m1 can no longer reach etcd at all
  await l2.elected;
  const electedAt = Date.now();
  t.ok(lostAt > 0, `m1 learnt of its loss (${lostAt - killedAt} ms after its etcd died)`);
  t.ok(lostAt <= electedAt, `before m2 was elected (${electedAt - killedAt} ms): never two leaders`);
  t.notOk(l1.isLeader);
  t.equal(await s2.leader('leader'), 'm2');
});

t.test('3-member cluster: with one member down reads and writes go on', async (t) => {
  const etcd = await startEtcd(t, { members: 3 });
  const s = etcd.store();
  await s.create('cluster', 'c', { n: 0 });
  await etcd.members[0]!.stop();
  for (let i = 1; i <= 10; i++) {
    const cur = await s.get<{ n: number }>('cluster', 'c');
    await s.update('cluster', 'c', { n: i }, cur.version);
  }
  t.same((await s.get('cluster', 'c')).value, { n: 10 }, 'ten reads and writes with a member down');
  await etcd.members[1]!.stop();
  const err = await rejectsWith(
    t,
    etcd.store({ members: [2], callTimeoutMs: 1_500 }).get('cluster', 'c'),
    'daemon_unreachable',
  );
  t.ok(err, 'without quorum: unreachable, not a wrong answer');
  await etcd.members[0]!.start();
  await etcd.members[1]!.start();
  const fresh = etcd.store({ members: [0] });
  t.same((await fresh.get('cluster', 'c')).value, { n: 10 }, 'a restarted member caught up');
});

t.test('supervisor: clear errors for a missing binary, a port in use, a data dir not writable', async (t) => {
  const prefix = uniquePrefix();
  usedPrefixes.push(prefix);
  const dir = join('/tmp', prefix);
  t.teardown(() => cleanupPrefix(prefix));
  await fs.mkdir(dir, { recursive: true });
  const base = { name: prefix, clientPort: await freePort(), peerPort: await freePort(), restart: false };

  const missing = new EtcdSupervisor({ ...base, dir: join(dir, 'm'), bin: '/nonexistent/etcd' });
  await rejectsWith(t, missing.start(), 'precondition', /install etcd-server: run scripts\/setup\.sh/);

  const net = await import('node:net');
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(base.clientPort, '127.0.0.1', r));
  t.teardown(() => squatter.close());
  const busy = new EtcdSupervisor({ ...base, dir: join(dir, 'p') });
  await rejectsWith(t, busy.start(), 'conflict', new RegExp(`127\\.0\\.0\\.1:${base.clientPort} is in use`));
  t.equal(busy.pid, undefined, 'no etcd was started');

  await fs.writeFile(join(dir, 'file'), '');
  const ro = new EtcdSupervisor({ ...base, clientPort: await freePort(), dir: join(dir, 'file', 'm') });
  await rejectsWith(t, ro.start(), 'precondition', /data dir .* is not writable/);
});

t.test('nothing is left: no etcd process, no directory', async (t) => {
  const names = await fs.readdir('/proc');
  const left: string[] = [];
  for (const p of names.filter((n) => /^\d+$/.test(n))) {
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (usedPrefixes.some((x) => cmd.includes(x))) left.push(`${p}: ${cmd.replace(/\0/g, ' ')}`);
  }
  t.same(left, [], 'no process names a prefix of these tests');
  t.ok(etcdPids.size >= 13, `${etcdPids.size} etcd processes were started`);
  t.same(alive(etcdPids), [], 'every etcd PID is gone');
  const dirs = (await fs.readdir('/tmp')).filter((d) => usedPrefixes.includes(d));
  t.same(dirs, [], 'no directory of these tests is left in /tmp');
});
