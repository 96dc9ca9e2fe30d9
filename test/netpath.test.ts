/**
 * Networks that follow the containers, on hosts that are network namespaces and the real
 * kernel datapath (bridges, VXLAN, iptables in the containers' namespaces, the embedded DNS):
 * a manager and three workers; a client on host 3 reaches a web service on host 2 by name, by
 * VIP and by `tasks.` name, and again after the web task moved to host 4; a service on
 * another network stays out of reach; scaling down loses no request; a killed worker's
 * entries leave the other hosts; a restarted worker removes what it no longer runs.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { NetworkRecord, NodeRecord, ServiceRecord, TaskRecord } from '../src/api/cluster.js';
import { type HostDaemon, loadImagesOn, startHosts } from './lib/hosts.js';
import { cliJson, joinArgs, runningTasks } from './lib/swarm.js';
import { until } from './lib/wait.js';

// web answers /cgi-bin/ip with the client address it sees and its own hostname
const HTTPD = [
  'sh',
  '-c',
  'mkdir -p /www/cgi-bin && printf \'#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "$$REMOTE_ADDR $$(hostname)"\\n\' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www',
];

const STACK = `services:
  web:
    image: busybox:test
    command: ${JSON.stringify(HTTPD)}
    networks: [front]
    # a stopped task stops answering at once: a request still sent to it would fail
    stop_signal: SIGKILL
    deploy:
      replicas: 1
      placement:
        constraints: [node.labels.web==yes]
  rr:
    image: busybox:test
    command: ${JSON.stringify(HTTPD)}
    networks:
      front:
        aliases: [round]
    deploy:
      endpoint_mode: dnsrr
      replicas: 2
      placement:
        constraints: [node.labels.web==yes]
  client:
    image: busybox:test
    command: ["sleep", "3600"]
    networks: [front]
    deploy:
      placement:
        constraints: [node.labels.client==yes]
  secret:
    image: busybox:test
    command: ${JSON.stringify(HTTPD)}
    networks: [back]
    deploy:
      placement:
        constraints: [node.labels.client==yes]
  pub:
    image: busybox:test
    command: ${JSON.stringify(HTTPD)}
    networks: [front]
    ports:
      - target: 80
        published: 8080
    deploy:
      placement:
        constraints: [node.labels.client==yes]
  hostport:
    image: busybox:test
    command: ${JSON.stringify(HTTPD)}
    ports:
      - target: 80
        published: 8081
        mode: host
    deploy:
      placement:
        constraints: [node.labels.client==yes]
  lone:
    image: busybox:test
    command: ${JSON.stringify(HTTPD)}
    networks: [local]
    deploy:
      endpoint_mode: dnsrr
      replicas: 2
      placement:
        constraints: [node.labels.client==yes]
networks:
  front: {}
  back: {}
  local:
    driver: bridge
`;

t.test('network datapath: names, VIPs and tasks across hosts, following a moved task', async (t) => {
  // host 5 runs no daemon: it is a client from outside the swarm
  const hosts = await startHosts(t, { count: 5 });
  const d = await Promise.all([1, 2, 3, 4].map((i) => hosts.startDaemon(i)));
  const h = (i: number) => d[i - 1]!;
  await Promise.all(d.map((x) => loadImagesOn(x)));
  const ok = async (dd: HostDaemon, args: string[]) => {
    const r = await dd.cli(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await ok(h(1), ['swarm', 'init', '--advertise-addr', hosts.address(1)]);
  const token = (await ok(h(1), ['swarm', 'join-token', '-q', 'worker'])).trim();
  for (const i of [2, 3, 4]) await ok(h(i), joinArgs(hosts, i, token));
  const nodes = await until(
    'four ready nodes',
    () => cliJson<NodeRecord[]>(h(1), ['node', 'ls']),
    (n) => n.filter((x) => x.status === 'ready').length === 4,
    60_000,
  );
  const nodeOf = (i: number) => nodes.find((n) => n.address === hosts.address(i))!.id;
  await ok(h(1), ['node', 'update', '--label-add', 'web=yes', nodeOf(2)]);
  await ok(h(1), ['node', 'update', '--label-add', 'client=yes', nodeOf(3)]);
  const stackFile = join(hosts.dir, 'net.yml');
  await fs.writeFile(stackFile, STACK);
  await ok(h(1), ['stack', 'deploy', '-c', stackFile, 'net']);
  const tasksOf = (svc: string) => cliJson<TaskRecord[]>(h(1), ['service', 'ps', svc]);
  const running = async (svc: string, n: number) =>
    runningTasks(
      await until(
        `${n} running ${svc}`,
        () => tasksOf(svc),
        (ts) => runningTasks(ts).length === n,
        90_000,
      ),
    );
  const [client] = await running('net_client', 1);
  const [web] = await running('net_web', 1);
  await running('net_rr', 2);
  await running('net_secret', 1);
  const addr = (task: TaskRecord) => task.attachments![0]!.address.split('/')[0]!;
  const clientAddr = addr(client!);

  /** Runs argv in the client task's container (its namespaces) on host 3. */
  const inClient = (argv: string[], timeoutMs = 15_000) =>
    h(3).cli(['container', 'exec', client!.containerId!, ...argv], { timeoutMs });
  // an HTTP request with nc (busybox-static's wget crashes without libc's service database)
  const REQUEST = (target: string, port = 80) =>
    `printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${target} ${port} | tail -n 1`;
  // httpd listens on IPv6 too: an IPv4 client shows as [::ffff:A.B.C.D]
  const answerOf = (stdout: string) => stdout.trim().replace(/^\[::ffff:([\d.]+)\]/, '$1');
  /** A request from simulated host `from` (its own namespace, not a task's) to ADDR:PORT; the answer line. */
  const askFrom = async (from: number, to: string, port: number) =>
    answerOf((await hosts.exec(from, ['busybox', 'sh', '-c', REQUEST(to, port)])).stdout);
  /** Waits until host `from` gets an answer on `to`:`port` that starts with `seenAs` (the client the task saw). */
  const answersFrom = (from: number, to: number, port: number, seenAs: string) =>
    until(
      `host ${to} answers host ${from} on ${port}`,
      () => askFrom(from, hosts.address(to), port),
      (l) => l.startsWith(`${seenAs} `),
      20_000,
    );
  const fetch = async (target: string) => {
    const r = await inClient(['sh', '-c', REQUEST(target)]);
    const line = answerOf(r.stdout);
    return r.code === 0 && /^\d+\.\d+\.\d+\.\d+ \S+$/.test(line)
      ? line
      : `error ${r.code}: ${line} ${r.stderr.trim()}`;
  };
  const lookup = async (name: string) => {
    const r = await inClient(['nslookup', name]);
    // busybox prints the server first, then "Name:/Address:" pairs of the answer
    const answer = r.stdout
      .split(/\nName:/)
      .slice(1)
      .join('\n');
    return {
      code: r.code,
      out: r.stdout + r.stderr,
      addrs: [...answer.matchAll(/Address(?: \d+)?:\s*([\d.]+)/g)].map((m) => m[1]!).sort(),
    };
  };

  const svc = (JSON.parse(await ok(h(1), ['service', 'inspect', 'net_web'])) as ServiceRecord[])[0]!;
  const vip = svc.virtualIps![0]!.address.split('/')[0]!;

  await t.test('the client on host 3 reaches web on host 2 by name, VIP and tasks. name', async (t) => {
    t.equal(nodeOf(2), web!.nodeId, 'web runs on host 2');
    const line = await until(
      'web answers by name',
      () => fetch('web'),
      (s) => !s.startsWith('error'),
      20_000,
    );
    t.match(line, new RegExp(`^${clientAddr.replace(/\./g, '\\.')} `), 'web sees the client’s own address');
    t.equal(await fetch('net_web').then((s) => s.split(' ')[0]), clientAddr, 'by its full name');
    t.equal(await fetch(vip).then((s) => s.split(' ')[0]), clientAddr, 'by its VIP');
    t.same((await lookup('web')).addrs, [vip], 'the name is the VIP');
    t.same((await lookup('tasks.web')).addrs, [addr(web!)], 'tasks.web is the task');
    t.equal(await fetch(addr(web!)).then((s) => s.split(' ')[0]), clientAddr, 'by the task address');
  });

  await t.test('dnsrr: the name is every task; aliases answer', async (t) => {
    const rr = runningTasks(await tasksOf('net_rr'))
      .map(addr)
      .sort();
    t.same((await lookup('rr')).addrs, rr);
    t.same((await lookup('round')).addrs, rr, 'the alias');
    t.same((await lookup('tasks.net_rr')).addrs, rr);
  });

  await t.test('an ingress port answers on every host, and the task sees the real client', async (t) => {
    await running('net_pub', 1);
    const outside = hosts.address(5);
    for (const i of [1, 2, 3, 4]) {
      const line = await answersFrom(5, i, 8080, outside);
      t.match(line, new RegExp(`^${outside.replace(/\./g, '\\.')} `), `host ${i}: the task sees ${outside}`);
    }
    // the nodes themselves reach it on their own address: host 1 has no task (forwarded), host 3 has it
    for (const i of [1, 3]) {
      const line = await answersFrom(i, i, 8080, hosts.address(i));
      t.match(line, hosts.address(i), `host ${i} → the task, which sees host ${i}`);
    }
    // a service on no network that publishes a port is on the ingress network, as Docker's
    await ok(h(1), [
      'service',
      'create',
      '--name',
      'plain',
      '-p',
      '8082:80',
      '--constraint',
      'node.labels.client==yes',
      'busybox:test',
      ...HTTPD.map((a) => a.replaceAll('$$', '$')),
    ]);
    const [plain] = await running('plain', 1);
    t.equal(plain!.attachments?.[0]?.network, 'ingress', 'its task is on the ingress network');
    for (const i of [1, 4]) {
      const line = await answersFrom(5, i, 8082, outside);
      t.match(line, outside, `host ${i} → the ingress network's task, which sees ${outside}`);
    }
    await ok(h(1), ['service', 'rm', 'plain']);
    await answersFrom(5, 3, 8081, outside); // host mode: host 3 answers
    t.equal(await askFrom(5, hosts.address(2), 8081), '', 'host mode: host 2 does not');
  });

  await t.test('a bridge network: a bridge on its host, no VXLAN; its tasks reach each other', async (t) => {
    const lone = await running('net_lone', 2);
    const local = (await cliJson<NetworkRecord[]>(h(1), ['network', 'ls'])).find(
      (n) => n.name === 'net_local',
    )!;
    t.equal(local.driver, 'bridge');
    const links = (await hosts.exec(3, ['ip', '-o', 'link'])).stdout;
    t.match(links, new RegExp(` tsbr${local.vni}[@:]`), 'its bridge on host 3');
    t.notMatch(links, new RegExp(` tsvx${local.vni}[@:]`), 'and no VXLAN device');
    const r = await h(3).cli(
      ['container', 'exec', lone[0]!.containerId!, 'sh', '-c', REQUEST(addr(lone[1]!))],
      { timeoutMs: 15_000 },
    );
    t.match(
      answerOf(r.stdout),
      new RegExp(`^${addr(lone[0]!).replace(/\./g, '\\.')} `),
      'one task reaches the other',
    );
    const names = await h(3).cli(['container', 'exec', lone[0]!.containerId!, 'nslookup', 'tasks.lone'], {
      timeoutMs: 15_000,
    });
    for (const x of lone) t.match(names.stdout, addr(x), `tasks.lone has ${addr(x)}`);
  });

  await t.test('another network is out of reach; unknown names are NXDOMAIN', async (t) => {
    const [secret] = runningTasks(await tasksOf('net_secret'));
    const l = await lookup('secret');
    t.not(l.code, 0, `secret does not resolve from front: ${l.out}`);
    t.match(await fetch(addr(secret!)), /^error/, 'its address does not answer');
    t.not(
      (await lookup('example.com')).code,
      0,
      'names outside the swarm are not forwarded (none configured)',
    );
  });

  await t.test('web moved to host 4 is reached again, the old host forgets it', async (t) => {
    await ok(h(1), ['node', 'update', '--label-add', 'web=yes', nodeOf(4)]);
    await ok(h(1), ['node', 'update', '--availability', 'drain', nodeOf(2)]);
    const [moved] = await until(
      'web running on host 4',
      async () => runningTasks(await tasksOf('net_web')),
      (r) => r.length === 1 && r[0]!.nodeId === nodeOf(4),
      60_000,
    );
    const line = await until(
      'web answers from host 4',
      () => fetch('web'),
      (s) => s.includes(moved!.containerId!.slice(0, 12)),
      20_000,
    );
    t.match(line, clientAddr);
    t.same((await lookup('tasks.web')).addrs, [addr(moved!)]);
    const fdb = await until(
      'host 3 forwards web’s MAC to host 4',
      () => hosts.exec(3, ['bridge', 'fdb', 'show']).then((r) => r.stdout),
      (s) => s.includes(hosts.address(4)),
      15_000,
    );
    t.ok(fdb, 'fdb has host 4');
    // host 2's tasks stop within their grace period (10 s: httpd as PID 1 ignores SIGTERM)
    const ingress = (await cliJson<NetworkRecord[]>(h(1), ['network', 'ls'])).find((n) => n.ingress)!;
    const leftovers = async () => {
      const ns = (await hosts.exec(2, ['ip', 'netns', 'list'])).stdout;
      const links = (await hosts.exec(2, ['ip', '-o', 'link'])).stdout;
      return [
        ...[...ns.matchAll(new RegExp(`${hosts.host(2).cgroupParent}-\\S+`, 'g'))].map((m) => m[0]),
        ...[...links.matchAll(/ (ts(?:c|br|vx)[0-9a-f]+)[@:]/g)]
          .map((m) => m[1]!)
          .filter((l) => !l.endsWith(String(ingress.vni))), // the routing mesh stays on every node
      ];
    };
    t.same(
      await until(
        'host 2 keeps no namespace, veth or link of the network',
        leftovers,
        (l) => !l.length,
        30_000,
      ),
      [],
    );
  });

  await t.test('scaling down loses no request through the VIP', async (t) => {
    await ok(h(1), ['node', 'update', '--availability', 'active', nodeOf(2)]);
    await ok(h(1), ['service', 'scale', 'net_web=3']);
    await running('net_web', 3);
    await until(
      'three behind the VIP',
      async () => {
        const seen = new Set<string>();
        for (let i = 0; i < 12; i++) seen.add((await fetch('web')).split(' ')[1] ?? '');
        return seen.size;
      },
      (n) => n === 3,
      30_000,
    );
    // four clients in a row without pause, from before the scale-down until after it
    const loop = (n: number) =>
      inClient(
        [
          'sh',
          '-c',
          `f=0; i=0; while [ $i -lt ${n} ]; do ${REQUEST('web')} | grep -q . || f=$((f+1)); i=$((i+1)); done; echo requests=$i failures=$f`,
        ],
        120_000,
      );
    const loops = Promise.all([loop(150), loop(150), loop(150), loop(150)]);
    await new Promise((r) => setTimeout(r, 700));
    await ok(h(1), ['service', 'scale', 'net_web=1']);
    for (const r of await loops) {
      t.equal(r.code, 0, r.stderr);
      t.match(r.stdout, /requests=150 failures=0\b/, 'every request during the scale-down was answered');
    }
    await running('net_web', 1);
  });

  await t.test(
    'a killed worker: its entries leave the other hosts; restarted, it clears its leftovers',
    async (t) => {
      const onHost = (i: number) => hosts.exec(i, ['bridge', 'fdb', 'show']).then((r) => r.stdout);
      await hosts.killHost(4);
      await until(
        'host 3 has no entry for host 4',
        () => onHost(3),
        (s) => !s.includes(`dst ${hosts.address(4)} `),
        60_000,
      );
      const line = await until(
        'web answers',
        () => fetch('web'),
        (s) => !s.startsWith('error'),
        60_000,
      );
      t.match(line, clientAddr);
      // host 4 comes back: the namespaces of its old tasks go, it runs what it is given
      await hosts.startDaemon(4);
      await until(
        'host 4 keeps only namespaces of tasks it runs',
        async () => {
          const ns = (await hosts.exec(4, ['ip', 'netns', 'list'])).stdout;
          const mine = runningTasks(await cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'net_web']))
            .concat(runningTasks(await tasksOf('net_rr')))
            .filter((x) => x.nodeId === nodeOf(4))
            .map((x) => `${hosts.host(4).cgroupParent}-${x.id.slice(0, 12)}`);
          const names = ns
            .split('\n')
            .map((l) => l.split(' ')[0]!)
            .filter((n) => n.startsWith(`${hosts.host(4).cgroupParent}-`));
          return JSON.stringify(names.sort()) === JSON.stringify(mine.sort());
        },
        (x) => x,
        60_000,
      );
      // and the networks it no longer needs: only the ingress network and those of its tasks stay
      const nets = await cliJson<NetworkRecord[]>(h(1), ['network', 'ls']);
      const bridges = async () =>
        [...(await hosts.exec(4, ['ip', '-o', 'link'])).stdout.matchAll(/ tsbr(\d+)[@:]/g)].map((m) =>
          Number(m[1]),
        );
      const wanted = async () => {
        const all = [
          ...(await cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'net_web'])),
          ...(await tasksOf('net_rr')),
        ];
        const ids = new Set(
          runningTasks(all)
            .filter((x) => x.nodeId === nodeOf(4))
            .flatMap((x) => x.attachments!.map((a) => a.networkId)),
        );
        return nets.filter((n) => n.ingress || ids.has(n.id)).map((n) => n.vni!);
      };
      await until(
        'host 4 keeps only the bridges it needs',
        async () => ({ have: (await bridges()).sort(), want: (await wanted()).sort() }),
        (x) => JSON.stringify(x.have) === JSON.stringify(x.want),
        30_000,
      );
    },
  );

  await t.test('a node that leaves the swarm takes its networks, rules and routes with it', async (t) => {
    await ok(h(2), ['swarm', 'leave']);
    const links = (await hosts.exec(2, ['ip', '-o', 'link'])).stdout;
    t.notMatch(links, / ts(c|br|vx)[0-9a-f]+[@:]/, 'no bridge, VXLAN device or veth');
    t.notMatch((await hosts.exec(2, ['ip', 'rule'])).stdout, /fwmark/, 'no policy-routing rule');
    t.notMatch((await hosts.exec(2, ['iptables-save'])).stdout, /-A TSSWARM-PORTS /, 'no port rule');
    const ns = (await hosts.exec(2, ['ip', 'netns', 'list'])).stdout;
    t.notMatch(ns, new RegExp(`${hosts.host(2).cgroupParent}-`), 'no task namespace');
  });
});
