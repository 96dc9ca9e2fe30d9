import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { detectCgroupDriver } from '../src/engine/cgroups/detect.js';
import { loadTestImages } from './lib/fixtures.js';
import { inspectContainer as inspect, startTestDaemon } from './lib/harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const driver = detectCgroupDriver();

t.test(`resource limits on the real kernel (cgroup v${driver.version})`, async (t) => {
  const d = await startTestDaemon(t);
  await loadTestImages(d);

  await t.test('a process over its memory limit is OOM-killed and reported so', async (t) => {
    const r = await d.cli([
      'container',
      'run',
      '--name',
      'hog',
      '-m',
      '16m',
      'busybox:test',
      'dd',
      'if=/dev/zero',
      'of=/dev/null',
      'bs=64M',
      'count=1',
    ]);
    t.equal(r.code, 137, 'exit code 137');
    const insp = await inspect(d, 'hog');
    t.equal(insp.State.OOMKilled, true, 'OOMKilled');
    t.equal(insp.Config.limits.memory, 16 * 1024 * 1024);
    t.equal(insp.Config.limits.memorySwap, 32 * 1024 * 1024, 'memory-swap defaults to twice the memory');
    const fits = await d.cli([
      'container',
      'run',
      '--rm',
      '-m',
      '16m',
      'busybox:test',
      'dd',
      'if=/dev/zero',
      'of=/dev/null',
      'bs=1M',
      'count=1',
    ]);
    t.equal(fits.code, 0, 'control: within the limit it runs');
    const unlimited = await d.cli([
      'container',
      'create',
      '--name',
      'swapless',
      '-m',
      '16m',
      '--memory-swap',
      '-1',
      'busybox:test',
      'true',
    ]);
    t.equal(unlimited.code, 0);
    t.equal((await inspect(d, 'swapless')).Config.limits.memorySwap, -1, '-1 means unlimited swap');
  });

  await t.test('cpu shares 1024 and 512 split one busy core about 2:1', async (t) => {
    const busy = ['busybox:test', 'sh', '-c', 'while :; do :; done'];
    await d.cli(['container', 'run', '-d', '--name', 'heavy', '--cpuset-cpus', '0', '-c', '1024', ...busy]);
    await d.cli(['container', 'run', '-d', '--name', 'light', '--cpuset-cpus', '0', '-c', '512', ...busy]);
    const usage = async () => {
      const h = JSON.parse(
        (await d.cli(['container', 'stats', '--no-stream', '--format', 'json', 'heavy'])).stdout,
      )[0];
      const l = JSON.parse(
        (await d.cli(['container', 'stats', '--no-stream', '--format', 'json', 'light'])).stdout,
      )[0];
      return { h: h.cpuUsageNs as number, l: l.cpuUsageNs as number };
    };
    await sleep(500);
    const a = await usage();
    await sleep(4000);
    const b = await usage();
    const ratio = (b.h - a.h) / (b.l - a.l);
    t.ok(ratio > 1.6 && ratio < 2.5, `heavy:light CPU time ratio ${ratio.toFixed(2)} is about 2`);
    await d.cli(['container', 'rm', '-f', 'heavy', 'light']);
  });

  await t.test('a direct-I/O write to a loop device is held to its bps limit', async (t) => {
    const img = join(d.dir, 'disk.img');
    await fs.writeFile(img, Buffer.alloc(0));
    await fs.truncate(img, 64 * 1024 * 1024);
    const loop = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    t.teardown(() => {
      try {
        execFileSync('losetup', ['-d', loop]);
      } catch {}
    });
    const write = (extra: string[]) =>
      d.cli([
        'container',
        'run',
        '--rm',
        '--device',
        loop,
        ...extra,
        'busybox:test',
        'dd',
        'if=/dev/zero',
        `of=${loop}`,
        'bs=64k',
        'count=48',
        'oflag=direct',
      ]);
    const free0 = Date.now();
    const free = await write([]);
    const freeMs = Date.now() - free0;
    t.equal(free.code, 0, free.stderr);
    const t0 = Date.now();
    const limited = await write(['--device-write-bps', `${loop}:1mb`]);
    const ms = Date.now() - t0;
    t.equal(limited.code, 0, limited.stderr);
    t.ok(ms >= 2500, `3 MiB at 1 MiB/s took ${ms} ms (unthrottled: ${freeMs} ms)`);
    t.ok(ms < 8000, 'and not much longer');
    const iops0 = Date.now();
    const iops = await d.cli([
      'container',
      'run',
      '--rm',
      '--device',
      loop,
      '--device-write-iops',
      `${loop}:20`,
      'busybox:test',
      'dd',
      'if=/dev/zero',
      `of=${loop}`,
      'bs=4k',
      'count=60',
      'oflag=direct',
    ]);
    t.equal(iops.code, 0, iops.stderr);
    t.ok(Date.now() - iops0 >= 2000, `60 writes at 20 iops took ${Date.now() - iops0} ms`);
    const { rdev } = await fs.stat(loop);
    const [major, minor] = [Math.floor(rdev / 256) & 0xfff, rdev & 0xff];
    const noDevice = await d.cli([
      'container',
      'run',
      '--rm',
      'busybox:test',
      'sh',
      '-c',
      `mknod /tmp/disk b ${major} ${minor} && dd if=/dev/zero of=/tmp/disk bs=4k count=1 oflag=direct`,
    ]);
    t.not(noDevice.code, 0, 'without --device the devices cgroup refuses the loop device');
    t.match(noDevice.stderr, /Operation not permitted/);
  });

  await t.test('a fork bomb stops at the pids limit', async (t) => {
    const r = await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'forky',
      '--pids-limit',
      '10',
      'busybox:test',
      'sleep',
      '300',
    ]);
    t.equal(r.code, 0, r.stderr);
    const bomb = d.cli([
      'container',
      'exec',
      'forky',
      'sh',
      '-c',
      'for i in $(seq 40); do sleep 3 & done; wait',
    ]);
    await sleep(1000);
    const s = JSON.parse(
      (await d.cli(['container', 'stats', '--no-stream', '--format', 'json', 'forky'])).stdout,
    )[0];
    t.ok(s.pidsCurrent <= 10, `pids held at the limit (${s.pidsCurrent})`);
    t.ok(s.pidsCurrent >= 8, 'the bomb did fill the container up to it');
    t.equal(s.pidsLimit, 10);
    const out = await bomb;
    t.match(out.stderr, /can't fork|Resource temporarily unavailable/, 'forks beyond the limit fail');
    await d.cli(['container', 'rm', '-f', 'forky']);
  });

  await t.test('--cpus sets a CFS quota; blkio weight follows the kernel', async (t) => {
    const r = await d.cli([
      'container',
      'run',
      '-d',
      '--name',
      'quota',
      '--cpus',
      '0.25',
      '--blkio-weight',
      '300',
      'busybox:test',
      'sh',
      '-c',
      'while :; do :; done',
    ]);
    t.equal(r.code, 0, r.stderr);
    await sleep(300);
    const a = JSON.parse(
      (await d.cli(['container', 'stats', '--no-stream', '--format', 'json', 'quota'])).stdout,
    )[0];
    t.ok(a.cpuPercent < 40, `a busy loop is held near 25% (${a.cpuPercent.toFixed(1)}%)`);
    t.ok(a.cpuPercent > 10, 'but runs');
    const hasWeight =
      driver.version === 1
        ? await fs.stat('/sys/fs/cgroup/blkio/blkio.weight').then(
            () => true,
            () => false,
          )
        : true;
    if (!hasWeight)
      t.match(
        r.stderr,
        /does not support Block I\/O weight/,
        "Docker's warning when the kernel has no weight file",
      );
    await d.cli(['container', 'rm', '-f', 'quota']);
  });

  for (const c of (await d.cli(['container', 'ps', '-a', '-q'])).stdout.split('\n').filter(Boolean)) {
    await d.cli(['container', 'rm', '-f', c]);
  }
  t.same(await d.leftovers(), [], 'no cgroup, mount, process or bundle left');
});
