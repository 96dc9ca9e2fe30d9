import t from 'tap';
import { bridgeName, diffEntries, macOf, remoteEntries, vethName, vxlanName } from './links.js';

t.test('names fit an interface name (15 characters) and refuse what would not', async (t) => {
  t.equal(bridgeName(4097), 'tsbr4097');
  t.equal(vxlanName(16_777_215), 'tsvx16777215');
  t.equal(vethName('0123abcd9999', 0), 'tsc0123abcd0');
  t.ok(vethName('ffffffff', 99).length <= 15);
  t.throws(() => bridgeName(0), RangeError);
  t.throws(() => vxlanName(16_777_216), RangeError);
  t.throws(() => vethName('xyz', 0), RangeError);
  t.throws(() => vethName('01234567', 100), RangeError);
});

t.test('macOf: 02:42 and the address, as Docker derives them', async (t) => {
  t.equal(macOf('10.0.0.2'), '02:42:0a:00:00:02');
  t.equal(macOf('172.18.255.254'), '02:42:ac:12:ff:fe');
});

t.test('remoteEntries: the peers on other hosts, once each, in address order', async (t) => {
  const peers = [
    { address: '10.0.0.9', vtep: '192.0.2.2' },
    { address: '10.0.0.3', vtep: '192.0.2.1' },
    { address: '10.0.0.4', vtep: '192.0.2.3' },
    { address: '10.0.0.4', vtep: '192.0.2.3' },
  ];
  t.same(remoteEntries(peers, '192.0.2.1'), [
    { address: '10.0.0.4', mac: '02:42:0a:00:00:04', vtep: '192.0.2.3' },
    { address: '10.0.0.9', mac: '02:42:0a:00:00:09', vtep: '192.0.2.2' },
  ]);
});

t.test('diffEntries: a moved peer is removed at its old host and added at its new one', async (t) => {
  const e = (address: string, vtep: string) => ({ address, mac: macOf(address), vtep });
  const current = [e('10.0.0.4', '192.0.2.3'), e('10.0.0.9', '192.0.2.2')];
  const desired = [e('10.0.0.4', '192.0.2.2'), e('10.0.0.9', '192.0.2.2'), e('10.0.0.10', '192.0.2.3')];
  t.same(diffEntries(current, desired), {
    add: [e('10.0.0.4', '192.0.2.2'), e('10.0.0.10', '192.0.2.3')],
    remove: [e('10.0.0.4', '192.0.2.3')],
  });
  t.same(diffEntries(desired, desired), { add: [], remove: [] });
});
