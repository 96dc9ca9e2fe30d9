import t from 'tap';
import type { TaskRecord } from '../api/cluster.js';
import type { ContainerRecord } from '../engine/containers/types.js';
import {
  consulServiceName,
  desiredRegistrations,
  nodeRegistrations,
  planSync,
  syncRegistry,
} from './registrar.js';
import type { Registration, Registry } from './registry.js';

const node = { id: 'n1', address: '192.0.2.11', hostname: 'one' };
const task = (id: string, state: string, over: Partial<TaskRecord> = {}) =>
  ({
    id,
    serviceId: 's1',
    serviceName: 'app_web',
    slot: 1,
    nodeId: 'n1',
    specVersion: 3,
    desiredState: 'running',
    status: { state, timestamp: 0 },
    container: { labels: { 'org.tsswarm.stack.namespace': 'app' } },
    attachments: [{ networkId: 'x', network: 'app_default', address: `10.0.0.${id.length + 1}/24` }],
    ...over,
  }) as unknown as TaskRecord;

/** The registry's contract, in memory: only for exercising the sync logic. */
class MemoryRegistry implements Registry {
  readonly entries = new Map<string, Registration>();
  calls: string[] = [];
  async registered() {
    return [...this.entries.values()];
  }
  async register(r: Registration) {
    this.calls.push(`register ${r.id}`);
    this.entries.set(r.id, { ...r });
  }
  async setStatus(id: string, status: Registration['status'], note?: string) {
    this.calls.push(`status ${id} ${status}`);
    const e = this.entries.get(id)!;
    this.entries.set(id, { ...e, status, ...(note ? { note } : {}) });
  }
  async deregister(id: string) {
    this.calls.push(`deregister ${id}`);
    this.entries.delete(id);
  }
}

t.test('a node registers its running and starting tasks, nothing else', async (t) => {
  const regs = desiredRegistrations(
    [
      task('a', 'running'),
      task('bb', 'starting'),
      task('ccc', 'complete'),
      task('dddd', 'running', { desiredState: 'shutdown' }),
      task('eeeee', 'running', { nodeId: 'n2' }),
    ],
    node,
  );
  t.same(
    regs.map((r) => [r.id, r.status, r.address]),
    [
      ['a', 'passing', '10.0.0.2'],
      ['bb', 'critical', '10.0.0.3'],
    ],
  );
  t.same(regs[0]!.tags, ['tsswarm']);
  t.same(regs[0]!.meta, {
    stack: 'app',
    service: 'app_web',
    node: 'n1',
    version: '3',
    network: 'app_default',
  });
  t.equal(regs[0]!.name, 'app-web', 'the Consul name is the DNS-safe one');
  t.equal(regs[1]!.note, 'task starting');
});

t.test('sync: new and changed entries registered, status flips only set, stale ones removed', async (t) => {
  const reg = new MemoryRegistry();
  await syncRegistry(reg, desiredRegistrations([task('a', 'running'), task('bb', 'starting')], node));
  t.same(reg.calls, ['register a', 'register bb']);
  reg.calls = [];
  const again = await syncRegistry(
    reg,
    desiredRegistrations([task('a', 'running'), task('bb', 'starting')], node),
  );
  t.same(again, { register: [], status: [], deregister: [] }, 'nothing to do twice');
  // bb turns healthy, a moves to a new address, a crash left an entry of a task long gone
  reg.entries.set('gone', { ...reg.entries.get('a')!, id: 'gone' });
  const moved = task('a', 'running', {
    attachments: [{ networkId: 'x', network: 'app_default', address: '10.0.0.9/24' }],
  });
  await syncRegistry(reg, desiredRegistrations([moved, task('bb', 'running')], node));
  t.same(reg.calls, ['register a', 'status bb passing', 'deregister gone']);
  t.equal(reg.entries.get('a')!.address, '10.0.0.9');
  t.same([...reg.entries.keys()].sort(), ['a', 'bb']);
});

t.test('planSync compares what others see, not the order of tags or meta', async (t) => {
  const r: Registration = {
    id: 'x',
    name: 's',
    address: '1.2.3.4',
    port: 80,
    tags: ['a', 'b'],
    meta: { k: '1', j: '2' },
    status: 'passing',
  };
  const same = { ...r, tags: ['b', 'a'], meta: { j: '2', k: '1' } };
  t.same(planSync([r], [same]), { register: [], status: [], deregister: [] });
  t.same(
    planSync([{ ...r, port: 81 }], [r]).register.map((x) => x.port),
    [81],
  );
  t.same(planSync([], [r]).deregister, ['x']);
});

t.test('consulServiceName: what a DNS label cannot hold becomes -', async (t) => {
  t.equal(consulServiceName('demo_web'), 'demo-web');
  t.equal(consulServiceName('a.b_c-d9'), 'a-b-c-d9');
});

t.test("nodeRegistrations: from the agent's view, with its containers' health", async (t) => {
  const container = (status: string, health?: string, output = '') =>
    ({
      state: {
        status,
        ...(health ? { health: { status: health, failingStreak: 2, log: [{ exitCode: 1, output }] } } : {}),
      },
    }) as unknown as ContainerRecord;
  const regs = nodeRegistrations(
    [
      { task: task('a', 'running'), container: container('running', 'healthy') },
      { task: task('bb', 'running'), container: container('running', 'unhealthy', 'no file\n') },
      {
        task: task('ccc', 'failed', {
          status: { state: 'failed', timestamp: 0, err: 'unhealthy container: no file' },
        }),
        container: container('running'),
      },
      { task: task('dddd', 'failed'), container: container('exited') },
      { task: task('eeeee', 'running', { desiredState: 'shutdown' }), container: container('running') },
      { task: task('ffffff', 'starting') },
    ],
    node,
  );
  t.same(
    regs.map((r) => [r.id, r.status, r.note]),
    [
      ['a', 'passing', undefined],
      ['bb', 'critical', 'unhealthy: no file'],
      ['ccc', 'critical', 'unhealthy container: no file'],
      ['ffffff', 'critical', 'task starting'],
    ],
    'a failed task stays critical while its container runs; one wanted down goes at once',
  );
});
