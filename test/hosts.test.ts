import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import t from 'tap';
import { loadImagesOn, startHosts } from './lib/hosts.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });

async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(100);
  }
}

/** Everything on the machine that still carries the run's names. */
async function remains(prefix: string, linkPrefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const l of sh('ip', ['netns', 'list']).split('\n')) if (l.startsWith(prefix)) found.push(`netns ${l}`);
  for (const l of sh('ip', ['-o', 'link', 'show']).split('\n')) {
    const name = l.split(': ')[1]?.split('@')[0];
    if (name?.startsWith(linkPrefix)) found.push(`link ${name}`);
  }
  for (const n of await fs.readdir('/tmp')) if (n.startsWith(prefix)) found.push(`dir /tmp/${n}`);
  for (const root of [
    'memory',
    'pids',
    'cpu',
    'cpuset',
    'freezer',
    'devices',
    'blkio',
    'systemd',
    'unified',
  ]) {
    const kids = await fs.readdir(`/sys/fs/cgroup/${root}`).catch(() => [] as string[]);
    for (const k of kids) if (k.startsWith(prefix)) found.push(`cgroup ${root}/${k}`);
  }
  for (const l of (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n'))
    if (l.includes(prefix)) found.push(`mount ${l.split(' ')[4]}`);
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(prefix)) found.push(`process ${p}`);
  }
  return found;
}

t.test('simulated hosts: underlay, daemons, partitions, dead hosts, teardown', async (t) => {
  const hosts = await startHosts(t, { count: 3 });
  const { prefix, linkPrefix } = hosts;

  await t.test('the layout', async (t) => {
    const ns = sh('ip', ['netns', 'list']);
    for (const n of [`${prefix}-ul`, `${prefix}-h1`, `${prefix}-h2`, `${prefix}-h3`])
      t.match(ns, n, `netns ${n} exists`);
    t.notMatch(sh('ip', ['-o', 'link', 'show']), linkPrefix, 'no link of the run in the root namespace');
    t.notMatch(
      sh('ip', ['-4', 'route', 'show', 'table', 'all']),
      hosts.subnet.split('/')[0]!,
      'subnet unknown to the root ns',
    );
    t.match(hosts.subnet, /^10\.254\.\d+\.0\/24$/);
    const lo = await hosts.exec(1, ['ip', '-o', 'link', 'show', 'lo']);
    t.match(lo.stdout, /UP/, 'lo is up in host 1');
  });

  await t.test('every host reaches every other by its underlay address', async (t) => {
    const pairs: [number, number][] = [];
    for (const a of [1, 2, 3]) for (const b of [1, 2, 3]) if (a !== b) pairs.push([a, b]);
    const ok = await Promise.all(pairs.map(([a, b]) => hosts.ping(a, b, { timeoutSec: 2 })));
    for (const [n, [a, b]] of pairs.entries()) t.ok(ok[n], `h${a} -> h${b} (${hosts.address(b)})`);
  });

  const [d1, d2] = await Promise.all([hosts.startDaemon(1), hosts.startDaemon(2)]);

  await t.test('a daemon per host, inside the host netns, runs containers', async (t) => {
    for (const d of [d1, d2]) {
      const [nsIno, pidIno] = await Promise.all([
        fs.stat(`/run/netns/${d.netns}`).then((s) => s.ino),
        fs.stat(`/proc/${d.pid}/ns/net`).then((s) => s.ino),
      ]);
      t.equal(pidIno, nsIno, `daemon ${d.index} (pid ${d.pid}) is in ${d.netns}`);
      const cmd = await fs.readFile(`/proc/${d.pid}/cmdline`, 'utf8');
      t.match(cmd, 'daemon', 'the spawned PID is the daemon itself');
    }
    await Promise.all([loadImagesOn(d1), loadImagesOn(d2)]);
    const rs = await Promise.all(
      [d1, d2].map((d) => d.cli(['container', 'run', '--rm', 'busybox:test', 'echo', 'hi'])),
    );
    for (const [n, r] of rs.entries()) {
      t.equal(r.code, 0, `host ${n + 1}: ${r.stderr}`);
      t.equal(r.stdout, 'hi\n');
    }
  });

  await t.test('restart keeps the host and its data', async (t) => {
    const before = d1.pid;
    await d1.kill('SIGTERM');
    await d1.restart();
    t.not(d1.pid, before);
    const r = await d1.cli(['image', 'ls']);
    t.match(r.stdout, 'busybox', r.stderr);
  });

  await t.test('partition and heal', async (t) => {
    await hosts.partition(3);
    t.notOk(await hosts.ping(1, 3), 'h1 cannot reach partitioned h3');
    t.notOk(await hosts.ping(3, 2), 'partitioned h3 cannot reach h2');
    t.ok(await hosts.ping(1, 2), 'h1 still reaches h2');
    await hosts.heal(3);
    t.ok(await until(() => hosts.ping(1, 3), 10_000), 'h1 reaches h3 again');
    t.ok(await until(() => hosts.ping(3, 2), 10_000), 'h3 reaches h2 again');
  });

  await t.test('killHost leaves nothing of that host running', async (t) => {
    const r = await d2.cli(['container', 'run', '-d', 'busybox:test', 'sleep', '600']);
    t.equal(r.code, 0, r.stderr);
    const running = await hosts.processes(2);
    t.ok(running.includes(d2.pid), 'the daemon is among the host processes');
    t.ok(running.length >= 2, `the container counts too (${running.join(' ')})`);
    const killed = await hosts.killHost(2);
    for (const p of running) t.ok(killed.includes(p), `pid ${p} killed`);
    t.same(await hosts.processes(2), [], 'no process of host 2 is left');
    t.ok(d1.pid && (await hosts.processes(1)).includes(d1.pid), 'host 1 is untouched');
    t.ok(await hosts.ping(1, 2), 'the dead host is still on the network (only its processes died)');
  });

  await t.test('teardown leaves nothing', async (t) => {
    await hosts.teardown();
    t.same(await remains(prefix, linkPrefix), []);
  });
});
