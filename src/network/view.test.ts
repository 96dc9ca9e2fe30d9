import t from 'tap';
import type {
  NetworkAddress,
  NetworkRecord,
  NodeRecord,
  PortConfig,
  ServiceRecord,
  TaskRecord,
} from '../api/cluster.js';
import { DEFAULT_RESTART, DEFAULT_UPDATE } from '../api/cluster.js';
import { STACK_LABEL } from '../manager/deploy.js';
import type { DesiredState, TaskState } from '../manager/orchestrator/types.js';
import { type ClusterNetState, netViewFor, resolveName, serviceNames, vipsFor } from './view.js';

// ---- fixtures ---------------------------------------------------------------------------------

const container = { image: 'busybox', env: [], labels: {}, stopGracePeriodMs: 10_000, limits: {} };

function node(id: string, address: string, status: NodeRecord['status'] = 'ready'): NodeRecord {
  return {
    id,
    hostname: id,
    role: 'worker',
    availability: 'active',
    status,
    labels: {},
    address,
    platform: { os: 'linux', arch: 'x86_64' },
    resources: { nanoCpus: 1e9, memoryBytes: 1 << 30 },
    engineVersion: '0.1.0',
  };
}

function network(
  id: string,
  name: string,
  vni: number | undefined,
  subnet: string,
  extra: Partial<NetworkRecord> = {},
): NetworkRecord {
  return {
    id,
    name,
    driver: 'overlay',
    scope: 'swarm',
    subnet,
    gateway: `${subnet.split('.').slice(0, 3).join('.')}.1`,
    attachable: false,
    internal: false,
    labels: {},
    ...(vni !== undefined ? { vni } : {}),
    createdAt: 0,
    ...extra,
  };
}

interface SvcOpts {
  stack?: string;
  networks?: Array<{ target: string; aliases?: string[] }>;
  vips?: NetworkAddress[];
  mode?: 'vip' | 'dnsrr';
  ports?: PortConfig[];
}

function service(id: string, name: string, o: SvcOpts = {}): ServiceRecord {
  return {
    id,
    spec: {
      name,
      mode: 'replicated',
      replicas: 1,
      container,
      restartPolicy: DEFAULT_RESTART,
      update: DEFAULT_UPDATE,
      constraints: [],
      preferences: [],
      reservations: { nanoCpus: 0, memoryBytes: 0 },
      labels: o.stack ? { [STACK_LABEL]: o.stack } : {},
      ...(o.networks ? { networks: o.networks } : {}),
      ...(o.mode || o.ports
        ? { endpoint: { ...(o.mode ? { mode: o.mode } : {}), ports: o.ports ?? [] } }
        : {}),
    },
    version: 1,
    createdAt: 0,
    updatedAt: 0,
    ...(o.vips ? { virtualIps: o.vips } : {}),
  };
}

const addr = (networkId: string, address: string): NetworkAddress => ({
  networkId,
  network: networkId.replace(/^net-/, ''),
  address,
});

function task(
  id: string,
  serviceId: string,
  nodeId: string | undefined,
  attachments: NetworkAddress[],
  state: TaskState = 'running',
  desiredState: DesiredState = 'running',
): TaskRecord {
  return {
    id,
    serviceId,
    serviceName: serviceId,
    ...(nodeId ? { nodeId } : {}),
    specVersion: 1,
    desiredState,
    status: { state, timestamp: 0 },
    createdAt: 0,
    container,
    reservations: { nanoCpus: 0, memoryBytes: 0 },
    attachments,
  };
}

const nodes = [
  node('n1', '192.0.2.1'),
  node('n2', '192.0.2.2'),
  node('n3', '192.0.2.3', 'down'),
  node('n4', '192.0.2.4'),
  node('n5', '192.0.2.5'),
];

const networks = [
  network('net-front', 'front', 4097, '10.0.1.0/24'),
  network('net-back', 'back', 4098, '10.0.2.0/24'),
  network('net-other', 'other', 4099, '10.0.3.0/24'),
  network('net-br', 'br', 5, '172.18.0.0/16', { driver: 'bridge', scope: 'local' }),
  network('net-novni', 'novni', undefined, '10.0.4.0/24'),
  network('net-ing', 'ingress', 4096, '10.255.0.0/16', {
    ingress: true,
    endpoints: {
      n1: '10.255.0.2/16',
      n2: '10.255.0.3/16',
      n3: '10.255.0.4/16',
      n4: '10.255.0.5/16',
    },
  }),
];

const services = [
  service('s-web', 'app_web', {
    stack: 'app',
    networks: [{ target: 'front', aliases: ['WWW'] }],
    vips: [addr('net-front', '10.0.1.2/24')],
    ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }],
  }),
  service('s-api', 'app_api', {
    stack: 'app',
    networks: [{ target: 'front' }, { target: 'back', aliases: ['API-Backend'] }],
    vips: [addr('net-front', '10.0.1.3/24'), addr('net-back', '10.0.2.2/24')],
    ports: [{ target: 53, published: 7000, protocol: 'udp', mode: 'ingress' }],
  }),
  service('s-db', 'db', {
    networks: [{ target: 'back' }],
    mode: 'dnsrr',
    ports: [
      { target: 5432, published: 5432, protocol: 'tcp', mode: 'host' },
      { target: 9999, protocol: 'tcp', mode: 'ingress' }, // not published: ignored
    ],
  }),
  service('s-idle', 'idle', { networks: [{ target: 'front' }], mode: 'dnsrr' }),
  service('s-hidden', 'hidden', {
    networks: [{ target: 'other' }],
    vips: [addr('net-other', '10.0.3.2/24')],
  }),
  service('s-brsvc', 'brsvc', { networks: [{ target: 'br' }] }),
  service('s-novni', 'novni', { networks: [{ target: 'novni' }] }),
];

const tasks = [
  task('w1', 's-web', 'n1', [addr('net-front', '10.0.1.10/24')]),
  task('w2', 's-web', 'n2', [addr('net-front', '10.0.1.11/24')]),
  // on a down node: out of everyone's view but its own
  task('w3', 's-web', 'n3', [addr('net-front', '10.0.1.12/24')]),
  // being stopped: still a peer, no longer a backend
  task('w4', 's-web', 'n2', [addr('net-front', '10.0.1.13/24')], 'running', 'shutdown'),
  // ended: neither
  task('w5', 's-web', 'n2', [addr('net-front', '10.0.1.14/24')], 'failed', 'running'),
  // not running yet: a peer, not a backend
  task('w6', 's-web', 'n2', [addr('net-front', '10.0.1.15/24')], 'starting', 'running'),
  // not scheduled yet: nowhere
  task('w7', 's-web', undefined, [addr('net-front', '10.0.1.16/24')], 'pending', 'running'),
  task('a1', 's-api', 'n1', [addr('net-front', '10.0.1.20/24'), addr('net-back', '10.0.2.20/24')]),
  task('d1', 's-db', 'n2', [addr('net-back', '10.0.2.30/24')]),
  task('d2', 's-db', 'n1', [addr('net-back', '10.0.2.9/24')]),
  task('h1', 's-hidden', 'n2', [addr('net-other', '10.0.3.5/24')]),
  task('b1', 's-brsvc', 'n1', [addr('net-br', '172.18.0.5/16')]),
  task('b2', 's-brsvc', 'n2', [addr('net-br', '172.18.0.6/16')]),
  task('v1', 's-novni', 'n1', [addr('net-novni', '10.0.4.5/24')]),
  // an ended task of this node: its network is not in the view for it
  task('h2', 's-hidden', 'n1', [addr('net-other', '10.0.3.6/24')], 'complete', 'running'),
];

const state: ClusterNetState = { networks, services, tasks, nodes };

// ---- serviceNames -----------------------------------------------------------------------------

t.test('serviceNames: the full name, the stack-local name and the aliases, lower case, once', async (t) => {
  const svc = service('x', 'App_Web', {
    stack: 'App',
    networks: [
      { target: 'front', aliases: ['WWW', 'app_web', 'site'] },
      { target: 'back', aliases: ['internal'] },
    ],
  });
  t.same(serviceNames(svc, 'front'), ['app_web', 'web', 'www', 'site']);
  t.same(serviceNames(svc, 'back'), ['app_web', 'web', 'internal']);
  t.same(serviceNames(svc, 'elsewhere'), ['app_web', 'web']);
  // a stack label that is not the name's prefix gives no short name
  t.same(serviceNames(service('y', 'other_web', { stack: 'app' }), 'front'), ['other_web']);
  t.same(serviceNames(service('z', 'Solo'), 'front'), ['solo']);
});

// ---- netViewFor -------------------------------------------------------------------------------

t.test('netViewFor: the networks of the node’s live tasks, with peers and services', async (t) => {
  const v = netViewFor('n1', state);
  t.same(v.attachments, [
    { taskId: 'a1', networkId: 'net-back', address: '10.0.2.20' },
    { taskId: 'a1', networkId: 'net-front', address: '10.0.1.20' },
    { taskId: 'b1', networkId: 'net-br', address: '172.18.0.5' },
    { taskId: 'd2', networkId: 'net-back', address: '10.0.2.9' },
    { taskId: 'v1', networkId: 'net-novni', address: '10.0.4.5' },
    { taskId: 'w1', networkId: 'net-front', address: '10.0.1.10' },
  ]);
  // sorted by VNI; other (only an ended local task), novni (no VNI), ingress (no attachment) absent
  t.same(
    v.networks.map((n) => n.id),
    ['net-br', 'net-front', 'net-back'],
  );

  const front = v.networks.find((n) => n.id === 'net-front')!;
  t.same(
    { ...front, peers: undefined, services: undefined },
    {
      id: 'net-front',
      name: 'front',
      driver: 'overlay',
      vni: 4097,
      subnet: '10.0.1.0/24',
      gateway: '10.0.1.1',
      internal: false,
      peers: undefined,
      services: undefined,
    },
  );
  // other nodes' tasks with their host as VTEP; the down node's (w3) and ended (w5) left out
  t.strictSame(front.peers, [
    { address: '10.0.1.10', vtep: '192.0.2.1' },
    { address: '10.0.1.11', vtep: '192.0.2.2' },
    { address: '10.0.1.13', vtep: '192.0.2.2' },
    { address: '10.0.1.15', vtep: '192.0.2.2' },
    { address: '10.0.1.20', vtep: '192.0.2.1' },
  ]);
  t.strictSame(front.services, [
    { name: 'app_api', names: ['app_api', 'api'], vip: '10.0.1.3', tasks: ['10.0.1.20'] },
    // w4 (desired shutdown) and w6 (starting) are not backends
    { name: 'app_web', names: ['app_web', 'web', 'www'], vip: '10.0.1.2', tasks: ['10.0.1.10', '10.0.1.11'] },
    { name: 'idle', names: ['idle'], tasks: [] },
  ]);

  const back = v.networks.find((n) => n.id === 'net-back')!;
  t.strictSame(back.peers, [
    { address: '10.0.2.9', vtep: '192.0.2.1' },
    { address: '10.0.2.20', vtep: '192.0.2.1' },
    { address: '10.0.2.30', vtep: '192.0.2.2' },
  ]);
  t.strictSame(back.services, [
    {
      name: 'app_api',
      names: ['app_api', 'api', 'api-backend'],
      vip: '10.0.2.2',
      tasks: ['10.0.2.20'],
    },
    // dnsrr: no VIP; addresses in numeric order (10.0.2.9 before 10.0.2.30)
    { name: 'db', names: ['db'], tasks: ['10.0.2.9', '10.0.2.30'] },
  ]);
  t.notOk('vip' in back.services[1]!, 'no vip key without a virtual IP');
});

t.test('netViewFor: a bridge network holds this node’s tasks only', async (t) => {
  const br = netViewFor('n1', state).networks.find((n) => n.id === 'net-br')!;
  t.equal(br.driver, 'bridge');
  t.equal(br.vni, 5);
  t.strictSame(br.peers, [{ address: '172.18.0.5', vtep: '192.0.2.1' }]);
  t.strictSame(br.services, [{ name: 'brsvc', names: ['brsvc'], tasks: ['172.18.0.5'] }]);
  const br2 = netViewFor('n2', state).networks.find((n) => n.id === 'net-br')!;
  t.strictSame(br2.peers, [{ address: '172.18.0.6', vtep: '192.0.2.2' }]);
  t.strictSame(br2.services[0]!.tasks, ['172.18.0.6']);
});

t.test('netViewFor: a down node’s tasks are out of others’ views, not of its own', async (t) => {
  const v3 = netViewFor('n3', state);
  t.same(v3.attachments, [{ taskId: 'w3', networkId: 'net-front', address: '10.0.1.12' }]);
  t.same(
    v3.networks.map((n) => n.id),
    ['net-front'],
  );
  const front = v3.networks[0]!;
  t.same(
    front.peers.map((p) => p.address),
    ['10.0.1.10', '10.0.1.11', '10.0.1.12', '10.0.1.13', '10.0.1.15', '10.0.1.20'],
  );
  t.same(front.peers.find((p) => p.address === '10.0.1.12')?.vtep, '192.0.2.3');
  t.same(front.services.find((s) => s.name === 'app_web')?.tasks, ['10.0.1.10', '10.0.1.11', '10.0.1.12']);
  // n2's view does not have it
  const v2 = netViewFor('n2', state);
  const front2 = v2.networks.find((n) => n.id === 'net-front')!;
  t.notOk(front2.peers.some((p) => p.address === '10.0.1.12'));
  t.same(front2.services.find((s) => s.name === 'app_web')?.tasks, ['10.0.1.10', '10.0.1.11']);
});

t.test('netViewFor: a node without tasks has no networks', async (t) => {
  const v = netViewFor('n4', state);
  t.same(v.networks, []);
  t.same(v.attachments, []);
});

t.test('netViewFor: a VIP only on the networks the service has one on', async (t) => {
  const onlyFront = services.map((s) =>
    s.id === 's-api' ? { ...s, virtualIps: [addr('net-front', '10.0.1.3/24')] } : s,
  );
  const v = netViewFor('n1', { ...state, services: onlyFront });
  const api = (id: string) =>
    v.networks.find((n) => n.id === id)!.services.find((s) => s.name === 'app_api')!;
  t.equal(api('net-front').vip, '10.0.1.3');
  t.notOk('vip' in api('net-back'));
  t.same(api('net-back').tasks, ['10.0.2.20']);
});

// ---- resolveName and vipsFor -----------------------------------------------------------------

t.test('resolveName: VIP, tasks.NAME, dnsrr, per the client’s networks', async (t) => {
  const v = netViewFor('n1', state);
  const web = '10.0.1.10'; // w1: front only
  const api = '10.0.2.20'; // a1: front and back (its back address)
  t.same(resolveName(v, web, 'app_web'), ['10.0.1.2']);
  t.same(resolveName(v, web, 'web'), ['10.0.1.2']);
  t.same(resolveName(v, web, 'WWW.'), ['10.0.1.2'], 'alias, any case, trailing dot');
  t.same(resolveName(v, web, 'Web.'), ['10.0.1.2']);
  t.same(resolveName(v, web, 'tasks.web'), ['10.0.1.10', '10.0.1.11']);
  t.same(resolveName(v, web, 'TASKS.App_Web.'), ['10.0.1.10', '10.0.1.11']);
  t.same(resolveName(v, web, 'api'), ['10.0.1.3']);
  t.same(resolveName(v, web, 'idle'), [], 'known, nothing running');
  t.equal(resolveName(v, web, 'db'), undefined, 'not on a network of the client');
  t.equal(resolveName(v, web, 'api-backend'), undefined, 'an alias on another network');
  t.equal(resolveName(v, web, 'hidden'), undefined);
  t.equal(resolveName(v, web, 'example.com'), undefined);
  t.equal(resolveName(v, web, 'tasks.nothing'), undefined);

  // a client on two networks sees both; its addresses all identify it
  t.same(resolveName(v, api, 'api'), ['10.0.1.3', '10.0.2.2']);
  t.same(resolveName(v, '10.0.1.20', 'api'), ['10.0.1.3', '10.0.2.2']);
  t.same(resolveName(v, api, 'api-backend'), ['10.0.2.2']);
  t.same(resolveName(v, api, 'tasks.api'), ['10.0.1.20', '10.0.2.20']);
  t.same(resolveName(v, api, 'db'), ['10.0.2.9', '10.0.2.30'], 'dnsrr: the tasks');
  t.same(resolveName(v, api, 'tasks.db'), ['10.0.2.9', '10.0.2.30']);
  t.same(resolveName(v, api, 'web'), ['10.0.1.2']);

  // an address that is not one of this node's tasks
  t.equal(resolveName(v, '10.9.9.9', 'web'), undefined);
  t.equal(resolveName(v, '10.0.1.11', 'web'), undefined, "another node's task");
});

t.test('vipsFor: the VIPs of the given networks with their backends', async (t) => {
  const v = netViewFor('n1', state);
  t.same(vipsFor(v, ['net-front']), [
    { vip: '10.0.1.3', backends: ['10.0.1.20'] },
    { vip: '10.0.1.2', backends: ['10.0.1.10', '10.0.1.11'] },
  ]);
  t.same(vipsFor(v, ['net-back']), [{ vip: '10.0.2.2', backends: ['10.0.2.20'] }]);
  t.same(vipsFor(v, ['net-front', 'net-back']).length, 3);
  t.same(vipsFor(v, ['net-br']), []);
  t.same(vipsFor(v, []), []);
});

// ---- published ports and ingress ---------------------------------------------------------------

t.test('ports: ingress local tasks first, remote nodes’ ingress endpoints', async (t) => {
  const v = netViewFor('n1', state);
  t.strictSame(v.ports, [
    // host mode: n1 runs d2 (first attachment on back)
    { protocol: 'tcp', published: 5432, target: 5432, mode: 'host', local: ['10.0.2.9'], remote: [] },
    // a1's first attachment is on front
    { protocol: 'udp', published: 7000, target: 53, mode: 'ingress', local: ['10.0.1.20'], remote: [] },
    // w2 on n2; w3 (down node n3), w4 (shutdown), w6 (starting) are not counted
    {
      protocol: 'tcp',
      published: 8080,
      target: 80,
      mode: 'ingress',
      local: ['10.0.1.10'],
      remote: ['10.255.0.3'],
    },
  ]);

  // n4 runs nothing: every ingress port through the others, no host port
  const v4 = netViewFor('n4', state);
  t.strictSame(v4.ports, [
    { protocol: 'udp', published: 7000, target: 53, mode: 'ingress', local: [], remote: ['10.255.0.2'] },
    {
      protocol: 'tcp',
      published: 8080,
      target: 80,
      mode: 'ingress',
      local: [],
      remote: ['10.255.0.2', '10.255.0.3'],
    },
  ]);

  // n2 runs d1: the host port is there too
  const v2 = netViewFor('n2', state);
  t.same(
    v2.ports.map((p) => [p.published, p.local, p.remote]),
    [
      [5432, ['10.0.2.30'], []],
      [7000, [], ['10.255.0.2']],
      [8080, ['10.0.1.11'], ['10.255.0.2']],
    ],
  );
});

t.test('ingress: this node’s endpoint and the other live nodes’', async (t) => {
  const v = netViewFor('n1', state);
  t.strictSame(v.ingress, {
    network: {
      id: 'net-ing',
      name: 'ingress',
      driver: 'overlay',
      vni: 4096,
      subnet: '10.255.0.0/16',
      gateway: '10.255.0.2',
      internal: false,
      peers: [
        { address: '10.255.0.3', vtep: '192.0.2.2' },
        { address: '10.255.0.5', vtep: '192.0.2.4' },
      ],
      services: [],
    },
    self: '10.255.0.2',
    // n3 is down, n5 has no endpoint
    nodes: [
      { address: '10.255.0.3', vtep: '192.0.2.2' },
      { address: '10.255.0.5', vtep: '192.0.2.4' },
    ],
  });
  t.same(
    netViewFor('n4', state).ingress?.nodes.map((n) => n.address),
    ['10.255.0.2', '10.255.0.3'],
  );
});

t.test('ingress: absent when this node has no endpoint (nor then remote ports)', async (t) => {
  const v5 = netViewFor('n5', state);
  t.notOk('ingress' in v5);
  t.same(
    v5.ports.map((p) => [p.published, p.local, p.remote]),
    [
      [7000, [], []],
      [8080, [], []],
    ],
  );
  // no ingress network at all
  const none = netViewFor('n1', { ...state, networks: networks.filter((n) => !n.ingress) });
  t.notOk('ingress' in none);
  t.same(
    none.ports.map((p) => [p.published, p.local, p.remote]),
    [
      [5432, ['10.0.2.9'], []],
      [7000, ['10.0.1.20'], []],
      [8080, ['10.0.1.10'], []],
    ],
  );
});
