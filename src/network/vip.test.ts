import t from 'tap';
import { renderVipRules } from './vip.js';

const NAT_HEAD = [
  '*nat',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
];
const FILTER_HEAD = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];

t.test('three backends: 1/3, 1/2, then the last one unconditionally', async (t) => {
  const out = renderVipRules([{ vip: '10.0.1.3', backends: ['10.0.1.20', '10.0.1.21', '10.0.1.22'] }]);
  t.equal(
    out,
    [
      ...NAT_HEAD,
      '-A OUTPUT -d 10.0.1.3/32 -m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 10.0.1.20',
      '-A OUTPUT -d 10.0.1.3/32 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.0.1.21',
      '-A OUTPUT -d 10.0.1.3/32 -j DNAT --to-destination 10.0.1.22',
      'COMMIT',
      ...FILTER_HEAD,
      '-A OUTPUT -d 10.0.1.3/32 -j REJECT --reject-with icmp-port-unreachable',
      'COMMIT',
      '',
    ].join('\n'),
  );
});

t.test('a VIP without backends is rejected, never DNATed', async (t) => {
  const out = renderVipRules([{ vip: '10.0.1.2', backends: [] }]);
  t.equal(
    out,
    [
      ...NAT_HEAD,
      'COMMIT',
      ...FILTER_HEAD,
      '-A OUTPUT -d 10.0.1.2/32 -j REJECT --reject-with icmp-port-unreachable',
      'COMMIT',
      '',
    ].join('\n'),
  );
  t.notMatch(out, /DNAT/);
  t.notMatch(out, /statistic/);
});

t.test('one backend: no statistic match', async (t) => {
  const out = renderVipRules([{ vip: '10.0.1.4', backends: ['10.0.1.30'] }]);
  t.match(out, /^-A OUTPUT -d 10\.0\.1\.4\/32 -j DNAT --to-destination 10\.0\.1\.30$/m);
  t.notMatch(out, /statistic/);
});

t.test('no VIPs: both tables, empty, each committed', async (t) => {
  t.equal(renderVipRules([]), [...NAT_HEAD, 'COMMIT', ...FILTER_HEAD, 'COMMIT', ''].join('\n'));
});

t.test('both tables COMMIT and the output is sorted by VIP, whatever the input order', async (t) => {
  const vips = [
    { vip: '10.0.1.5', backends: ['10.0.1.50', '10.0.1.51'] },
    { vip: '10.0.1.2', backends: [] },
    { vip: '10.0.1.3', backends: ['10.0.1.20'] },
  ];
  const out = renderVipRules(vips);
  t.equal(renderVipRules([...vips].reverse()), out);
  t.equal(renderVipRules([vips[1]!, vips[2]!, vips[0]!]), out);
  t.equal(out.match(/^COMMIT$/gm)?.length, 2);
  const lines = out.split('\n');
  t.equal(lines.indexOf('*filter'), lines.indexOf('COMMIT') + 1, '*filter right after the nat COMMIT');
  t.equal(lines.at(-2), 'COMMIT');
  t.equal(lines.at(-1), '', 'ends with a newline');
  t.same(
    lines.filter((l) => l.includes('REJECT')).map((l) => l.split(' ')[3]),
    ['10.0.1.2/32', '10.0.1.3/32', '10.0.1.5/32'],
  );
  t.same(
    lines.filter((l) => l.includes('DNAT')),
    [
      '-A OUTPUT -d 10.0.1.3/32 -j DNAT --to-destination 10.0.1.20',
      '-A OUTPUT -d 10.0.1.5/32 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.0.1.50',
      '-A OUTPUT -d 10.0.1.5/32 -j DNAT --to-destination 10.0.1.51',
    ],
  );
  // the input is not reordered in place
  t.same(
    vips.map((v) => v.vip),
    ['10.0.1.5', '10.0.1.2', '10.0.1.3'],
  );
});
