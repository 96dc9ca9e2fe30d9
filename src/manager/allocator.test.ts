import t from 'tap';
import type { NetworkRecord, NodeRecord, ServiceRecord, ServiceSpec, TaskRecord } from '../api/cluster.js';
import { AddressBook } from './allocator.js';

const net = { id: 'n1', name: 'front', subnet: '10.9.0.0/29', gateway: '10.9.0.1' } as NetworkRecord;
const spec = { networks: [{ target: 'front' }] } as ServiceSpec;
const task = (id: string, address: string, over: Partial<TaskRecord> = {}) =>
  ({
    id,
    nodeId: 'a',
    desiredState: 'running',
    status: { state: 'running', timestamp: 0 },
    attachments: [{ networkId: 'n1', network: 'front', address }],
    ...over,
  }) as unknown as TaskRecord;
const nodes = [
  { id: 'a', status: 'ready' },
  { id: 'b', status: 'down' },
] as NodeRecord[];

t.test(
  'addresses in use: the gateway, VIPs, live tasks; not ended ones, not those stopped on a down node',
  async (t) => {
    const svc = {
      spec,
      virtualIps: [{ networkId: 'n1', network: 'front', address: '10.9.0.2/29' }],
    } as ServiceRecord;
    const book = new AddressBook(
      [net],
      [svc],
      [
        task('live', '10.9.0.3/29'),
        task('ended', '10.9.0.4/29', { status: { state: 'complete', timestamp: 0 } }),
        task('stopping-on-down', '10.9.0.5/29', { nodeId: 'b', desiredState: 'shutdown' }),
        task('running-on-down', '10.9.0.6/29', { nodeId: 'b' }),
      ],
      nodes,
    );
    t.same(
      [book.attach(spec)[0]!.address, book.attach(spec)[0]!.address],
      ['10.9.0.4/29', '10.9.0.5/29'],
      'the ended task’s and the stopped one’s addresses are free again',
    );
    t.throws(() => book.attach(spec), {
      message: 'no free address left in subnet 10.9.0.0/29 of network front',
    });
    t.equal(book.vips(svc), undefined, 'the VIP is kept');
  },
);

t.test('VIPs: one per network in vip mode, none in dnsrr, none when the subnet is full', async (t) => {
  const svc = { spec } as ServiceRecord;
  const book = new AddressBook([net], [svc], [], nodes);
  t.same(book.vips(svc), [{ networkId: 'n1', network: 'front', address: '10.9.0.2/29' }]);
  const dnsrr = {
    spec: { ...spec, endpoint: { mode: 'dnsrr', ports: [] } },
    virtualIps: [{ networkId: 'n1', network: 'front', address: '10.9.0.2/29' }],
  } as unknown as ServiceRecord;
  t.same(book.vips(dnsrr), [], 'dnsrr drops it');
  for (let i = 0; i < 4; i++) book.attach(spec);
  t.equal(
    book.vips({ spec } as ServiceRecord),
    undefined,
    'a full subnet: no VIP (nothing changes), no error',
  );
  t.same(
    book.attach({ networks: [{ target: 'gone' }] } as ServiceSpec),
    [],
    'a network that no longer exists is skipped',
  );
});
