/**
 * Integration tests of the cgroup drivers on the real kernel (root required). Everything is
 * created under a unique parent `tsswarm-test-<random>` and removed at the end, pass or
 * fail; processes are started by these tests and killed by PID.
 *
 * This machine: cgroup v1 hybrid (v1 hierarchies for cpu, cpuacct, cpuset, memory, devices,
 * freezer, blkio, pids, name=systemd; cgroup2 at /sys/fs/cgroup/unified with only hugetlb).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { TsswarmError } from '../src/api/errors.js';
import { hostMemTotal } from '../src/engine/cgroups/common.js';
import { detectCgroupDriver, detectCgroupVersion, localHostFacts } from '../src/engine/cgroups/detect.js';
import { defaultLimits, resolveLimits } from '../src/engine/cgroups/limits.js';
import type { CgroupDriver } from '../src/engine/cgroups/types.js';
import { CgroupV1Driver, NO_CFS_ERROR, WARN } from '../src/engine/cgroups/v1.js';
import { CgroupV2Driver, DEVICES_V2_WARNING } from '../src/engine/cgroups/v2.js';

const MiB = 1024 * 1024;
const PARENT = `tsswarm-test-${randomBytes(4).toString('hex')}`;
const v1 = new CgroupV1Driver();
const v2 = new CgroupV2Driver();

/** Every process these tests started, by PID. */
const started = new Map<number, ChildProcess>();

function run(
  cmd: string,
  args: string[],
): {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
} {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  started.set(child.pid, child);
  let err = '';
  child.stderr?.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, exit, stderr: () => err };
}

/** A shell that first moves itself into the cgroup (all procs files), then execs `then`. */
function inCgroup(procsFiles: string[], then: string) {
  const join = procsFiles.map((f) => `echo $$ > '${f}'`).join('; ');
  return run('sh', ['-c', `${join}; exec ${then}`]);
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** All cgroup names below `parent` (depth-first) in one driver. */
async function descendants(d: CgroupDriver, parent: string): Promise<string[]> {
  const out: string[] = [];
  for (const c of await d.list(parent)) out.push(c, ...(await descendants(d, c)));
  return out;
}

/** Kills (by PID) what these tests started and whatever is left in their cgroups, then removes the cgroups. */
async function cleanupAll(): Promise<void> {
  for (const [pid, child] of started) if (child.exitCode === null && child.signalCode === null) killPid(pid);
  for (const d of [v1, v2]) {
    const names = [PARENT, ...(await descendants(d, PARENT).catch(() => []))];
    for (const n of names) for (const pid of await d.open(n).pids()) killPid(pid);
    for (const n of names)
      await waitFor(`cgroup ${n} to empty`, async () => (await d.open(n).pids()).length === 0).catch(
        () => undefined,
      );
    await d.open(PARENT).destroy();
  }
}

const v1Dirs = (name: string) => v1.hierarchies.map((h) => path.join(h.mountpoint, name));
const v1File = (controller: string, name: string, file: string) =>
  readFileSync(path.join(v1.mountOf(controller) as string, name, file), 'utf8').trim();
const procCgroup = (pid: number) => readFileSync(`/proc/${pid}/cgroup`, 'utf8');

t.teardown(cleanupAll);

t.test('detection on this machine', async (t) => {
  t.equal(detectCgroupVersion({ env: {} }), 1, 'hybrid layout: /sys/fs/cgroup is not cgroup2');
  t.equal(detectCgroupDriver({ env: {} }).version, 1);
  t.equal(detectCgroupDriver({ env: { TSSWARM_CGROUP_DRIVER: 'v2' } }).version, 2);
  const mounted = v1.hierarchies.flatMap((h) => h.controllers);
  for (const c of ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids'])
    t.ok(mounted.includes(c), `${c} found in mountinfo`);
  t.not(v1.mountOf('cpu'), v1.mountOf('cpuacct'), 'cpu and cpuacct are separate hierarchies here');
  t.equal(v2.root, '/sys/fs/cgroup/unified');
});

t.test('v1: limits applied, a real process accounted, everything removed', async (t) => {
  const name = `${PARENT}/c1`;
  const limits = resolveLimits(
    {
      memory: '64m',
      memorySwap: '128m',
      memoryReservation: '32m',
      cpuShares: 512,
      cpus: '0.5',
      cpusetCpus: '0',
      cpusetMems: '0',
      blkioWeight: 300,
      deviceReadBps: ['/dev/loop0:1mb'],
      deviceWriteIops: ['/dev/loop0:100'],
      pidsLimit: 10,
      devices: ['/dev/loop0:rw'],
    },
    localHostFacts(),
  );
  const { cgroup, warnings } = await v1.create(name, limits);
  t.same(warnings, [
    'Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.',
  ]);

  // the files, read back
  t.equal(v1File('memory', name, 'memory.limit_in_bytes'), String(64 * MiB));
  t.equal(v1File('memory', name, 'memory.memsw.limit_in_bytes'), String(128 * MiB));
  t.equal(v1File('memory', name, 'memory.soft_limit_in_bytes'), String(32 * MiB));
  t.equal(v1File('cpu', name, 'cpu.shares'), '512');
  t.equal(v1File('cpu', name, 'cpu.cfs_period_us'), '100000');
  t.equal(v1File('cpu', name, 'cpu.cfs_quota_us'), '50000');
  t.equal(v1File('cpuset', name, 'cpuset.cpus'), '0');
  t.equal(v1File('cpuset', name, 'cpuset.mems'), '0');
  t.equal(
    v1File('cpuset', PARENT, 'cpuset.cpus'),
    readFileSync(path.join(v1.mountOf('cpuset') as string, 'cpuset.effective_cpus'), 'utf8').trim(),
    "the intermediate cpuset dir inherited the root's cpus",
  );
  t.equal(v1File('blkio', name, 'blkio.throttle.read_bps_device'), `7:0 ${MiB}`);
  t.equal(v1File('blkio', name, 'blkio.throttle.write_iops_device'), '7:0 100');
  t.equal(v1File('pids', name, 'pids.max'), '10');
  const devList = v1File('devices', name, 'devices.list').split('\n');
  for (const rule of [
    'c *:* m',
    'b *:* m',
    'c 1:3 rwm',
    'c 1:5 rwm',
    'c 136:* rwm',
    'c 5:2 rwm',
    'b 7:0 rw',
  ]) {
    t.ok(devList.includes(rule), `devices.list allows ${rule}`);
  }
  t.notOk(devList.includes('a *:* rwm'), 'everything else is denied');
  t.equal(devList.length, limits.devices.length);

  t.equal(cgroup.procsFiles.length, v1.hierarchies.length, 'one cgroup.procs per hierarchy');
  for (const f of cgroup.procsFiles) t.ok(existsSync(f), `${f} exists`);
  t.same(await v1.list(PARENT), [name]);
  t.ok((await v1.list('')).includes(PARENT));

  // a real sleep, moved in through the procs files
  const s = run('sleep', ['1000']);
  const pid = s.child.pid as number;
  for (const f of cgroup.procsFiles) writeFileSync(f, String(pid));
  const pc = procCgroup(pid);
  for (const c of ['memory', 'pids', 'cpu', 'cpuacct', 'cpuset', 'blkio', 'devices', 'freezer']) {
    t.match(pc, new RegExp(`^\\d+:${c}:/${name}$`, 'm'), `sleep is in the ${c} cgroup`);
  }
  t.same(await cgroup.pids(), [pid]);
  const st = await cgroup.stats();
  t.equal(st.pidsCurrent, 1);
  t.equal(st.pidsLimit, 10);
  t.equal(st.memoryLimit, 64 * MiB);
  t.type(st.cpuUsageNs, 'number');
  t.ok(st.cpuUsageNs >= 0);
  t.ok(st.memoryUsage >= 0 && st.memoryUsage <= 64 * MiB);
  t.equal(await cgroup.oomKillCount(), 0);

  // CPU time is accounted to the cgroup
  const busy = inCgroup(cgroup.procsFiles, `sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'`);
  t.same(await busy.exit, { code: 0, signal: null }, busy.stderr());
  const st2 = await cgroup.stats();
  t.ok(st2.cpuUsageNs > 10_000_000, `cpu usage counted (${st2.cpuUsageNs} ns)`);
  t.ok(st2.memoryUsage > 0, `memory usage counted (${st2.memoryUsage} bytes)`);

  // destroy never kills: with the sleep inside, it fails and names the directory
  const err = await cgroup.destroy().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof TsswarmError, 'destroy refuses while a process is inside');
  t.match((err as Error).message, /EBUSY.*processes still inside/);
  t.ok(existsSync(`/proc/${pid}`), 'and did not kill it');

  killPid(pid);
  t.equal((await s.exit).signal, 'SIGKILL');
  await waitFor('empty cgroup', async () => (await cgroup.pids()).length === 0);
  await cgroup.destroy();
  for (const d of v1Dirs(name)) t.notOk(existsSync(d), `${d} removed`);
  await cgroup.destroy(); // missing = fine
  t.same(await v1.list(PARENT), []);
  await t.rejects(cgroup.stats(), { code: 'not_found' });
});

t.test('v1: pids.max really blocks forks', async (t) => {
  const name = `${PARENT}/forks`;
  const { cgroup } = await v1.create(name, resolveLimits({ pidsLimit: 5 }, localHostFacts()));
  const sh = inCgroup(cgroup.procsFiles, `sh -c 'for i in $(seq 30); do sleep 3 & done; wait'`);
  let maxSeen = 0;
  let done = false;
  void sh.exit.then(() => (done = true));
  while (!done) {
    maxSeen = Math.max(maxSeen, Number(v1File('pids', name, 'pids.current')));
    await sleep(10);
  }
  const res = await sh.exit;
  t.match(sh.stderr(), /fork/i, `the shell reports the failed fork: ${JSON.stringify(sh.stderr().trim())}`);
  t.not(res.code, 0, 'the shell failed');
  t.ok(maxSeen <= 5, `pids.current never exceeded the limit (max seen ${maxSeen})`);
  t.ok(maxSeen >= 2, 'forks did happen');
  const left = (await cgroup.stats()).pidsCurrent;
  t.equal(left, 4, 'limit 5 = the shell + 4 sleeps; the 5th fork failed and the shell exited');
  t.ok(
    Number(/^max (\d+)/m.exec(v1File('pids', name, 'pids.events'))?.[1]) >= 1,
    'pids.events counted the refused fork',
  );
  for (const p of await cgroup.pids()) killPid(p);
  await waitFor('empty cgroup', async () => (await cgroup.pids()).length === 0);
  await cgroup.destroy();
  for (const d of v1Dirs(name)) t.notOk(existsSync(d), `${d} removed`);
});

t.test('v1: the memory limit OOM-kills and the kill is counted', async (t) => {
  const name = `${PARENT}/oom`;
  const { cgroup } = await v1.create(
    name,
    resolveLimits({ memory: '32m', memorySwap: '32m' }, localHostFacts()),
  );
  t.equal(await cgroup.oomKillCount(), 0);
  const dd = inCgroup(cgroup.procsFiles, 'dd if=/dev/zero of=/dev/null bs=64M count=1');
  const res = await dd.exit;
  t.equal(res.signal, 'SIGKILL', `dd was killed (stderr: ${dd.stderr().trim()})`);
  t.ok((await cgroup.oomKillCount()) >= 1, 'memory.oom_control oom_kill counted it');
  await waitFor('empty cgroup', async () => (await cgroup.pids()).length === 0);
  await cgroup.destroy();
  for (const d of v1Dirs(name)) t.notOk(existsSync(d), `${d} removed`);
});

t.test('v1: a failing create removes what it created, and only that', async (t) => {
  const keep = `${PARENT}/keep`;
  await v1.create(keep, defaultLimits());
  const bad = `${PARENT}/bad/leaf`;
  const err = await v1.create(bad, { ...defaultLimits(), cpusetCpus: '4095' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof TsswarmError, 'rejects with a typed error');
  t.equal((err as TsswarmError).code, 'invalid_argument');
  t.match((err as Error).message, /cannot write "4095" to .*\/bad\/leaf\/cpuset\.cpus: (EINVAL|ERANGE)/);
  for (const d of v1Dirs(`${PARENT}/bad`)) t.notOk(existsSync(d), `${d} rolled back`);
  for (const d of v1Dirs(keep)) t.ok(existsSync(d), `${d} (pre-existing) kept`);
  await t.rejects(v1.create('../escape', defaultLimits()), { code: 'invalid_argument' });
  await v1.open(keep).destroy();
});

t.test(
  'v2 on this kernel: create, move a process in and out, destroy; missing controllers are reported',
  async (t) => {
    const name = `${PARENT}/v2c`;
    const available = readFileSync(path.join(v2.root, 'cgroup.controllers'), 'utf8').trim();
    t.equal(available, 'hugetlb', 'the unified hierarchy offers only hugetlb here');
    const limits = resolveLimits(
      { memory: '64m', pidsLimit: 10, cpuShares: 512, devices: ['/dev/loop0'] },
      localHostFacts(),
    );
    const { cgroup, warnings } = await v2.create(name, limits);
    t.same(warnings, [
      WARN.memory,
      WARN.cpuShares,
      WARN.pids,
      DEVICES_V2_WARNING,
      `cgroup v2 controller(s) memory, cpu, pids not available in ${v2.root}/cgroup.controllers (available: hugetlb): the limits above were discarded`,
    ]);
    const dir = path.join(v2.root, name);
    t.ok(existsSync(dir), 'the cgroup directory exists');
    t.notOk(
      existsSync(path.join(dir, 'memory.max')),
      'no memory controller: nothing was (or could be) written',
    );
    t.same(cgroup.procsFiles, [path.join(dir, 'cgroup.procs')]);
    t.equal(
      readFileSync(path.join(v2.root, 'cgroup.subtree_control'), 'utf8').trim(),
      '',
      'the root subtree_control was left alone',
    );

    const s = run('sleep', ['1000']);
    const pid = s.child.pid as number;
    const before = /^0::(.*)$/m.exec(procCgroup(pid))?.[1] as string;
    writeFileSync(cgroup.procsFiles[0] as string, String(pid));
    t.match(procCgroup(pid), new RegExp(`^0::/${name}$`, 'm'), 'moved in');
    t.same(await cgroup.pids(), [pid]);
    const st = await cgroup.stats();
    t.equal(st.pidsCurrent, 1, 'pids counted from cgroup.threads without the pids controller');
    t.equal(st.memoryLimit, hostMemTotal(), 'no memory controller: the limit is host memory');
    t.type(st.cpuUsageNs, 'number');
    t.equal(await cgroup.oomKillCount(), 0);

    writeFileSync(path.join(v2.root, before, 'cgroup.procs'), String(pid));
    t.match(
      procCgroup(pid),
      new RegExp(`^0::${before.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'),
      'moved back out',
    );
    t.same(await cgroup.pids(), []);
    killPid(pid);
    await s.exit;
    await cgroup.destroy();
    t.notOk(existsSync(dir), 'removed');

    // --cpus needs the cpu controller: refused like Docker refuses it without CFS, and rolled back
    const err = await v2.create(`${PARENT}/v2cpu/leaf`, { ...defaultLimits(), nanoCpus: 5e8 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof TsswarmError);
    t.equal((err as TsswarmError).code, 'unsupported');
    t.match((err as Error).message, NO_CFS_ERROR);
    t.match((err as Error).message, /controller "cpu" is not enabled in .*\(available: hugetlb\)/);
    t.notOk(existsSync(path.join(v2.root, PARENT, 'v2cpu')), 'rolled back');
  },
);

t.test('cleanup leaves nothing behind', async (t) => {
  await cleanupAll();
  for (const d of v1Dirs(PARENT)) t.notOk(existsSync(d), `${d} removed`);
  t.notOk(existsSync(path.join(v2.root, PARENT)), 'unified parent removed');
  await waitFor('started processes to be reaped', () =>
    [...started.values()].every((c) => c.exitCode !== null || c.signalCode !== null),
  );
  t.pass(`all ${started.size} processes the tests started have exited`);
});
