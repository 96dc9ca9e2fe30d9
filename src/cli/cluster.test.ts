import t from 'tap';
import type { ServiceRecord, TaskRecord } from '../api/cluster.js';
import { normalizeServiceSpec, type ServiceSpecInput } from '../manager/serviceSpec.js';
import { replicaCounts, replicasText } from './cluster.js';

const svc = (input: ServiceSpecInput, version = 1): ServiceRecord => ({
  id: 's',
  spec: normalizeServiceSpec({ name: 'x', image: 'busybox', ...input }),
  version,
  createdAt: 0,
  updatedAt: 0,
});

let n = 0;
function task(state: TaskRecord['status']['state'], over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id: `t${++n}`,
    serviceId: 's',
    serviceName: 'x',
    specVersion: 1,
    desiredState: 'running',
    status: { state, timestamp: 0, ...(state === 'complete' ? { exitCode: 0 } : {}) },
    createdAt: 0,
    container: { image: 'busybox', env: [], labels: {}, stopGracePeriodMs: 0, limits: {} },
    reservations: { nanoCpus: 0, memoryBytes: 0 },
    ...over,
  };
}

const text = (s: ServiceRecord, tasks: TaskRecord[]) => replicasText(s, replicaCounts(s, tasks));

t.test('REPLICAS of services', async (t) => {
  const web = svc({ replicas: 3 });
  const tasks = [task('running', { slot: 1 }), task('running', { slot: 2 }), task('pending', { slot: 3 })];
  t.equal(text(web, tasks), '2/3');
  t.equal(text(svc({ replicas: 2, maxReplicasPerNode: 1 }), tasks), '2/2 (max 1 per node)');
  const other = task('running', { serviceId: 'other' });
  t.equal(text(svc({ mode: 'global' }), [...tasks, other]), '2/3', 'global: running / tasks wanted');
  t.match(replicaCounts(web, tasks), { running: 2, desired: 3 });
});

t.test('REPLICAS of jobs: running/desired (completed/total completed)', async (t) => {
  const job = svc({ mode: 'replicated-job', replicas: 5, maxConcurrent: 2 });
  t.equal(text(job, []), '0/0 (0/5 completed)', 'before its first tasks');
  const some = [
    task('complete', { slot: 1 }),
    task('complete', { slot: 2 }),
    task('failed', { slot: 3, desiredState: 'shutdown' }),
    task('running', { slot: 3 }),
    task('complete', { slot: 4, status: { state: 'complete', timestamp: 0, exitCode: 3 } }),
    task('starting', { slot: 5 }),
  ];
  t.equal(text(job, some), '1/2 (2/5 completed)');
  t.same(replicaCounts(job, some), { running: 1, desired: 2, completed: 2, total: 5 });
  const done = [1, 2, 3, 4, 5].map((slot) => task('complete', { slot }));
  t.equal(text(job, done), '0/0 (5/5 completed)');
  t.equal(
    text(svc({ mode: 'replicated-job', replicas: 5, maxConcurrent: 2 }, 2), done),
    '0/0 (0/5 completed)',
    'a new version is a new run',
  );

  const g = svc({ mode: 'global-job' });
  const nodes = [
    task('complete', { nodeId: 'n1' }),
    task('running', { nodeId: 'n2' }),
    task('failed', { nodeId: 'n3' }),
  ];
  t.equal(text(g, nodes), '1/1 (1/3 completed)', 'a node given up on still counts in the total');
});
