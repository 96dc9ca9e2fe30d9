/**
 * Pure unit tests of the limits → cgroup files mapping, v1 and v2, including runc's
 * conversions, plus mountinfo parsing and driver detection from a given mountinfo text.
 * These run on every machine, whatever its cgroup layout.
 */
import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import {
  cgroupMounts,
  checkName,
  deviceRuleString,
  parseFlatKeyed,
  parseMountinfo,
  prefixes,
} from './common.js';
import { detectCgroupDriver, detectCgroupVersion, devMajorMinor } from './detect.js';
import { defaultDeviceRules, defaultLimits, type HostFacts, resolveLimits } from './limits.js';
import type { CgroupWrite, ResourceLimits } from './types.js';
import { cfsQuota, NO_CFS_ERROR, parseBlkioServiceBytes, planV1, type V1Caps, WARN } from './v1.js';
import {
  blkioWeightToIoWeight,
  type CgroupV2Driver,
  cpuSharesToWeight,
  DEVICES_V2_WARNING,
  parseIoStat,
  planV2,
  type V2Caps,
} from './v2.js';

const MiB = 1024 * 1024;
const host: HostFacts = {
  cpus: 4,
  statDevice: (p) =>
    p === '/dev/loop0'
      ? { isBlock: true, isChar: false, major: 7, minor: 0 }
      : p === '/dev/sda'
        ? { isBlock: true, isChar: false, major: 8, minor: 0 }
        : undefined,
};

const fullV1: V1Caps = {
  controllers: new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids']),
  memsw: true,
  cfs: true,
  blkioWeightFile: 'blkio.weight',
  throttle: true,
};
// this build machine: no blkio weight file
const thisMachineV1: V1Caps = { controllers: fullV1.controllers, memsw: true, cfs: true, throttle: true };

const fullV2: V2Caps = {
  controllers: new Set(['cpu', 'cpuset', 'io', 'memory', 'pids']),
  swap: true,
  ioWeightFile: 'io.weight',
};

const everything = (): ResourceLimits =>
  resolveLimits(
    {
      memory: '64m',
      memorySwap: '192m',
      memoryReservation: '32m',
      cpuShares: 512,
      cpus: '1.5',
      cpusetCpus: '0-1',
      cpusetMems: '0',
      blkioWeight: 300,
      deviceReadBps: ['/dev/loop0:1mb'],
      deviceWriteBps: ['/dev/loop0:2mb'],
      deviceReadIops: ['/dev/loop0:100', '/dev/sda:10'],
      deviceWriteIops: ['/dev/loop0:200'],
      pidsLimit: 50,
      devices: ['/dev/loop0:r'],
    },
    host,
  );

const files = (ws: CgroupWrite[]) => ws.map((w) => `${w.file}=${w.value}`);

t.test('conversions', async (t) => {
  t.equal(cfsQuota(1.5e9), 150000);
  t.equal(cfsQuota(1e7), 1000, '0.01 CPU = 1 ms per 100 ms');
  t.equal(cfsQuota(333_333_333), 33333, 'integer division');
  // runc: 1 + ((shares - 2) * 9999) / 262142
  t.equal(cpuSharesToWeight(2), 1);
  t.equal(cpuSharesToWeight(262144), 10000);
  t.equal(cpuSharesToWeight(1024), 39);
  t.equal(cpuSharesToWeight(512), 20);
  t.equal(cpuSharesToWeight(0), 0);
  // runc: 1 + (w - 10) * 9999 / 990
  t.equal(blkioWeightToIoWeight(10), 1);
  t.equal(blkioWeightToIoWeight(1000), 10000);
  t.equal(blkioWeightToIoWeight(500), 4950);
  t.equal(blkioWeightToIoWeight(300), 2930);
  t.equal(blkioWeightToIoWeight(0), 0);
});

t.test('v1 mapping: every limit, in order', async (t) => {
  const p = planV1(everything(), fullV1);
  t.same(p.warnings, []);
  t.same(p.missingControllers, []);
  t.same(files(p.writes), [
    `memory.limit_in_bytes=${64 * MiB}`,
    `memory.memsw.limit_in_bytes=${192 * MiB}`,
    `memory.soft_limit_in_bytes=${32 * MiB}`,
    'cpu.shares=512',
    'cpu.cfs_period_us=100000',
    'cpu.cfs_quota_us=150000',
    'cpuset.cpus=0-1',
    'cpuset.mems=0',
    'blkio.weight=300',
    `blkio.throttle.read_bps_device=7:0 ${MiB}`,
    `blkio.throttle.write_bps_device=7:0 ${2 * MiB}`,
    'blkio.throttle.read_iops_device=7:0 100',
    'blkio.throttle.read_iops_device=8:0 10',
    'blkio.throttle.write_iops_device=7:0 200',
    'pids.max=50',
    'devices.deny=a',
    'devices.allow=c *:* m',
    'devices.allow=b *:* m',
    'devices.allow=c 1:3 rwm',
    'devices.allow=c 1:5 rwm',
    'devices.allow=c 1:7 rwm',
    'devices.allow=c 1:8 rwm',
    'devices.allow=c 1:9 rwm',
    'devices.allow=c 5:0 rwm',
    'devices.allow=c 5:1 rwm',
    'devices.allow=c 136:* rwm',
    'devices.allow=c 5:2 rwm',
    'devices.allow=b 7:0 r',
  ]);
  t.ok(
    p.writes.every((w) => w.file.startsWith(`${w.controller}.`)),
    'each file is written in its own controller hierarchy',
  );
});

t.test('v1 mapping: defaults, swap, missing files and controllers', async (t) => {
  const d = planV1(defaultLimits(), fullV1);
  t.same(d.warnings, []);
  t.same(
    files(d.writes).filter((f) => !f.startsWith('devices.')),
    ['cpu.shares=1024', 'blkio.weight=500'],
    'no limit: only the default weights',
  );

  const swapDefault = planV1(resolveLimits({ memory: '64m' }, host), fullV1);
  t.same(files(swapDefault.writes).slice(0, 2), [
    `memory.limit_in_bytes=${64 * MiB}`,
    `memory.memsw.limit_in_bytes=${128 * MiB}`,
  ]);
  const unlimitedSwap = planV1(resolveLimits({ memory: '64m', memorySwap: '-1' }, host), fullV1);
  t.same(files(unlimitedSwap.writes).slice(0, 2), [
    `memory.limit_in_bytes=${64 * MiB}`,
    'memory.memsw.limit_in_bytes=-1',
  ]);

  const noSwapAccounting = planV1(resolveLimits({ memory: '64m' }, host), { ...fullV1, memsw: false });
  t.same(noSwapAccounting.warnings, [WARN.swap]);
  t.notOk(noSwapAccounting.writes.some((w) => w.file.startsWith('memory.memsw')));
  t.same(
    planV1(resolveLimits({ memory: '64m', memorySwap: '-1' }, host), { ...fullV1, memsw: false }).warnings,
    [],
  );

  // this machine: no blkio.weight
  t.same(planV1(defaultLimits(), thisMachineV1).warnings, [], 'default weight without a weight file: silent');
  const w = planV1(resolveLimits({ blkioWeight: 300 }, host), thisMachineV1);
  t.same(w.warnings, [
    'Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.',
  ]);
  t.notOk(w.writes.some((x) => x.file.startsWith('blkio.weight')));
  t.same(
    files(
      planV1(resolveLimits({ blkioWeight: 300 }, host), { ...fullV1, blkioWeightFile: 'blkio.bfq.weight' })
        .writes,
    ).filter((f) => f.startsWith('blkio')),
    ['blkio.bfq.weight=300'],
  );

  const bare: V1Caps = {
    controllers: new Set(['cpuacct', 'freezer']),
    memsw: false,
    cfs: false,
    throttle: false,
  };
  const lim = everything();
  delete lim.nanoCpus;
  const b = planV1(lim, bare);
  t.same(b.writes, []);
  t.same(b.warnings, [
    WARN.memory,
    WARN.reservation,
    WARN.cpuShares,
    WARN.cpuset,
    WARN.blkioWeight,
    WARN.readBps,
    WARN.writeBps,
    WARN.readIops,
    WARN.writeIops,
    WARN.pids,
    WARN.devices,
  ]);
  t.same(b.missingControllers.sort(), ['blkio', 'cpu', 'cpuset', 'devices', 'memory', 'pids']);

  t.throws(() => planV1(everything(), { ...fullV1, cfs: false }), {
    message: NO_CFS_ERROR,
    code: 'unsupported',
  });
});

t.test('v2 mapping: every limit, in order', async (t) => {
  const lim = everything();
  lim.devices = defaultDeviceRules();
  const p = planV2(lim, fullV2);
  t.same(p.warnings, []);
  t.same(files(p.writes), [
    `memory.max=${64 * MiB}`,
    `memory.swap.max=${128 * MiB}`,
    `memory.low=${32 * MiB}`,
    'cpu.weight=20',
    'cpu.max=150000 100000',
    'cpuset.cpus=0-1',
    'cpuset.mems=0',
    'io.weight=2930',
    `io.max=7:0 rbps=${MiB} wbps=${2 * MiB} riops=100 wiops=200`,
    'io.max=8:0 riops=10',
    'pids.max=50',
  ]);
  t.ok(
    p.writes.every((w) => w.file.startsWith(`${w.controller}.`)),
    'each file belongs to its controller',
  );
});

t.test('v2 mapping: defaults, swap, devices, missing controllers', async (t) => {
  const d = planV2(defaultLimits(), fullV2);
  t.same(d.writes, [], 'defaults: nothing written (runc would map shares 1024 to weight 39, not 100)');
  t.same(d.warnings, []);

  t.same(files(planV2(resolveLimits({ memory: '64m' }, host), fullV2).writes), [
    `memory.max=${64 * MiB}`,
    `memory.swap.max=${64 * MiB}`,
  ]);
  t.same(files(planV2(resolveLimits({ memory: '64m', memorySwap: '-1' }, host), fullV2).writes), [
    `memory.max=${64 * MiB}`,
    'memory.swap.max=max',
  ]);
  t.same(files(planV2(resolveLimits({ memory: '64m', memorySwap: '64m' }, host), fullV2).writes), [
    `memory.max=${64 * MiB}`,
    'memory.swap.max=0',
  ]);
  const noSwap = planV2(resolveLimits({ memory: '64m' }, host), { ...fullV2, swap: false });
  t.same(noSwap.warnings, [WARN.swap]);
  t.same(noSwap.missingControllers, []);
  t.same(
    files(
      planV2(resolveLimits({ blkioWeight: 300 }, host), { ...fullV2, ioWeightFile: 'io.bfq.weight' }).writes,
    ),
    ['io.bfq.weight=300'],
  );
  const noWeight = { ...fullV2 };
  delete noWeight.ioWeightFile;
  t.same(planV2(resolveLimits({ blkioWeight: 300 }, host), noWeight).warnings, [WARN.blkioWeight]);
  t.same(files(planV2(resolveLimits({ cpuShares: 2048 }, host), fullV2).writes), ['cpu.weight=79']);

  const dev = planV2(
    resolveLimits({ devices: ['/dev/loop0', '/dev/sda'], deviceCgroupRules: ['c 1:3 r'] }, host),
    fullV2,
  );
  t.same(dev.warnings, [DEVICES_V2_WARNING], 'non-default device rules: one warning');
  t.same(dev.writes, []);

  // what /sys/fs/cgroup/unified offers on the hybrid build machines: hugetlb only
  const hybrid: V2Caps = { controllers: new Set(['hugetlb']), swap: false };
  const lim = everything();
  delete lim.nanoCpus;
  const h = planV2(lim, hybrid);
  t.same(h.writes, []);
  t.same(h.warnings, [
    WARN.memory,
    WARN.reservation,
    WARN.cpuShares,
    WARN.cpuset,
    WARN.blkioWeight,
    WARN.readBps,
    WARN.writeBps,
    WARN.readIops,
    WARN.writeIops,
    WARN.pids,
    DEVICES_V2_WARNING,
  ]);
  t.same(h.missingControllers.sort(), ['cpu', 'cpuset', 'io', 'memory', 'pids']);
  t.throws(() => planV2(everything(), hybrid), { message: NO_CFS_ERROR, code: 'unsupported' });
});

t.test('stat file parsers', async (t) => {
  t.same(
    parseBlkioServiceBytes(
      '7:0 Read 4096\n7:0 Write 1024\n7:0 Sync 0\n7:0 Total 5120\n8:0 Read 10\nTotal 5130\n',
    ),
    { read: 4106, write: 1024 },
  );
  t.same(parseBlkioServiceBytes(undefined), { read: 0, write: 0 });
  t.same(
    parseIoStat(
      '8:0 rbytes=100 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n7:0 rbytes=5 wbytes=0 rios=1 wios=0\n',
    ),
    {
      read: 105,
      write: 20,
    },
  );
  const m = parseFlatKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n');
  t.equal(m.get('oom_kill'), 3);
  t.equal(parseFlatKeyed('usage_usec 12345\nuser_usec 1\n').get('usage_usec'), 12345);
});

const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/my\\040dir rw,relatime - cgroup cgroup rw,cpuset
`;
const UNIFIED = `25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;
const COMOUNTED = `32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
`;

t.test('mountinfo and detection', async (t) => {
  const mi = parseMountinfo(HYBRID);
  t.equal(mi.length, 8);
  t.equal(mi[7]?.mountpoint, '/mnt/my dir', 'octal escapes decoded');
  const h = cgroupMounts(HYBRID);
  t.same(
    h.v1.map((x) => `${x.mountpoint}:${x.controllers.join('+')}`),
    [
      '/sys/fs/cgroup/cpu:cpu',
      '/sys/fs/cgroup/cpuacct:cpuacct',
      '/sys/fs/cgroup/cpuset:cpuset',
      '/sys/fs/cgroup/memory:memory',
      '/sys/fs/cgroup/systemd:name=systemd',
    ],
    'one entry per hierarchy; a second mount of cpuset is ignored',
  );
  t.equal(h.unified, '/sys/fs/cgroup/unified');
  t.same(cgroupMounts(COMOUNTED).v1, [
    { mountpoint: '/sys/fs/cgroup/cpu,cpuacct', controllers: ['cpu', 'cpuacct'] },
  ]);
  t.same(cgroupMounts(UNIFIED), { v1: [], unified: '/sys/fs/cgroup' });

  t.equal(detectCgroupVersion({ env: {}, mountinfo: HYBRID }), 1, 'hybrid layout → v1');
  t.equal(detectCgroupVersion({ env: {}, mountinfo: UNIFIED }), 2, 'pure unified layout → v2');
  t.equal(
    detectCgroupVersion({ env: { TSSWARM_CGROUP_DRIVER: 'v2' }, mountinfo: HYBRID }),
    2,
    'env override',
  );
  t.equal(
    detectCgroupVersion({ env: { TSSWARM_CGROUP_DRIVER: 'v1' }, mountinfo: UNIFIED }),
    1,
    'env override',
  );
  t.throws(() => detectCgroupVersion({ env: { TSSWARM_CGROUP_DRIVER: 'v3' } }), {
    message: 'invalid TSSWARM_CGROUP_DRIVER: "v3" (expected v1 or v2)',
  });
  const d2 = detectCgroupDriver({ env: {}, mountinfo: UNIFIED });
  t.equal(d2.version, 2);
  t.equal((d2 as CgroupV2Driver).root, '/sys/fs/cgroup');
  const d2h = detectCgroupDriver({ env: { TSSWARM_CGROUP_DRIVER: 'v2' }, mountinfo: HYBRID });
  t.equal(
    (d2h as CgroupV2Driver).root,
    '/sys/fs/cgroup/unified',
    'v2 on a hybrid machine uses the unified mount',
  );
  t.equal(detectCgroupDriver({ env: {}, mountinfo: HYBRID }).version, 1);
  t.throws(
    () => detectCgroupDriver({ env: {}, mountinfo: UNIFIED.replace('cgroup2 cgroup2', 'tmpfs tmpfs') }),
    {
      code: 'unsupported',
    },
  );
});

t.test('names, device rule strings, dev_t', async (t) => {
  t.doesNotThrow(() => checkName('tsswarm-abc12/ctr0123'));
  for (const bad of ['', '/abs', 'a//b', 'a/../b', '..', 'a/', 'a\nb']) {
    t.throws(() => checkName(bad), TsswarmError, `rejects ${JSON.stringify(bad)}`);
  }
  t.doesNotThrow(() => checkName('', true));
  t.same(prefixes('a/b/c'), ['a', 'a/b', 'a/b/c']);
  t.equal(deviceRuleString({ type: 'c', major: 136, minor: '*', access: 'rwm' }), 'c 136:* rwm');
  t.equal(deviceRuleString({ type: 'a', major: '*', minor: '*', access: 'rwm' }), 'a');
  t.same(devMajorMinor(0x0700n), { major: 7, minor: 0 });
  // major 259, minor 1 (an NVMe partition) in glibc's encoding: ((259 & 0xfff) << 8) | 1
  t.same(devMajorMinor(BigInt((259 << 8) | 1)), { major: 259, minor: 1 });
  // large minor: minor 300 = 0x12c → low byte 0x2c, high bits << 12
  t.same(devMajorMinor(BigInt((8 << 8) | 0x2c | (0x100 << 12))), { major: 8, minor: 300 });
});
