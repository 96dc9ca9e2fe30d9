import t from 'tap';
import type { NodeRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { instancesOf } from './instances.js';

const svc = {
  id: 's1',
  version: 2,
  spec: {
    name: 'app_web',
    labels: { 'org.tsswarm.stack.namespace': 'app' },
    endpoint: { ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }] },
  },
} as unknown as ServiceRecord;
const nodes = [
  { id: 'n1', hostname: 'one', address: '192.0.2.11' },
  { id: 'n2', hostname: 'two', address: '192.0.2.12' },
] as NodeRecord[];
const task = (id: string, slot: number, state: string, over: Partial<TaskRecord> = {}) =>
  ({
    id,
    serviceId: 's1',
    serviceName: 'app_web',
    container: { labels: { 'org.tsswarm.stack.namespace': 'app' } },
    endpoint: { ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }] },
    slot,
    nodeId: slot % 2 ? 'n1' : 'n2',
    specVersion: 2,
    desiredState: 'running',
    status: { state, timestamp: 0 },
    attachments: [{ networkId: 'x', network: 'app_default', address: `10.0.0.${slot + 1}/24` }],
    ...over,
  }) as unknown as TaskRecord;

t.test('healthy instances: running tasks, with their first network address', async (t) => {
  const tasks = [
    task('t2', 2, 'running'),
    task('t1', 1, 'running'),
    task('t3', 3, 'starting'),
    task('t4', 4, 'failed'),
    task('t5', 5, 'running', { desiredState: 'shutdown' }),
    task('other', 1, 'running', { serviceId: 's2' }),
  ];
  const found = instancesOf(svc, tasks, nodes);
  t.same(
    found.map((i) => [i.id, i.address, i.port, i.hostname, i.healthy]),
    [
      ['t1', '10.0.0.2', 80, 'one', true],
      ['t2', '10.0.0.3', 80, 'two', true],
    ],
  );
  t.same(found[0]!.meta, {
    stack: 'app',
    service: 'app_web',
    node: 'n1',
    version: '2',
    network: 'app_default',
  });
  t.equal(found[0]!.network, 'app_default');
  t.same(
    instancesOf(svc, tasks, nodes, { all: true }).map((i) => [i.id, i.healthy, i.state]),
    [
      ['t1', true, 'running'],
      ['t2', true, 'running'],
      ['t3', false, 'starting'],
    ],
    '--all adds the task still starting, never the ended or unwanted ones',
  );
});

t.test('without a network the node address stands in', async (t) => {
  const [i] = instancesOf(svc, [task('t1', 1, 'running', { attachments: undefined })], nodes);
  t.equal(i!.address, '192.0.2.11');
  t.notOk('network' in i!);
});
