import t from 'tap';
import { markOf, PORTS_CHAIN, PORTS_OUT_CHAIN, renderPortRules } from './ingress.js';
import { macOf } from './links.js';
import type { NetView, ViewIngress, ViewPort } from './view.js';

const ingress: ViewIngress = {
  network: {
    id: 'net-ing',
    name: 'ingress',
    driver: 'overlay',
    vni: 4096,
    subnet: '10.255.0.0/16',
    gateway: '10.255.0.2',
    internal: false,
    peers: [],
    services: [],
  },
  self: '10.255.0.2',
  nodes: [
    { address: '10.255.0.3', vtep: '192.0.2.2' },
    { address: '10.255.1.4', vtep: '192.0.2.3' },
  ],
};
ingress.network.peers = ingress.nodes;

const port = (p: Partial<ViewPort> & Pick<ViewPort, 'published' | 'target'>): ViewPort => ({
  protocol: 'tcp',
  mode: 'ingress',
  local: [],
  remote: [],
  ...p,
});

/** null: a view without ingress. */
const view = (ports: ViewPort[], ing: ViewIngress | null = ingress): NetView => ({
  networks: [],
  attachments: [],
  ports,
  ...(ing ? { ingress: ing } : {}),
});

/** The nat table's lines for connections from outside (the host's own are hostOf's). */
const natOf = (rules: string) =>
  rules
    .slice(0, rules.indexOf('*mangle'))
    .split('\n')
    .filter((l) => l && !l.includes('TSSWARM-PORTS-HOST'));
const hostOf = (rules: string) => rules.split('\n').filter((l) => l.startsWith('-A TSSWARM-PORTS-HOST '));
const mangleOf = (rules: string) => rules.slice(rules.indexOf('*mangle')).split('\n').filter(Boolean);

t.test('markOf: 0x10000 and the low 16 bits of the address', async (t) => {
  t.equal(markOf('10.255.0.3'), 0x10003);
  t.equal(markOf('10.255.1.4'), 0x10104);
  t.equal(markOf('10.0.255.255'), 0x1ffff);
  t.throws(() => markOf('not an address'));
});

t.test('an ingress port with local tasks: DNAT to them from the mesh and from outside', async (t) => {
  const { rules } = renderPortRules(
    view([port({ published: 8080, target: 80, local: ['10.0.1.10', '10.0.1.11'], remote: ['10.255.0.3'] })]),
  );
  t.same(natOf(rules), [
    '*nat',
    `:${PORTS_CHAIN} - [0:0]`,
    '-A TSSWARM-PORTS -i tsbr4096 -d 10.255.0.2/32 -p tcp --dport 8080 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.0.1.10:80',
    '-A TSSWARM-PORTS -i tsbr4096 -d 10.255.0.2/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.11:80',
    '-A TSSWARM-PORTS ! -i tsbr4096 -m addrtype --dst-type LOCAL -p tcp --dport 8080 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.0.1.10:80',
    '-A TSSWARM-PORTS ! -i tsbr4096 -m addrtype --dst-type LOCAL -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.11:80',
    'COMMIT',
  ]);
  t.notMatch(rules, /10\.255\.0\.3:/, 'no remote node while there is a local task');
});

t.test('an ingress port without local tasks: DNAT to the other nodes on the published port', async (t) => {
  const { rules } = renderPortRules(
    view([
      port({
        published: 7000,
        target: 53,
        protocol: 'udp',
        remote: ['10.255.0.3', '10.255.1.4', '10.255.2.5'],
      }),
    ]),
  );
  t.same(natOf(rules), [
    '*nat',
    ':TSSWARM-PORTS - [0:0]',
    '-A TSSWARM-PORTS ! -i tsbr4096 -m addrtype --dst-type LOCAL -p udp --dport 7000 -m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 10.255.0.3:7000',
    '-A TSSWARM-PORTS ! -i tsbr4096 -m addrtype --dst-type LOCAL -p udp --dport 7000 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.255.1.4:7000',
    '-A TSSWARM-PORTS ! -i tsbr4096 -m addrtype --dst-type LOCAL -p udp --dport 7000 -j DNAT --to-destination 10.255.2.5:7000',
    'COMMIT',
  ]);
  t.notMatch(rules, /-i tsbr4096 -d/, 'nothing arriving over the mesh is DNATed');
});

t.test('a host-mode port: DNAT to the local task on a local address only', async (t) => {
  const { rules } = renderPortRules(
    view([port({ published: 5432, target: 5433, mode: 'host', local: ['10.0.2.9'] })]),
  );
  t.same(natOf(rules), [
    '*nat',
    ':TSSWARM-PORTS - [0:0]',
    '-A TSSWARM-PORTS -m addrtype --dst-type LOCAL -p tcp --dport 5432 -j DNAT --to-destination 10.0.2.9:5433',
    'COMMIT',
  ]);
});

t.test('mangle: a connection mark per other node (by its MAC), restored, cleared once routed', async (t) => {
  const { rules, routes } = renderPortRules(view([]));
  t.same(mangleOf(rules), [
    '*mangle',
    `:${PORTS_CHAIN} - [0:0]`,
    `:${PORTS_OUT_CHAIN} - [0:0]`,
    `-A TSSWARM-PORTS -i tsbr4096 -m conntrack --ctstate NEW -m mac --mac-source ${macOf('10.255.0.3')} -j CONNMARK --set-mark 0x10003`,
    '-A TSSWARM-PORTS -i tsbr4096 -m conntrack --ctstate NEW -m mac --mac-source 02:42:0a:ff:01:04 -j CONNMARK --set-mark 0x10104',
    '-A TSSWARM-PORTS -m conntrack --ctdir REPLY -j CONNMARK --restore-mark',
    '-A TSSWARM-PORTS-OUT -o tsbr4096 -j MARK --set-mark 0',
    'COMMIT',
  ]);
  t.equal(macOf('10.255.0.3'), '02:42:0a:ff:00:03');
  t.strictSame(routes, [
    { mark: markOf('10.255.0.3'), via: '10.255.0.3', dev: 'tsbr4096' },
    { mark: markOf('10.255.1.4'), via: '10.255.1.4', dev: 'tsbr4096' },
  ]);
  t.same(
    routes.map((r) => r.mark),
    [0x10003, 0x10104],
  );
  t.ok(rules.endsWith('COMMIT\n'));
});

t.test('no ingress in the view: no mesh rules, no mangle rules, no routes', async (t) => {
  const { rules, routes } = renderPortRules(
    view(
      [
        port({ published: 8080, target: 80, local: ['10.0.1.10'] }),
        port({ published: 7000, target: 53, protocol: 'udp' }),
      ],
      null,
    ),
  );
  t.same(routes, []);
  t.equal(
    rules,
    [
      '*nat',
      ':TSSWARM-PORTS - [0:0]',
      ':TSSWARM-PORTS-HOST - [0:0]',
      '-A TSSWARM-PORTS -m addrtype --dst-type LOCAL -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.10:80',
      '-A TSSWARM-PORTS-HOST -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.10:80',
      'COMMIT',
      '*mangle',
      ':TSSWARM-PORTS - [0:0]',
      ':TSSWARM-PORTS-OUT - [0:0]',
      'COMMIT',
      '',
    ].join('\n'),
  );
  t.notMatch(rules, /tsbr/);
});

t.test('several ports render in the view’s order, one block each', async (t) => {
  const { rules } = renderPortRules(
    view([
      port({ published: 5432, target: 5432, mode: 'host', local: ['10.0.2.9'] }),
      port({ published: 8080, target: 80, local: ['10.0.1.10'], remote: ['10.255.0.3'] }),
    ]),
  );
  t.same(
    natOf(rules).filter((l) => l.startsWith('-A')),
    [
      '-A TSSWARM-PORTS -m addrtype --dst-type LOCAL -p tcp --dport 5432 -j DNAT --to-destination 10.0.2.9:5432',
      '-A TSSWARM-PORTS -i tsbr4096 -d 10.255.0.2/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.10:80',
      '-A TSSWARM-PORTS ! -i tsbr4096 -m addrtype --dst-type LOCAL -p tcp --dport 8080 -j DNAT --to-destination 10.0.1.10:80',
    ],
  );
});

t.test('the host’s own connections to its addresses: the same backends, never from loopback', async (t) => {
  const { rules } = renderPortRules(
    view([
      port({ published: 5432, target: 5432, mode: 'host', local: ['10.0.2.9'] }),
      port({ published: 8080, target: 80, remote: ['10.255.0.3', '10.255.1.4'] }),
      port({ published: 9090, target: 90, mode: 'host' }),
    ]),
  );
  t.same(hostOf(rules), [
    '-A TSSWARM-PORTS-HOST -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -p tcp --dport 5432 -j DNAT --to-destination 10.0.2.9:5432',
    '-A TSSWARM-PORTS-HOST -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -p tcp --dport 8080 -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.255.0.3:8080',
    '-A TSSWARM-PORTS-HOST -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -p tcp --dport 8080 -j DNAT --to-destination 10.255.1.4:8080',
  ]);
  t.notMatch(hostOf(rules).join('\n'), / -i /, 'no input interface: OUTPUT has none');
});
