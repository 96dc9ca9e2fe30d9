import { promises as fs, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadTestImages } from './lib/fixtures.js';
import { inspectContainer as inspect, startTestDaemon, type TestDaemon } from './lib/harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runOut(d: TestDaemon, args: string[]): Promise<string> {
  const r = await d.cli(['container', 'run', '--rm', ...args]);
  if (r.code !== 0) throw new Error(`run ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

t.test('namespaces isolate a container from the host and from another container', async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  await d.cli([
    'container',
    'run',
    '-d',
    '--name',
    'one',
    '--hostname',
    'one',
    'busybox:test',
    'sleep',
    '300',
  ]);
  await d.cli([
    'container',
    'run',
    '-d',
    '--name',
    'two',
    '--hostname',
    'two',
    'busybox:test',
    'sleep',
    '300',
  ]);
  const one = await inspect(d, 'one');
  const two = await inspect(d, 'two');
  const nsOf = (pid: number | 'self', ns: string) => readlinkSync(`/proc/${pid}/ns/${ns}`);

  for (const ns of ['mnt', 'uts', 'ipc', 'pid', 'net']) {
    await t.test(`${ns} namespace is the container's own`, async (t) => {
      const a = nsOf(one.State.Pid, ns);
      t.not(a, nsOf('self', ns), 'differs from the host');
      t.not(a, nsOf(two.State.Pid, ns), 'differs from the other container');
      const inside = (
        await d.cli(['container', 'exec', 'one', 'readlink', `/proc/self/ns/${ns}`])
      ).stdout.trim();
      t.equal(inside, a, 'exec joins the same namespace');
    });
  }

  await t.test('PID: the process sees itself as PID 1 and only its own processes', async (t) => {
    t.equal(await runOut(d, ['busybox:test', 'sh', '-c', 'echo $$']), '1\n');
    const ps = (await d.cli(['container', 'exec', 'one', 'ps', '-o', 'pid,comm'])).stdout;
    t.notMatch(ps, /node|tsswarm/, 'no host process is visible');
    t.match(ps, /^\s*1 sleep$/m);
  });

  await t.test('PID: with --init, orphaned zombies are reaped', async (t) => {
    // without an init, PID 1 (here `sleep` after exec) never reaps the orphan: a zombie stays
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'noinit',
      'busybox:test',
      'sh',
      '-c',
      '(sleep 0.1 &); exec sleep 300',
    ]);
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'withinit',
      '--init',
      'busybox:test',
      'sh',
      '-c',
      '(sleep 0.1 &); exec sleep 300',
    ]);
    await sleep(600);
    const noinit = (await d.cli(['container', 'exec', 'noinit', 'ps', '-o', 'stat,comm'])).stdout;
    const withinit = (await d.cli(['container', 'exec', 'withinit', 'ps', '-o', 'pid,stat,comm'])).stdout;
    t.match(noinit, /^Z\s/m, 'control: the zombie exists without an init');
    t.notMatch(withinit, /\sZ\s/, 'no zombie with the init');
    t.match(withinit, /^\s*2 \S+\s+sleep$/m, 'the process runs under the init');
    const stop = Date.now();
    await d.cli(['container', 'stop', '-t', '5', 'withinit']);
    t.ok(Date.now() - stop < 4000, 'the init forwards the stop signal');
    await d.cli(['container', 'rm', '-f', 'noinit', 'withinit']);
  });

  await t.test("UTS: --hostname is the container's alone", async (t) => {
    t.equal((await d.cli(['container', 'exec', 'one', 'hostname'])).stdout, 'one\n');
    t.equal((await d.cli(['container', 'exec', 'two', 'hostname'])).stdout, 'two\n');
    const denied = await d.cli(['container', 'run', '--rm', 'busybox:test', 'hostname', 'other']);
    t.not(denied.code, 0, "without CAP_SYS_ADMIN (Docker's default set) the name cannot be changed");
    t.equal(
      await runOut(d, [
        '--cap-add',
        'SYS_ADMIN',
        '--hostname',
        'renamed',
        'busybox:test',
        'sh',
        '-c',
        'hostname other && hostname',
      ]),
      'other\n',
    );
    t.not(hostname(), 'other', 'the host name is untouched');
  });

  await t.test('IPC: its own message queues and /dev/shm', async (t) => {
    await d.cli(['container', 'exec', 'one', 'sh', '-c', 'echo secret > /dev/shm/one-only']);
    t.equal((await d.cli(['container', 'exec', 'one', 'cat', '/dev/shm/one-only'])).stdout, 'secret\n');
    const other = await d.cli(['container', 'exec', 'two', 'cat', '/dev/shm/one-only']);
    t.not(other.code, 0, 'the other container does not see it');
    t.notOk(await fs.stat('/dev/shm/one-only').catch(() => undefined), 'the host does not see it');
    t.match(
      (await d.cli(['container', 'exec', 'one', 'cat', '/proc/mounts'])).stdout,
      /mqueue \/dev\/mqueue/,
    );
  });

  await t.test('network: loopback only, and up', async (t) => {
    const links = await runOut(d, ['busybox:test', 'ip', '-o', 'link']);
    t.equal(links.trim().split('\n').length, 1, 'one interface');
    t.match(links, /1: lo: <LOOPBACK,UP,LOWER_UP>/);
    t.match(await runOut(d, ['busybox:test', 'ip', 'addr', 'show', 'lo']), /inet 127\.0\.0\.1\/8/);
  });

  await t.test(
    'mount: an overlay root entered with pivot_root; the host sees no container mount',
    async (t) => {
      const mounts = await runOut(d, ['busybox:test', 'cat', '/proc/self/mountinfo']);
      t.match(mounts.split('\n')[0], / \/ \/ .* - overlay overlay /, 'the root is the overlay');
      const points = mounts
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[4]!);
      t.same(
        points.filter((p) => !/^\/(proc|dev|sys|etc\/hostname$|etc\/hosts$|$)/.test(p)),
        [],
        "only the container's own mount points: the old root is gone (pivot_root, not chroot)",
      );
      const outside = await d.cli(['container', 'run', '--rm', 'busybox:test', 'ls', d.dataRoot]);
      t.not(outside.code, 0, 'host paths are not reachable');
      const host = await fs.readFile('/proc/self/mountinfo', 'utf8');
      t.notMatch(host, new RegExp(d.prefix), 'no container mount leaks to the host');
      t.equal(await runOut(d, ['busybox:test', 'ls', '/.pivot_old']).catch(() => 'absent'), 'absent');
    },
  );

  await t.test('user namespace: --userns maps root to an unprivileged host uid', async (t) => {
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'mapped',
      '--userns',
      '0:200000:65536',
      'busybox:test',
      'sh',
      '-c',
      'touch /tmp/made-inside; sleep 300',
    ]);
    await sleep(300);
    const m = await inspect(d, 'mapped');
    t.equal((await d.cli(['container', 'exec', 'mapped', 'id', '-u'])).stdout, '0\n', 'root inside');
    t.match(
      (await d.cli(['container', 'exec', 'mapped', 'cat', '/proc/self/uid_map'])).stdout,
      /^\s*0\s+200000\s+65536\s*$/,
    );
    const status = await fs.readFile(`/proc/${m.State.Pid}/status`, 'utf8');
    t.match(status, /^Uid:\s+200000\s+200000\s+200000\s+200000$/m, 'an unprivileged uid on the host');
    const st = await fs.stat(join(d.dataRoot, 'containers', m.Id, 'upper', 'tmp', 'made-inside'));
    t.equal(st.uid, 200000, 'files it creates belong to the mapped uid on the host');
    t.not(nsOf(m.State.Pid, 'user'), nsOf('self', 'user'), 'a user namespace of its own');
    await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'mapped2',
      '--userns',
      '0:300000:65536',
      'busybox:test',
      'sleep',
      '300',
    ]);
    const m2 = await inspect(d, 'mapped2');
    t.not(nsOf(m2.State.Pid, 'user'), nsOf(m.State.Pid, 'user'), 'not shared with a second container');
    t.match(
      await fs.readFile(`/proc/${m2.State.Pid}/uid_map`, 'utf8'),
      /^\s*0\s+300000\s+65536\s*$/,
      'each with its own map',
    );
    await d.cli(['container', 'rm', '-f', 'mapped2']);
    const noMap = await runOut(d, ['busybox:test', 'cat', '/proc/self/uid_map']);
    t.match(noMap, /^\s*0\s+0\s+4294967295/, 'without --userns the host user namespace is kept');
    await d.cli(['container', 'rm', '-f', 'mapped']);
  });

  await t.test(
    'hardening: read-only /sys, masked paths, default capabilities, no_new_privs, minimal /dev',
    async (t) => {
      const sys = await d.cli([
        'container',
        'run',
        '--rm',
        'busybox:test',
        'sh',
        '-c',
        'echo x > /sys/kernel/uevent_helper',
      ]);
      t.not(sys.code, 0);
      t.match(sys.stderr, /Read-only file system/);
      t.ok((await fs.readFile('/proc/timer_list', 'utf8')).length > 0, 'the host has a /proc/timer_list');
      t.equal(
        await runOut(d, ['busybox:test', 'wc', '-c', '/proc/timer_list']),
        '0 /proc/timer_list\n',
        'masked in the container',
      );
      t.equal(await runOut(d, ['busybox:test', 'ls', '/sys/firmware']), '', '/sys/firmware is masked');
      const procSys = await d.cli([
        'container',
        'run',
        '--rm',
        'busybox:test',
        'sh',
        '-c',
        'echo 1 > /proc/sys/vm/drop_caches',
      ]);
      t.not(procSys.code, 0, '/proc/sys is read-only');
      const status = await runOut(d, ['busybox:test', 'cat', '/proc/self/status']);
      t.match(status, /^CapEff:\s+00000000a80425fb$/m, "Docker's default capability set");
      t.match(status, /^CapBnd:\s+00000000a80425fb$/m);
      t.match(status, /^NoNewPrivs:\s+1$/m);
      const added = await runOut(d, [
        '--cap-add',
        'NET_ADMIN',
        '--cap-drop',
        'CHOWN',
        'busybox:test',
        'grep',
        'CapEff',
        '/proc/self/status',
      ]);
      t.match(added, /00000000a80435fa/, 'NET_ADMIN added, CHOWN dropped');
      const dev = (await runOut(d, ['busybox:test', 'ls', '/dev'])).split(/\s+/).filter(Boolean).sort();
      t.same(dev, [
        'fd',
        'full',
        'mqueue',
        'null',
        'ptmx',
        'pts',
        'random',
        'shm',
        'stderr',
        'stdin',
        'stdout',
        'tty',
        'urandom',
        'zero',
      ]);
      const mknod = await d.cli([
        'container',
        'run',
        '--rm',
        'busybox:test',
        'sh',
        '-c',
        'mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda',
      ]);
      t.not(mknod.code, 0, 'the devices cgroup refuses a block device the container made itself');
    },
  );

  await d.cli(['container', 'rm', '-f', 'one', 'two']);
});
