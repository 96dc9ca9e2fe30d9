/**
 * The overlay datapath (src/network/datapath.ts) on simulated hosts: real bridges, VXLAN
 * devices, veth pairs and iptables rules inside each host's network namespace, with
 * "containers" that are network namespaces of their own (named with the run's prefix).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import {
  type OverlayDatapath as Datapath,
  OverlayDatapath,
  type OverlayNetwork,
} from '../src/network/datapath.js';
import { macOf, vethName } from '../src/network/links.js';
import { execOn, startHosts } from './lib/hosts.js';

const run = promisify(execFile);

const A: OverlayNetwork = { vni: 5001, subnet: '10.10.1.0/24', gateway: '10.10.1.1' };
const B: OverlayNetwork = { vni: 5002, subnet: '10.10.2.0/24', gateway: '10.10.2.1' };
const I: OverlayNetwork = { vni: 5003, subnet: '10.10.3.0/24', gateway: '10.10.3.1', internal: true };

t.test(
  'overlay datapath: VXLAN between hosts, isolation, internal networks, a container that moves',
  async (t) => {
    const hosts = await startHosts(t, { count: 3 });
    const dp = new Map<number, Datapath>(
      [1, 2, 3].map((i) => [i, new OverlayDatapath(execOn(hosts, i), hosts.address(i))]),
    );
    const d = (i: number) => dp.get(i)!;
    const containers: string[] = [];
    t.teardown(async () => {
      for (const c of containers) await run('ip', ['netns', 'del', c]).catch(() => {});
    });
    let n = 0;
    /** A "container" (a netns of its own) on host i, attached to network net at address ip. */
    const container = async (i: number, net: OverlayNetwork, ip: string, defaultRoute = true) => {
      const name = `${hosts.prefix}-c${++n}`;
      await run('ip', ['netns', 'add', name]);
      containers.push(name);
      const hostIf = vethName(`${String(n).padStart(8, '0')}`, 0);
      await d(i).attach(
        { name },
        {
          network: net,
          hostIf,
          containerIf: 'eth0',
          address: `${ip}/24`,
          defaultRoute,
        },
      );
      return { name, ip, host: i, hostIf };
    };
    let lastPingError = '';
    /** One ping (busybox's: iputils may be absent): true if answered, false if not; throws if ping could not run. */
    const ping = async (from: { name: string }, to: string, extra: string[] = []) => {
      lastPingError = '';
      return run('ip', [
        'netns',
        'exec',
        from.name,
        'busybox',
        'ping',
        '-c',
        '1',
        '-W',
        '1',
        ...extra,
        to,
      ]).then(
        () => true,
        (e: { code?: number; stderr?: string; stdout?: string; message: string }) => {
          lastPingError = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message;
          if (e.code !== 1) throw new Error(`ping ${to} from ${from.name} did not run: ${lastPingError}`);
          return false;
        },
      );
    };

    for (const i of [1, 2, 3]) await d(i).ensureNetwork(A);
    for (const i of [2, 3]) await d(i).ensureNetwork(B);
    await d(1).ensureNetwork(I);
    await d(1).ensureNetwork(A); // idempotent

    const c1 = await container(1, A, '10.10.1.2');
    let c2 = await container(2, A, '10.10.1.3');
    const c3 = await container(2, B, '10.10.2.3');
    const c4 = await container(3, A, '10.10.1.4');
    const c5 = await container(3, B, '10.10.2.5');
    const c6 = await container(1, I, '10.10.3.2');
    const peersA = () => [c1, c2, c4].map((c) => ({ address: c.ip, vtep: hosts.address(c.host) }));
    for (const i of [1, 2, 3]) t.same(await d(i).setPeers(A.vni, peersA()), { added: 2, removed: 0 });
    for (const i of [2, 3])
      await d(i).setPeers(
        B.vni,
        [c3, c5].map((c) => ({ address: c.ip, vtep: hosts.address(c.host) })),
      );

    await t.test('containers on one network reach each other across hosts', async (t) => {
      t.ok(await ping(c1, c2.ip), `host 1 → host 2 ${lastPingError}`);
      t.ok(await ping(c1, c4.ip), `host 1 → host 3 ${lastPingError}`);
      t.ok(await ping(c4, c2.ip), `host 3 → host 2 ${lastPingError}`);
      t.ok(await ping(c3, c5.ip), `network B: host 2 → host 3 ${lastPingError}`);
      t.equal(
        (await run('ip', ['netns', 'exec', c1.name, 'cat', '/sys/class/net/eth0/address'])).stdout.trim(),
        macOf(c1.ip),
        'the MAC is derived from the address',
      );
    });

    await t.test(
      'the overlay MTU leaves room for VXLAN: 1450 everywhere; a full-size packet crosses',
      async (t) => {
        const mtu = async (ns: string | undefined, i: number, dev: string) =>
          ns
            ? (await run('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/mtu`])).stdout.trim()
            : (await execOn(hosts, i)(['cat', `/sys/class/net/${dev}/mtu`])).trim();
        t.equal(await mtu(c1.name, 1, 'eth0'), '1450', "the container's interface");
        t.equal(await mtu(undefined, 1, 'tsvx5001'), '1450', 'the VXLAN device');
        t.equal(await mtu(undefined, 1, 'tsbr5001'), '1450', 'the bridge');
        t.ok(await ping(c1, c4.ip, ['-s', '1422']), `1422 + 28 = 1450 bytes cross ${lastPingError}`);
      },
    );

    await t.test('two networks cannot reach each other, even on a host that routes', async (t) => {
      await execOn(hosts, 2)(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      t.ok(await ping(c3, B.gateway), `B reaches its gateway ${lastPingError}`);
      t.notOk(await ping(c3, c2.ip), 'B on host 2 does not reach A on host 2');
      t.notOk(await ping(c1, c3.ip), 'nor A on host 1 B on host 2');
      // the rule is what keeps them apart: without it host 2 would route between them
      await execOn(hosts, 2)(['iptables', '-w', '-D', 'FORWARD', '-j', 'TSSWARM-ISOLATION']);
      t.ok(await ping(c3, c2.ip), `without the isolation rule, host 2 routes B → A ${lastPingError}`);
      await execOn(hosts, 2)(['iptables', '-w', '-I', 'FORWARD', '-j', 'TSSWARM-ISOLATION']);
      t.notOk(await ping(c3, c2.ip), 'with it back, it does not');
    });

    await t.test('an internal network has no way out', async (t) => {
      const routes = (await run('ip', ['netns', 'exec', c6.name, 'ip', 'route'])).stdout;
      t.notMatch(routes, /default/, 'no default route');
      t.notOk(await ping(c6, c1.ip), 'does not reach another network');
      // its bridge holds the gateway address for DNS only: the host answers nothing else there
      const addrs = await execOn(hosts, 1)(['ip', '-j', 'addr', 'show', 'tsbr5003']);
      t.match(addrs, /10\.10\.3\.1/, 'its bridge holds the gateway address (the DNS server)');
      t.notOk(await ping(c6, I.gateway), 'the host does not answer it otherwise');
    });

    await t.test('a container that moves to another host is reached there', async (t) => {
      await d(2).detach(c2.hostIf);
      await run('ip', ['netns', 'del', c2.name]);
      t.notOk(await ping(c1, c2.ip), 'gone from host 2');
      c2 = await container(3, A, '10.10.1.3');
      for (const i of [1, 2, 3]) await d(i).setPeers(A.vni, peersA());
      t.ok(await ping(c1, c2.ip), `host 1 reaches it on host 3 ${lastPingError}`);
      const fdb = await execOn(hosts, 1)(['bridge', 'fdb', 'show', 'dev', 'tsvx5001']);
      t.match(fdb, new RegExp(`${macOf(c2.ip)} dst ${hosts.address(3).replace(/\./g, '\\.')}`));
      t.notMatch(
        fdb,
        new RegExp(`${macOf(c2.ip)} dst ${hosts.address(2).replace(/\./g, '\\.')}`),
        'not at host 2',
      );
      // a restarted daemon (a new object) reads what the kernel holds and changes nothing
      const again = new OverlayDatapath(execOn(hosts, 1), hosts.address(1));
      t.same(await again.setPeers(A.vni, peersA()), { added: 0, removed: 0 });
    });

    await t.test('a network removed from a host leaves no link and no rule', async (t) => {
      await d(1).detach(c6.hostIf);
      await d(1).removeNetwork(I);
      const links = await execOn(hosts, 1)(['ip', '-j', 'link', 'show']);
      t.notMatch(links, /tsbr5003|tsvx5003/);
      t.notMatch(await execOn(hosts, 1)(['iptables', '-w', '-S', 'TSSWARM-ISOLATION']), /tsbr5003/);
      t.same(await d(1).attachments(), [c1.hostIf], 'one attachment left on host 1');
    });
  },
);
