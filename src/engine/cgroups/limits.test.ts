import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import {
  type DeviceInfo,
  defaultDeviceRules,
  defaultLimits,
  type HostFacts,
  MIN_MEMORY,
  onlyDefaultDeviceRules,
  parseBytes,
  parseCpus,
  parseCpuset,
  parseDeviceCgroupRule,
  parseDeviceSpec,
  resolveLimits,
} from './limits.js';

const MiB = 1024 * 1024;

const devs: Record<string, DeviceInfo> = {
  '/dev/loop0': { isBlock: true, isChar: false, major: 7, minor: 0 },
  '/dev/sda': { isBlock: true, isChar: false, major: 8, minor: 0 },
  '/dev/fuse': { isBlock: false, isChar: true, major: 10, minor: 229 },
  '/dev/shm': { isBlock: false, isChar: false, major: 0, minor: 0 },
};
const host: HostFacts = { cpus: 4, statDevice: (p) => devs[p], cpusetCpus: '0-3', cpusetMems: '0' };

/** Asserts `fn` throws an invalid_argument TsswarmError with exactly `message`. */
function throwsInvalid(t: Pick<typeof tap, 'ok' | 'equal' | 'fail'>, fn: () => unknown, message: string) {
  try {
    fn();
    t.fail(`expected error: ${message}`);
  } catch (e) {
    t.ok(e instanceof TsswarmError, 'a TsswarmError');
    t.equal((e as TsswarmError).code, 'invalid_argument');
    t.equal((e as Error).message, message);
  }
}
const tap = t;

t.test('parseBytes: Docker sizes', async (t) => {
  t.equal(parseBytes('1024'), 1024);
  t.equal(parseBytes('100b'), 100);
  t.equal(parseBytes('512k'), 512 * 1024);
  t.equal(parseBytes('512K'), 512 * 1024);
  t.equal(parseBytes('10m'), 10 * MiB);
  t.equal(parseBytes('10mb'), 10 * MiB);
  t.equal(parseBytes('10MB'), 10 * MiB);
  t.equal(parseBytes('10MiB'), 10 * MiB);
  t.equal(parseBytes('1g'), 1024 * MiB);
  t.equal(parseBytes('1.5g'), 1.5 * 1024 * MiB);
  t.equal(parseBytes('2t'), 2 * 1024 ** 4);
  t.equal(parseBytes('0'), 0);
  for (const bad of ['10X', '', 'm', '-1', '10 x', '1,5g', 'ten', '10mm', '10i']) {
    throwsInvalid(t, () => parseBytes(bad), `invalid size: "${bad}"`);
  }
});

t.test('memory: minimum, swap defaults and Docker errors', async (t) => {
  const l = resolveLimits({ memory: '64m' }, host);
  t.equal(l.memory, 64 * MiB);
  t.equal(l.memorySwap, 128 * MiB, 'unset --memory-swap with --memory = 2 × memory');

  t.equal(resolveLimits({ memory: '6m' }, host).memory, MIN_MEMORY, '6MB is allowed');
  throwsInvalid(t, () => resolveLimits({ memory: '4m' }, host), 'Minimum memory limit allowed is 6MB');
  throwsInvalid(
    t,
    () => resolveLimits({ memory: String(MIN_MEMORY - 1) }, host),
    'Minimum memory limit allowed is 6MB',
  );
  throwsInvalid(t, () => resolveLimits({ memory: '10X' }, host), 'invalid size: "10X"');

  t.equal(resolveLimits({ memory: '64m', memorySwap: '-1' }, host).memorySwap, -1, '-1 = unlimited swap');
  t.equal(resolveLimits({ memory: '64m', memorySwap: -1 }, host).memorySwap, -1);
  t.equal(resolveLimits({ memory: '64m', memorySwap: '64m' }, host).memorySwap, 64 * MiB, 'equal = no swap');
  t.equal(resolveLimits({ memory: '64m', memorySwap: '1g' }, host).memorySwap, 1024 * MiB);
  t.equal(resolveLimits({ memory: '64m', memorySwap: '0' }, host).memorySwap, 128 * MiB, '0 = unset');
  throwsInvalid(
    t,
    () => resolveLimits({ memory: '64m', memorySwap: '32m' }, host),
    'Minimum memoryswap limit should be larger than memory limit, see usage',
  );
  throwsInvalid(
    t,
    () => resolveLimits({ memorySwap: '1g' }, host),
    'You should always set the Memory limit when using Memoryswap limit, see usage',
  );
  const none = resolveLimits({}, host);
  t.equal(none.memory, undefined);
  t.equal(none.memorySwap, undefined, 'no memory, no swap');
  t.equal(resolveLimits({ memory: '0' }, host).memory, undefined, '--memory 0 = unlimited');

  t.equal(resolveLimits({ memory: '64m', memoryReservation: '32m' }, host).memoryReservation, 32 * MiB);
  throwsInvalid(
    t,
    () => resolveLimits({ memory: '64m', memoryReservation: '128m' }, host),
    'Minimum memory limit can not be less than memory reservation limit, see usage',
  );
  throwsInvalid(
    t,
    () => resolveLimits({ memoryReservation: '1m' }, host),
    'Minimum memory reservation allowed is 6MB',
  );
});

t.test('cpu: shares default and clamping, --cpus range, cpuset', async (t) => {
  t.equal(resolveLimits({}, host).cpuShares, 1024);
  t.equal(resolveLimits({ cpuShares: 0 }, host).cpuShares, 1024, '0 = default');
  t.equal(resolveLimits({ cpuShares: 512 }, host).cpuShares, 512);
  const warnings: string[] = [];
  t.equal(resolveLimits({ cpuShares: 1 }, host, warnings).cpuShares, 2);
  t.equal(resolveLimits({ cpuShares: 300000 }, host, warnings).cpuShares, 262144);
  t.same(warnings, [
    'Changing requested CPUShares of 1 to minimum allowed of 2',
    'Changing requested CPUShares of 300000 to maximum allowed of 262144',
  ]);
  throwsInvalid(
    t,
    () => resolveLimits({ cpuShares: -5 }, host),
    'invalid CPU shares (-5): value must be a positive integer',
  );

  t.equal(parseCpus('1.5'), 1_500_000_000);
  t.equal(parseCpus('0.01'), 10_000_000);
  t.equal(parseCpus('.5'), 500_000_000);
  t.equal(parseCpus('2'), 2_000_000_000);
  t.equal(parseCpus('0.000000001'), 1);
  throwsInvalid(t, () => parseCpus('0.0000000001'), 'value is too precise');
  throwsInvalid(t, () => parseCpus('abc'), 'failed to parse abc as a rational number');

  t.equal(resolveLimits({ cpus: '1.5' }, host).nanoCpus, 1_500_000_000);
  t.equal(resolveLimits({ cpus: 0.5 }, host).nanoCpus, 500_000_000);
  t.equal(resolveLimits({ cpus: '4' }, host).nanoCpus, 4e9, 'all CPUs is allowed');
  t.equal(resolveLimits({ cpus: '0' }, host).nanoCpus, undefined, '0 = unlimited');
  const range = 'range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available';
  throwsInvalid(t, () => resolveLimits({ cpus: '4.5' }, host), range);
  throwsInvalid(t, () => resolveLimits({ cpus: '0.001' }, host), range);
  throwsInvalid(t, () => resolveLimits({ cpus: '-1' }, host), range);
  throwsInvalid(
    t,
    () => resolveLimits({ cpus: '3' }, { ...host, cpus: 2 }),
    'range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available',
  );

  t.same([...(parseCpuset('0-2,5') ?? [])], [0, 1, 2, 5]);
  t.equal(parseCpuset('2-1'), undefined);
  t.equal(parseCpuset('a'), undefined);
  t.equal(resolveLimits({ cpusetCpus: '1-3', cpusetMems: '0' }, host).cpusetCpus, '1-3');
  throwsInvalid(t, () => resolveLimits({ cpusetCpus: '1-x' }, host), 'Invalid value 1-x for cpuset cpus');
  throwsInvalid(
    t,
    () => resolveLimits({ cpusetCpus: '2-5' }, host),
    'Requested CPUs are not available - requested 2-5, available: 0-3',
  );
  throwsInvalid(t, () => resolveLimits({ cpusetMems: '0,,1' }, host), 'Invalid value 0,,1 for cpuset mems');
  throwsInvalid(
    t,
    () => resolveLimits({ cpusetMems: '1' }, host),
    'Requested memory nodes are not available - requested 1, available: 0',
  );
});

t.test('blkio weight and device throttles', async (t) => {
  t.equal(resolveLimits({}, host).blkioWeight, 500);
  t.equal(resolveLimits({ blkioWeight: 0 }, host).blkioWeight, 500, '0 = default');
  t.equal(resolveLimits({ blkioWeight: 10 }, host).blkioWeight, 10);
  t.equal(resolveLimits({ blkioWeight: 1000 }, host).blkioWeight, 1000);
  throwsInvalid(t, () => resolveLimits({ blkioWeight: 9 }, host), 'Range of blkio weight is from 10 to 1000');
  throwsInvalid(
    t,
    () => resolveLimits({ blkioWeight: 1001 }, host),
    'Range of blkio weight is from 10 to 1000',
  );

  const l = resolveLimits(
    {
      deviceReadBps: ['/dev/loop0:1mb'],
      deviceWriteBps: ['/dev/sda:512k', '/dev/loop0:1024'],
      deviceReadIops: ['/dev/loop0:100'],
      deviceWriteIops: ['/dev/sda:50'],
    },
    host,
  );
  t.same(l.deviceReadBps, [{ path: '/dev/loop0', major: 7, minor: 0, rate: MiB }]);
  t.same(l.deviceWriteBps, [
    { path: '/dev/sda', major: 8, minor: 0, rate: 512 * 1024 },
    { path: '/dev/loop0', major: 7, minor: 0, rate: 1024 },
  ]);
  t.same(l.deviceReadIops, [{ path: '/dev/loop0', major: 7, minor: 0, rate: 100 }]);
  t.same(l.deviceWriteIops, [{ path: '/dev/sda', major: 8, minor: 0, rate: 50 }]);

  throwsInvalid(
    t,
    () => resolveLimits({ deviceReadBps: ['/dev/nope:1mb'] }, host),
    'error evaluating device path: /dev/nope: no such file or directory',
  );
  throwsInvalid(
    t,
    () => resolveLimits({ deviceReadBps: ['/dev/fuse:1mb'] }, host),
    'error evaluating device path: /dev/fuse: not a block device',
  );
  throwsInvalid(t, () => resolveLimits({ deviceReadBps: ['/dev/loop0'] }, host), 'bad format: /dev/loop0');
  throwsInvalid(
    t,
    () => resolveLimits({ deviceReadBps: ['loop0:1mb'] }, host),
    'bad format for device path: loop0:1mb',
  );
  throwsInvalid(
    t,
    () => resolveLimits({ deviceWriteBps: ['/dev/loop0:fast'] }, host),
    'invalid rate for device: /dev/loop0:fast. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb',
  );
  throwsInvalid(
    t,
    () => resolveLimits({ deviceReadIops: ['/dev/loop0:1k'] }, host),
    'invalid rate for device: /dev/loop0:1k. The correct format is <device-path>:<number>. Number must be a positive integer',
  );
});

t.test('pids limit', async (t) => {
  t.equal(resolveLimits({ pidsLimit: 100 }, host).pidsLimit, 100);
  t.equal(resolveLimits({ pidsLimit: 0 }, host).pidsLimit, undefined, '0 = unlimited');
  t.equal(resolveLimits({ pidsLimit: -1 }, host).pidsLimit, undefined, '-1 = unlimited');
  t.equal(resolveLimits({}, host).pidsLimit, undefined);
  throwsInvalid(
    t,
    () => resolveLimits({ pidsLimit: 1.5 }, host),
    'invalid pids-limit: 1.5 (expected an integer)',
  );
});

t.test('devices: Docker default allow-list plus --device and --device-cgroup-rule', async (t) => {
  const d = defaultDeviceRules();
  const keys = d.map((r) => `${r.type} ${r.major}:${r.minor} ${r.access}`);
  t.same(keys, [
    'c *:* m',
    'b *:* m',
    'c 1:3 rwm',
    'c 1:5 rwm',
    'c 1:7 rwm',
    'c 1:8 rwm',
    'c 1:9 rwm',
    'c 5:0 rwm',
    'c 5:1 rwm',
    'c 136:* rwm',
    'c 5:2 rwm',
  ]);
  t.same(resolveLimits({}, host).devices, d, 'no flags = the default set');
  t.ok(onlyDefaultDeviceRules(d));

  const l = resolveLimits(
    { devices: ['/dev/loop0', '/dev/fuse:/dev/fuse:rw', '/dev/sda:r'], deviceCgroupRules: ['c 42:* rmw'] },
    host,
  );
  t.same(l.devices.slice(d.length), [
    { type: 'b', major: 7, minor: 0, access: 'rwm' },
    { type: 'c', major: 10, minor: 229, access: 'rw' },
    { type: 'b', major: 8, minor: 0, access: 'r' },
    { type: 'c', major: 42, minor: '*', access: 'rmw' },
  ]);
  t.notOk(onlyDefaultDeviceRules(l.devices));

  t.same(parseDeviceSpec('/dev/sdc:/dev/xvdc:rm'), {
    pathOnHost: '/dev/sdc',
    pathInContainer: '/dev/xvdc',
    permissions: 'rm',
  });
  t.same(parseDeviceSpec('/dev/sdc:/dev/xvdc'), {
    pathOnHost: '/dev/sdc',
    pathInContainer: '/dev/xvdc',
    permissions: 'rwm',
  });
  t.same(parseDeviceSpec('/dev/sdc'), {
    pathOnHost: '/dev/sdc',
    pathInContainer: '/dev/sdc',
    permissions: 'rwm',
  });
  throwsInvalid(t, () => parseDeviceSpec('/dev/sdc:/dev/xvdc:rwx'), 'invalid device mode: rwx');
  throwsInvalid(t, () => parseDeviceSpec('/a:/b:r:w'), 'invalid device specification: /a:/b:r:w');
  throwsInvalid(t, () => parseDeviceSpec('sdc'), 'sdc is not an absolute path');
  throwsInvalid(
    t,
    () => resolveLimits({ devices: ['/dev/nope'] }, host),
    'error gathering device information while adding custom device "/dev/nope": no such file or directory',
  );
  throwsInvalid(
    t,
    () => resolveLimits({ devices: ['/dev/shm'] }, host),
    'error gathering device information while adding custom device "/dev/shm": not a device node',
  );
  t.same(parseDeviceCgroupRule('a *:* rwm'), { type: 'a', major: '*', minor: '*', access: 'rwm' });
  throwsInvalid(t, () => parseDeviceCgroupRule('x 1:3 rwm'), "invalid device cgroup format 'x 1:3 rwm'");
  throwsInvalid(t, () => parseDeviceCgroupRule('c 1:3 rr'), "invalid device cgroup format 'c 1:3 rr'");
});

t.test('defaultLimits equals resolving no flags', async (t) => {
  t.same(defaultLimits(), resolveLimits({}, host));
});
