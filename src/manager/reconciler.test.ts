import t from 'tap';
import type { NodeRecord, ServiceRecord, TaskRecord } from '../api/cluster.js';
import { schedule } from '../scheduler/index.js';
import { pendingTask, schedulerNodes, serviceView } from './reconciler.js';
import { normalizeServiceSpec, parsePublish } from './serviceSpec.js';

const node: NodeRecord = {
  id: 'n1',
  hostname: 'h1',
  role: 'manager',
  availability: 'active',
  status: 'ready',
  labels: {},
  address: '127.0.0.1',
  platform: { os: 'linux', arch: 'x86_64' },
  resources: { nanoCpus: 4e9, memoryBytes: 8 << 30 },
  engineVersion: 'test',
};

function service(id: string, input: Parameters<typeof normalizeServiceSpec>[0]): ServiceRecord {
  return { id, spec: normalizeServiceSpec({ image: 'x', ...input }), version: 1, createdAt: 0, updatedAt: 0 };
}

function task(id: string, svc: ServiceRecord, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    serviceId: svc.id,
    serviceName: svc.spec.name,
    slot: 1,
    specVersion: svc.version,
    desiredState: 'running',
    status: { state: 'pending', timestamp: 0 },
    createdAt: 0,
    container: svc.spec.container,
    reservations: { nanoCpus: 0, memoryBytes: 0 },
    ...(svc.spec.endpoint ? { endpoint: { ports: svc.spec.endpoint.ports } } : {}),
    ...over,
  };
}

t.test('a replicated job: its spec counts completions, its orchestrator tasks at once', async (t) => {
  const all = serviceView(service('j', { name: 'j', mode: 'replicated-job', replicas: 5 }));
  t.match(all, { mode: 'replicated-job', replicas: 5, totalCompletions: 5 });
  const two = serviceView(service('j', { name: 'j', mode: 'replicated-job', replicas: 5, maxConcurrent: 2 }));
  t.match(two, { replicas: 2, totalCompletions: 5 });
  const web = serviceView(service('w', { name: 'w', replicas: 3 }));
  t.equal(web.replicas, 3);
  t.equal(web.totalCompletions, undefined);
});

t.test('host-mode ports reach the scheduler: the second task on the port stays pending', async (t) => {
  const ports = { ports: parsePublish('published=8080,target=80,mode=host') };
  const a = service('a', { name: 'a', endpoint: ports });
  const b = service('b', { name: 'b', endpoint: ports });
  const ingress = service('c', { name: 'c', endpoint: { ports: parsePublish('8080:80') } });
  const running = task('ta', a, { nodeId: 'n1', status: { state: 'running', timestamp: 0 } });
  const nodes = schedulerNodes([node], [running]);
  t.same(nodes[0]!.tasks, [
    {
      serviceId: 'a',
      reservations: { nanoCpus: 0, memoryBytes: 0 },
      hostPorts: [{ port: 8080, protocol: 'tcp' }],
    },
  ]);
  const pb = pendingTask(task('tb', b), b.spec);
  t.same(pb.spec.hostPorts, [{ port: 8080, protocol: 'tcp' }]);
  const pc = pendingTask(task('tc', ingress), ingress.spec);
  t.same(pc.spec.hostPorts, [], 'ingress ports are not bound on the node');
  const plan = schedule({ nodes }, [pb, pc], { seed: 1 });
  t.same(plan.assignments, [{ taskId: 'tc', nodeId: 'n1' }]);
  t.equal(plan.unplaced[0]?.taskId, 'tb');
  t.match(plan.unplaced[0]?.summary, /no suitable node \(host-mode port already in use on 1 node\)/);

  // two pending tasks on the same port: one placed, the other not
  const both = schedule({ nodes: schedulerNodes([node], []) }, [pb, pendingTask(task('ta2', a), a.spec)], {
    seed: 1,
  });
  t.equal(both.assignments.length, 1);
  t.equal(both.unplaced.length, 1);
});

t.test('what holds a node: resources while wanted running, host ports until the task ends', async (t) => {
  const a = service('a', {
    name: 'a',
    endpoint: { ports: parsePublish('published=80,target=80,mode=host') },
  });
  const r = { nanoCpus: 1e9, memoryBytes: 1 << 20 };
  const at = (id: string, state: TaskRecord['status']['state'], desired: TaskRecord['desiredState']) =>
    task(id, a, { nodeId: 'n1', reservations: r, desiredState: desired, status: { state, timestamp: 0 } });
  const nodes = schedulerNodes(
    [node, { ...node, id: 'n2' }],
    [
      at('running', 'running', 'running'),
      at('stopping', 'running', 'shutdown'),
      at('ended', 'failed', 'shutdown'),
      at('pending', 'pending', 'running'),
      { ...at('elsewhere', 'running', 'running'), nodeId: 'n2' },
    ],
  );
  t.same(
    nodes[0]!.tasks.map((x) => x.reservations.nanoCpus),
    [1e9, 0],
    'the stopping task keeps its port, not its reservation',
  );
  t.equal(nodes[1]!.tasks.length, 1);
  const noPorts = service('p', { name: 'p' });
  const stopping = task('s', noPorts, {
    nodeId: 'n1',
    desiredState: 'shutdown',
    status: { state: 'running', timestamp: 0 },
  });
  t.same(
    schedulerNodes([node], [stopping])[0]!.tasks,
    [],
    'a stopping task without host ports holds nothing',
  );
});

t.test('a pending task carries its placement from the service', async (t) => {
  const s = service('s', {
    name: 's',
    constraints: ['node.role==manager'],
    preferences: [{ spread: 'node.labels.zone' }],
    maxReplicasPerNode: 2,
  });
  const p = pendingTask(task('t1', s, { slot: 3 }), s.spec);
  t.same(p, {
    id: 't1',
    serviceId: 's',
    slot: 3,
    spec: {
      reservations: { nanoCpus: 0, memoryBytes: 0 },
      constraints: ['node.role==manager'],
      preferences: [{ spread: 'node.labels.zone' }],
      hostPorts: [],
      maxReplicasPerNode: 2,
    },
  });
  const g = pendingTask(task('t2', s, { slot: undefined, nodeId: 'n1' } as Partial<TaskRecord>), undefined);
  t.equal(g.nodeId, 'n1');
  t.same(g.spec.constraints, [], 'a service already gone places without constraints');
});
