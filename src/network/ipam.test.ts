import t, { type Test } from 'tap';
import { type ErrorCode, TsswarmError } from '../api/errors.js';
import {
  type AddressPool,
  allocateAddress,
  allocateSubnet,
  checkPools,
  checkSubnet,
  contains,
  DEFAULT_LOCAL_POOLS,
  DEFAULT_SWARM_POOLS,
  formatCidr,
  formatIp,
  gatewayOf,
  overlaps,
  parseCidr,
  parseIp,
} from './ipam.js';

/** Asserts that fn throws a TsswarmError with exactly this code and message. */
function fails(t: Test, fn: () => unknown, code: ErrorCode, message: string, what = message): void {
  try {
    fn();
    t.fail(`expected ${code}: ${message}`);
  } catch (e) {
    t.ok(e instanceof TsswarmError, `${what}: a typed error`);
    t.same({ code: (e as TsswarmError).code, message: (e as Error).message }, { code, message }, what);
  }
}

const cidr = (s: string) => parseCidr(s);

t.test('parseIp and formatIp', async (t) => {
  t.equal(parseIp('10.0.0.1'), 0x0a000001);
  t.equal(parseIp('0.0.0.0'), 0);
  t.equal(parseIp('255.255.255.255'), 0xffffffff);
  t.equal(parseIp('192.168.1.200'), 0xc0a801c8);
  t.equal(formatIp(0x0a000001), '10.0.0.1');
  t.equal(formatIp(0), '0.0.0.0');
  t.equal(formatIp(0xffffffff), '255.255.255.255');
  for (const s of ['1.2.3.4', '172.31.255.254', '0.0.0.0', '255.255.255.255'])
    t.equal(formatIp(parseIp(s)), s);
  for (const s of [
    '',
    '10.0.0',
    '10.0.0.0.1',
    '10.0.0.256',
    '10.0.0.-1',
    '010.0.0.1',
    '10.0.0.01',
    ' 10.0.0.1',
    '10.0.0.1 ',
    '10.0.0.1/32',
    '1e1.0.0.1',
    'a.b.c.d',
    '10..0.1',
  ]) {
    fails(t, () => parseIp(s), 'invalid_argument', `invalid IPv4 address "${s}"`);
  }
});

t.test('IPv6 is refused clearly', async (t) => {
  fails(t, () => parseIp('::1'), 'invalid_argument', 'invalid IPv4 address "::1": IPv6 is not supported');
  fails(
    t,
    () => parseIp('::ffff:10.0.0.1'),
    'invalid_argument',
    'invalid IPv4 address "::ffff:10.0.0.1": IPv6 is not supported',
  );
  fails(
    t,
    () => parseCidr('fd00::/64'),
    'invalid_argument',
    'invalid subnet "fd00::/64": IPv6 is not supported, expected an IPv4 CIDR such as 10.0.9.0/24',
  );
  fails(
    t,
    () => checkSubnet('2001:db8::/32', []),
    'invalid_argument',
    'invalid subnet "2001:db8::/32": IPv6 is not supported, expected an IPv4 CIDR such as 10.0.9.0/24',
  );
  fails(
    t,
    () => allocateAddress('10.0.9.0/24', ['fe80::1']),
    'invalid_argument',
    'invalid IPv4 address "fe80::1": IPv6 is not supported',
  );
});

t.test('parseCidr and formatCidr', async (t) => {
  t.same(parseCidr('10.0.0.0/24'), { base: 0x0a000000, prefix: 24 });
  t.same(parseCidr('0.0.0.0/0'), { base: 0, prefix: 0 });
  t.same(parseCidr('10.0.0.5/32'), { base: 0x0a000005, prefix: 32 });
  t.same(parseCidr('10.0.0.4/31'), { base: 0x0a000004, prefix: 31 });
  t.same(parseCidr('255.255.255.252/30'), { base: 0xfffffffc, prefix: 30 });
  t.same(parseCidr('128.0.0.0/1'), { base: 0x80000000, prefix: 1 });
  t.equal(formatCidr({ base: 0x0a000900, prefix: 24 }), '10.0.9.0/24');
  t.equal(formatCidr(parseCidr('172.17.0.0/16')), '172.17.0.0/16');
});

t.test('parseCidr refuses host bits with the likely intent', async (t) => {
  fails(
    t,
    () => parseCidr('10.0.0.5/24'),
    'invalid_argument',
    'invalid subnet "10.0.0.5/24": did you mean 10.0.0.0/24?',
  );
  fails(
    t,
    () => parseCidr('10.0.0.5/31'),
    'invalid_argument',
    'invalid subnet "10.0.0.5/31": did you mean 10.0.0.4/31?',
  );
  fails(
    t,
    () => parseCidr('10.1.2.3/0'),
    'invalid_argument',
    'invalid subnet "10.1.2.3/0": did you mean 0.0.0.0/0?',
  );
  fails(
    t,
    () => parseCidr('192.168.77.1/20'),
    'invalid_argument',
    'invalid subnet "192.168.77.1/20": did you mean 192.168.64.0/20?',
  );
});

t.test('parseCidr refuses bad syntax', async (t) => {
  for (const s of [
    '',
    '10.0.0.0',
    '10.0.0.0/',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/024',
    '10.0.0.0/2a',
    '10.0.0.0/24/8',
    '10.0.0.0/00',
    '10.0.0.0/100',
    '10.0.0/24',
    '10.0.0.256/24',
    '/24',
    'web',
  ]) {
    fails(
      t,
      () => parseCidr(s),
      'invalid_argument',
      `invalid subnet "${s}": expected an IPv4 CIDR such as 10.0.9.0/24`,
    );
  }
});

t.test('overlaps, in both directions', async (t) => {
  const pairs: Array<[string, string, boolean]> = [
    ['10.0.0.0/8', '10.0.9.0/24', true],
    ['10.0.9.0/24', '10.0.9.0/24', true],
    ['10.0.9.0/24', '10.0.10.0/24', false],
    ['10.0.8.0/23', '10.0.9.0/24', true],
    ['10.0.8.0/23', '10.0.10.0/24', false],
    ['10.0.9.255/32', '10.0.9.0/24', true],
    ['10.0.10.0/32', '10.0.9.0/24', false],
    ['0.0.0.0/0', '192.168.1.0/24', true],
    ['255.255.255.255/32', '255.255.255.0/24', true],
    ['172.16.0.0/12', '172.32.0.0/16', false],
    ['172.16.0.0/12', '172.31.255.252/30', true],
  ];
  for (const [a, b, want] of pairs) {
    t.equal(overlaps(cidr(a), cidr(b)), want, `${a} ~ ${b}`);
    t.equal(overlaps(cidr(b), cidr(a)), want, `${b} ~ ${a}`);
  }
});

t.test('contains', async (t) => {
  const c = cidr('10.0.9.0/24');
  t.ok(contains(c, parseIp('10.0.9.0')));
  t.ok(contains(c, parseIp('10.0.9.128')));
  t.ok(contains(c, parseIp('10.0.9.255')));
  t.notOk(contains(c, parseIp('10.0.8.255')));
  t.notOk(contains(c, parseIp('10.0.10.0')));
  t.ok(contains(cidr('10.0.0.7/32'), parseIp('10.0.0.7')));
  t.notOk(contains(cidr('10.0.0.7/32'), parseIp('10.0.0.8')));
  t.ok(contains(cidr('0.0.0.0/0'), 0xffffffff));
  t.ok(contains(cidr('255.255.255.254/31'), 0xffffffff));
});

t.test('default pools', async (t) => {
  t.same(DEFAULT_SWARM_POOLS, [{ base: '10.0.0.0/8', size: 24 }]);
  t.equal(DEFAULT_LOCAL_POOLS.length, 16);
  t.same(DEFAULT_LOCAL_POOLS[0], { base: '172.17.0.0/16', size: 16 });
  t.same(DEFAULT_LOCAL_POOLS[14], { base: '172.31.0.0/16', size: 16 });
  t.same(DEFAULT_LOCAL_POOLS[15], { base: '192.168.0.0/16', size: 20 });
  t.same(checkPools(DEFAULT_SWARM_POOLS), DEFAULT_SWARM_POOLS, 'the defaults pass their own check');
  t.same(checkPools(DEFAULT_LOCAL_POOLS), DEFAULT_LOCAL_POOLS);
});

t.test('checkPools', async (t) => {
  t.same(checkPools([{ base: '10.20.0.0/16', size: 24 }]), [{ base: '10.20.0.0/16', size: 24 }]);
  t.same(
    checkPools([
      { base: '10.20.0.0/16', size: 16 },
      { base: '10.21.0.0/16', size: 30 },
    ]),
    [
      { base: '10.20.0.0/16', size: 16 },
      { base: '10.21.0.0/16', size: 30 },
    ],
    'size may equal the base prefix or be 30',
  );
  fails(t, () => checkPools([]), 'invalid_argument', 'at least one address pool is required');
  fails(
    t,
    () => checkPools([{ base: '10.20.0.1/16', size: 24 }]),
    'invalid_argument',
    'invalid subnet "10.20.0.1/16": did you mean 10.20.0.0/16?',
  );
  fails(
    t,
    () => checkPools([{ base: '10.20.0.0', size: 24 }]),
    'invalid_argument',
    'invalid subnet "10.20.0.0": expected an IPv4 CIDR such as 10.0.9.0/24',
  );
  for (const size of [15, 31, 32, 24.5, Number.NaN]) {
    fails(
      t,
      () => checkPools([{ base: '10.20.0.0/16', size }]),
      'invalid_argument',
      `invalid address pool 10.20.0.0/16: mask length ${size} must be between 16 and 30`,
    );
  }
  fails(
    t,
    () =>
      checkPools([
        { base: '10.20.0.0/16', size: 24 },
        { base: '192.168.0.0/16', size: 24 },
        { base: '10.0.0.0/8', size: 24 },
      ]),
    'invalid_argument',
    'address pools 10.20.0.0/16 and 10.0.0.0/8 overlap',
  );
  fails(
    t,
    () =>
      checkPools([
        { base: '10.0.0.0/8', size: 24 },
        { base: '10.20.0.0/16', size: 24 },
      ]),
    'invalid_argument',
    'address pools 10.0.0.0/8 and 10.20.0.0/16 overlap',
  );
  fails(
    t,
    () =>
      checkPools([
        { base: '10.20.0.0/16', size: 24 },
        { base: '10.20.0.0/16', size: 20 },
      ]),
    'invalid_argument',
    'address pools 10.20.0.0/16 and 10.20.0.0/16 overlap',
  );
});

t.test('allocateSubnet: first free subnet in address order', async (t) => {
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, []), '10.0.0.0/24');
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/24']), '10.0.1.0/24');
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.1.0/24']), '10.0.0.0/24', 'a hole is reused');
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.1.0/24', '10.0.0.0/24']),
    '10.0.2.0/24',
    'taken unsorted',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/24', '10.0.0.0/24', '10.0.1.0/24']),
    '10.0.2.0/24',
    'duplicates in taken',
  );
  t.equal(allocateSubnet(DEFAULT_LOCAL_POOLS, []), '172.17.0.0/16');
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, ['192.168.0.0/16', 'fe80::/64', '::1']), '10.0.0.0/24');
});

t.test('allocateSubnet: taken ranges of every shape', async (t) => {
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/22']), '10.0.4.0/24', 'a range spanning candidates');
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/23', '10.0.1.128/25', '10.0.2.0/24', '10.0.3.7']),
    '10.0.4.0/24',
    'nested and adjacent ranges',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/16', '10.0.5.0/24']),
    '10.1.0.0/24',
    'a range that contains another one',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.5', '10.0.0.0/16']),
    '10.1.0.0/24',
    'a small range listed before a large one that holds it',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/24', '10.0.0.0/16']),
    '10.1.0.0/24',
    'two ranges with the same base',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.6/31', '10.0.1.9/32']),
    '10.0.2.0/24',
    '/31 and /32 ranges',
  );
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.1']), '10.0.1.0/24', 'a bare address is a /32');
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.255', '10.0.1.0', '10.0.2.128']),
    '10.0.3.0/24',
    'bare addresses at both edges and in the middle',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.200/23']),
    '10.0.2.0/24',
    "a host interface's address with its prefix counts as its whole subnet",
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, ['9.255.255.0/24']),
    '10.0.0.0/24',
    'a range just before the pool',
  );
  t.equal(allocateSubnet(DEFAULT_SWARM_POOLS, ['11.0.0.0/24']), '10.0.0.0/24', 'a range just after the pool');
  t.equal(
    allocateSubnet(
      [
        { base: '10.1.4.0/22', size: 24 },
        { base: '10.2.0.0/24', size: 24 },
      ],
      ['10.1.0.0/21'],
    ),
    '10.2.0.0/24',
    'a range that starts before the pool and covers it',
  );
  t.equal(
    allocateSubnet(
      [
        { base: '10.0.0.0/8', size: 24 },
        { base: '172.16.0.0/12', size: 24 },
      ],
      ['10.0.0.0/8', '172.16.0.0/24'],
    ),
    '172.16.1.0/24',
    'a host route over the whole first pool moves allocation to the next pool',
  );
  t.equal(
    allocateSubnet(DEFAULT_LOCAL_POOLS, ['172.16.0.0/12', '192.168.0.0/24']),
    '192.168.16.0/20',
    'local pools: 172.16.0.0/12 taken, so the first /20 of 192.168.0.0/16 after a taken /24',
  );
  t.equal(
    allocateSubnet(DEFAULT_LOCAL_POOLS, ['172.17.0.1/16', '172.18.0.0/16']),
    '172.19.0.0/16',
    'docker0 and another bridge are in use',
  );
});

t.test('allocateSubnet: small subnets and the last subnet of a pool', async (t) => {
  const pool: AddressPool[] = [{ base: '10.9.0.0/28', size: 30 }];
  t.equal(allocateSubnet(pool, []), '10.9.0.0/30');
  t.equal(allocateSubnet(pool, ['10.9.0.0/29', '10.9.0.8/30']), '10.9.0.12/30', 'the last subnet of a pool');
  t.equal(allocateSubnet([{ base: '10.9.0.0/30', size: 30 }], []), '10.9.0.0/30', 'a pool of one subnet');
  t.equal(
    allocateSubnet([{ base: '255.255.255.0/24', size: 30 }], ['255.255.255.0/25']),
    '255.255.255.128/30',
  );
  t.equal(
    allocateSubnet(
      [{ base: '255.255.255.0/24', size: 30 }],
      [
        '255.255.255.0/25',
        '255.255.255.128/26',
        '255.255.255.192/27',
        '255.255.255.224/28',
        '255.255.255.240/29',
        '255.255.255.248/30',
      ],
    ),
    '255.255.255.252/30',
    'the very last /30 of the address space',
  );
  t.equal(
    allocateSubnet(DEFAULT_SWARM_POOLS, [
      '10.0.0.0/9',
      '10.128.0.0/10',
      '10.192.0.0/11',
      '10.224.0.0/12',
      '10.240.0.0/13',
      '10.248.0.0/14',
      '10.252.0.0/15',
      '10.254.0.0/16',
      '10.255.0.0/17',
      '10.255.128.0/18',
      '10.255.192.0/19',
      '10.255.224.0/20',
      '10.255.240.0/21',
      '10.255.248.0/22',
      '10.255.252.0/23',
      '10.255.254.0/24',
    ]),
    '10.255.255.0/24',
    'the last /24 of 10.0.0.0/8',
  );
});

t.test('allocateSubnet: exhausted pools', async (t) => {
  fails(
    t,
    () => allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/8']),
    'precondition',
    'the address pools are exhausted: no free /24 in 10.0.0.0/8',
  );
  fails(
    t,
    () => allocateSubnet(DEFAULT_SWARM_POOLS, ['0.0.0.0/0']),
    'precondition',
    'the address pools are exhausted: no free /24 in 10.0.0.0/8',
  );
  fails(
    t,
    () =>
      allocateSubnet(
        [{ base: '10.9.0.0/28', size: 30 }],
        ['10.9.0.0/30', '10.9.0.4/30', '10.9.0.8/30', '10.9.0.15'],
      ),
    'precondition',
    'the address pools are exhausted: no free /30 in 10.9.0.0/28',
  );
  fails(
    t,
    () =>
      allocateSubnet(
        [
          { base: '10.1.0.0/24', size: 24 },
          { base: '10.2.0.0/24', size: 24 },
        ],
        ['10.1.0.0/24', '10.2.0.128/25'],
      ),
    'precondition',
    'the address pools are exhausted: no free /24 in 10.1.0.0/24, 10.2.0.0/24',
  );
  fails(
    t,
    () => allocateSubnet(DEFAULT_LOCAL_POOLS, ['172.16.0.0/12', '192.168.0.0/16']),
    'precondition',
    'the address pools are exhausted: no free /16 or /20 in 172.17.0.0/16, 172.18.0.0/16, 172.19.0.0/16, ' +
      '172.20.0.0/16, 172.21.0.0/16, 172.22.0.0/16, 172.23.0.0/16, 172.24.0.0/16, 172.25.0.0/16, ' +
      '172.26.0.0/16, 172.27.0.0/16, 172.28.0.0/16, 172.29.0.0/16, 172.30.0.0/16, 172.31.0.0/16, 192.168.0.0/16',
  );
  fails(
    t,
    () => allocateSubnet([{ base: '255.255.255.252/30', size: 30 }], ['255.255.255.255']),
    'precondition',
    'the address pools are exhausted: no free /30 in 255.255.255.252/30',
  );
});

t.test('allocateSubnet: invalid taken entries are refused', async (t) => {
  fails(
    t,
    () => allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.300']),
    'invalid_argument',
    'invalid IPv4 address "10.0.0.300"',
  );
  fails(
    t,
    () => allocateSubnet(DEFAULT_SWARM_POOLS, ['10.0.0.0/40']),
    'invalid_argument',
    'invalid subnet "10.0.0.0/40": expected an IPv4 CIDR such as 10.0.9.0/24',
  );
});

t.test('allocateSubnet: 2000 subnets one after another', async (t) => {
  const got: string[] = [];
  for (let i = 0; i < 2000; i++) got.push(allocateSubnet(DEFAULT_SWARM_POOLS, got));
  t.equal(new Set(got).size, 2000, 'all distinct');
  const bases = got.map((s) => parseCidr(s).base);
  t.ok(
    bases.every((b, i) => i === 0 || b === bases[i - 1]! + 256),
    'consecutive /24s in address order',
  );
  t.equal(got[0], '10.0.0.0/24');
  t.equal(got[1999], '10.7.207.0/24');
});

t.test('checkSubnet', async (t) => {
  const taken = [
    { cidr: '10.0.8.0/24', what: 'network web_default' },
    { cidr: '192.168.1.17/32', what: 'an address of this host (eth0)' },
    { cidr: 'fe80::/64', what: 'a route of this host (eth0)' },
    { cidr: '172.17.0.0/16', what: 'a route of this host (docker0)' },
  ];
  t.equal(checkSubnet('10.0.9.0/24', taken), '10.0.9.0/24');
  t.equal(checkSubnet('10.0.9.0/24', []), '10.0.9.0/24');
  t.equal(checkSubnet('10.0.0.0/8', [{ cidr: '11.0.0.0/8', what: 'x' }]), '10.0.0.0/8', 'prefix 8');
  t.equal(checkSubnet('10.0.0.4/30', []), '10.0.0.4/30', 'prefix 30');
  fails(
    t,
    () => checkSubnet('10.0.8.0/24', taken),
    'conflict',
    'subnet 10.0.8.0/24 overlaps network web_default (10.0.8.0/24)',
  );
  fails(
    t,
    () => checkSubnet('10.0.0.0/16', taken),
    'conflict',
    'subnet 10.0.0.0/16 overlaps network web_default (10.0.8.0/24)',
    'a larger subnet over a taken one',
  );
  fails(
    t,
    () => checkSubnet('10.0.8.128/25', taken),
    'conflict',
    'subnet 10.0.8.128/25 overlaps network web_default (10.0.8.0/24)',
    'a smaller subnet inside a taken one',
  );
  fails(
    t,
    () => checkSubnet('192.168.0.0/23', taken),
    'conflict',
    'subnet 192.168.0.0/23 overlaps an address of this host (eth0) (192.168.1.17/32)',
  );
  fails(
    t,
    () => checkSubnet('172.16.0.0/12', taken),
    'conflict',
    'subnet 172.16.0.0/12 overlaps a route of this host (docker0) (172.17.0.0/16)',
  );
  fails(
    t,
    () =>
      checkSubnet('10.0.0.0/8', [
        { cidr: '10.1.0.0/16', what: 'network a' },
        { cidr: '10.2.0.0/16', what: 'network b' },
      ]),
    'conflict',
    'subnet 10.0.0.0/8 overlaps network a (10.1.0.0/16)',
    'the first overlapping entry is named',
  );
  fails(
    t,
    () => checkSubnet('10.0.8.128/25', [{ cidr: '10.0.8.9/24', what: 'an address of this host' }]),
    'conflict',
    'subnet 10.0.8.128/25 overlaps an address of this host (10.0.8.9/24)',
    "an interface's address with its prefix covers its subnet",
  );
  fails(
    t,
    () => checkSubnet('10.0.8.0/24', [{ cidr: '10.0.8.9', what: 'an address of this host' }]),
    'conflict',
    'subnet 10.0.8.0/24 overlaps an address of this host (10.0.8.9)',
    'a bare address',
  );
  fails(
    t,
    () => checkSubnet('10.0.9.5/24', []),
    'invalid_argument',
    'invalid subnet "10.0.9.5/24": did you mean 10.0.9.0/24?',
  );
  fails(
    t,
    () => checkSubnet('10.0.9/24', []),
    'invalid_argument',
    'invalid subnet "10.0.9/24": expected an IPv4 CIDR such as 10.0.9.0/24',
  );
  for (const s of ['10.0.0.0/7', '0.0.0.0/0', '10.0.0.4/31', '10.0.0.4/32']) {
    fails(
      t,
      () => checkSubnet(s, []),
      'invalid_argument',
      `invalid subnet "${s}": the prefix length must be between 8 and 30`,
    );
  }
});

t.test('gatewayOf', async (t) => {
  t.equal(gatewayOf('10.0.9.0/24'), '10.0.9.1');
  t.equal(gatewayOf('10.0.0.0/8'), '10.0.0.1');
  t.equal(gatewayOf('10.0.0.4/30'), '10.0.0.5');
  t.equal(gatewayOf('10.0.9.0/24', '10.0.9.254'), '10.0.9.254');
  t.equal(gatewayOf('10.0.9.0/24', '10.0.9.1'), '10.0.9.1');
  t.equal(gatewayOf('10.0.0.4/30', '10.0.0.6'), '10.0.0.6');
  fails(
    t,
    () => gatewayOf('10.0.9.0/24', '10.0.8.1'),
    'invalid_argument',
    'gateway 10.0.8.1 is not inside subnet 10.0.9.0/24',
  );
  fails(
    t,
    () => gatewayOf('10.0.9.0/24', '10.0.10.0'),
    'invalid_argument',
    'gateway 10.0.10.0 is not inside subnet 10.0.9.0/24',
  );
  fails(
    t,
    () => gatewayOf('10.0.9.0/24', '10.0.9.0'),
    'invalid_argument',
    'gateway 10.0.9.0 is the network address of subnet 10.0.9.0/24',
  );
  fails(
    t,
    () => gatewayOf('10.0.9.0/24', '10.0.9.255'),
    'invalid_argument',
    'gateway 10.0.9.255 is the broadcast address of subnet 10.0.9.0/24',
  );
  fails(
    t,
    () => gatewayOf('10.0.0.4/30', '10.0.0.7'),
    'invalid_argument',
    'gateway 10.0.0.7 is the broadcast address of subnet 10.0.0.4/30',
  );
  fails(t, () => gatewayOf('10.0.9.0/24', '10.0.9'), 'invalid_argument', 'invalid IPv4 address "10.0.9"');
  fails(
    t,
    () => gatewayOf('10.0.9.1/24'),
    'invalid_argument',
    'invalid subnet "10.0.9.1/24": did you mean 10.0.9.0/24?',
  );
});

t.test('gatewayOf: /31 and /32 have no usable address', async (t) => {
  fails(
    t,
    () => gatewayOf('10.0.0.4/31'),
    'invalid_argument',
    'subnet 10.0.0.4/31 has no usable address for a gateway',
  );
  fails(
    t,
    () => gatewayOf('10.0.0.4/32'),
    'invalid_argument',
    'subnet 10.0.0.4/32 has no usable address for a gateway',
  );
  fails(
    t,
    () => gatewayOf('10.0.0.4/31', '10.0.0.4'),
    'invalid_argument',
    'gateway 10.0.0.4 is the network address of subnet 10.0.0.4/31',
  );
  fails(
    t,
    () => gatewayOf('10.0.0.4/31', '10.0.0.5'),
    'invalid_argument',
    'gateway 10.0.0.5 is the broadcast address of subnet 10.0.0.4/31',
  );
  fails(
    t,
    () => gatewayOf('10.0.0.4/32', '10.0.0.4'),
    'invalid_argument',
    'gateway 10.0.0.4 is the network address of subnet 10.0.0.4/32',
  );
});

t.test('allocateAddress', async (t) => {
  t.equal(allocateAddress('10.0.9.0/24', []), '10.0.9.1', 'never the network address');
  t.equal(allocateAddress('10.0.9.0/24', [], { reserved: ['10.0.9.1'] }), '10.0.9.2', 'not the gateway');
  t.equal(allocateAddress('10.0.9.0/24', ['10.0.9.2', '10.0.9.3'], { reserved: ['10.0.9.1'] }), '10.0.9.4');
  t.equal(
    allocateAddress('10.0.9.0/24', ['10.0.9.3'], { reserved: ['10.0.9.1'] }),
    '10.0.9.2',
    'the lowest free',
  );
  t.equal(allocateAddress('10.0.9.0/24', new Set(['10.0.9.1', '10.0.8.7'])), '10.0.9.2', 'any iterable');
  t.equal(allocateAddress('10.0.9.0/24', ['10.0.9.1', '10.0.9.1']), '10.0.9.2', 'duplicates in used');
  t.equal(
    allocateAddress('10.0.9.0/24', [], { reserved: ['10.0.9.200'] }),
    '10.0.9.1',
    'a reserved one elsewhere',
  );
  function* used() {
    for (let i = 1; i < 254; i++) yield `10.0.9.${i}`;
  }
  t.equal(allocateAddress('10.0.9.0/24', used()), '10.0.9.254', 'never the broadcast address');
});

t.test('allocateAddress: small subnets', async (t) => {
  t.equal(allocateAddress('10.0.0.4/30', []), '10.0.0.5');
  t.equal(allocateAddress('10.0.0.4/30', [], { reserved: ['10.0.0.5'] }), '10.0.0.6');
  fails(
    t,
    () => allocateAddress('10.0.0.4/30', ['10.0.0.6'], { reserved: ['10.0.0.5'], label: 'tiny' }),
    'precondition',
    'no free address left in subnet 10.0.0.4/30 of network tiny',
  );
  fails(
    t,
    () => allocateAddress('10.0.0.4/31', []),
    'precondition',
    'no free address left in subnet 10.0.0.4/31',
  );
  fails(
    t,
    () => allocateAddress('10.0.0.4/32', []),
    'precondition',
    'no free address left in subnet 10.0.0.4/32',
  );
});

t.test('allocateAddress: errors', async (t) => {
  const full = Array.from({ length: 254 }, (_, i) => `10.0.9.${i + 1}`);
  fails(
    t,
    () => allocateAddress('10.0.9.0/24', full, { label: 'web_default' }),
    'precondition',
    'no free address left in subnet 10.0.9.0/24 of network web_default',
  );
  fails(
    t,
    () => allocateAddress('10.0.9.0/24', full),
    'precondition',
    'no free address left in subnet 10.0.9.0/24',
  );
  fails(
    t,
    () => allocateAddress('10.0.9.0/24', ['10.0.9.x']),
    'invalid_argument',
    'invalid IPv4 address "10.0.9.x"',
  );
  fails(
    t,
    () => allocateAddress('10.0.9.0/24', [], { reserved: ['10.0.9.1/24'] }),
    'invalid_argument',
    'invalid IPv4 address "10.0.9.1/24"',
  );
  fails(
    t,
    () => allocateAddress('10.0.9.7/24', []),
    'invalid_argument',
    'invalid subnet "10.0.9.7/24": did you mean 10.0.9.0/24?',
  );
});

t.test('allocateAddress: a /16 with most addresses used', async (t) => {
  const used: string[] = [];
  for (let i = 2; i < 65000; i++) used.push(formatIp(parseIp('10.1.0.0') + i));
  t.equal(allocateAddress('10.1.0.0/16', used, { reserved: ['10.1.0.1'] }), '10.1.253.232');
  const all = [
    ...used,
    '10.1.253.232',
    ...Array.from({ length: 533 }, (_, i) => formatIp(parseIp('10.1.253.233') + i)),
  ];
  t.equal(
    allocateAddress('10.1.0.0/16', all, { reserved: ['10.1.0.1'] }),
    '10.1.255.254',
    'the last usable one',
  );
  fails(
    t,
    () => allocateAddress('10.1.0.0/16', [...all, '10.1.255.254'], { reserved: ['10.1.0.1'], label: 'big' }),
    'precondition',
    'no free address left in subnet 10.1.0.0/16 of network big',
  );
});
