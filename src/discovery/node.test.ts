import t from 'tap';
import { consulNodeName, consulSettings } from './node.js';

t.test('consulSettings: --consul, --consul-addr, --consul-datacenter', async (t) => {
  t.equal(consulSettings({}), undefined, 'none: the embedded backend');
  t.same(consulSettings({ consul: true }), { mode: 'managed', datacenter: 'dc1' });
  t.same(consulSettings({ consulAddr: '10.1.2.3:8500', consulDatacenter: 'east' }), {
    mode: 'external',
    addr: '10.1.2.3:8500',
    datacenter: 'east',
  });
  t.same(consulSettings({ consulAddr: 'consul.internal:8500' }), {
    mode: 'external',
    addr: 'consul.internal:8500',
    datacenter: 'dc1',
  });
  t.throws(() => consulSettings({ consul: true, consulAddr: '1.2.3.4:8500' }), /give one of them/);
  t.throws(() => consulSettings({ consulDatacenter: 'x' }), /needs --consul or --consul-addr/);
  t.throws(() => consulSettings({ consul: true, consulDatacenter: 'Bad DC' }), /bad --consul-datacenter/);
  for (const bad of ['nowhere', '1.2.3.4', '1.2.3.4:0', '1.2.3.4:70000', 'a b:80'])
    t.throws(
      () => consulSettings({ consulAddr: bad }),
      { code: 'invalid_argument', message: /bad --consul-addr/ },
      bad,
    );
});

t.test('consulNodeName: the hostname as a DNS label, with the node id', async (t) => {
  t.equal(consulNodeName('vm', '0123456789abcdef'), 'vm-01234567');
  t.equal(consulNodeName('host_1.example.com', 'ffffffffaaaa'), 'host-1-example-com-ffffffff');
  t.equal(consulNodeName('__', 'abcdef0123'), 'node-abcdef01');
});
