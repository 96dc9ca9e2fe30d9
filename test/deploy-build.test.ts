/**
 * `tsswarm deploy` of a stack with `build:` over a three-host swarm: the manager (host 1)
 * builds the image and pushes it to a registry with basic auth over TLS (running on host 1's
 * address); the two workers, which never had the image, pull it with the credentials the
 * deploy carried (--with-registry-auth) and run it. The credentials never show in the API or
 * in a daemon's log; without them a worker's pull is refused and the task says why.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { NodeRecord, TaskRecord } from '../src/api/cluster.js';
import { type HostDaemon, loadImagesOn, startHosts } from './lib/hosts.js';
import { startRegistry } from './lib/registry.js';
import { cliJson, joinArgs, runningTasks } from './lib/swarm.js';
import { until } from './lib/wait.js';

const DOCKERFILE = `FROM busybox:test
COPY msg /msg
CMD ["sh", "-c", "cat /msg && exec sleep 3600"]
`;

t.test('deploy with build: built and pushed on the manager, pulled and run by two workers', async (t) => {
  const hosts = await startHosts(t, { count: 3 });
  const reg = await startRegistry(t, {
    tls: true,
    auth: true,
    address: hosts.address(1),
    netns: hosts.host(1).netns,
  });
  const certs = join(hosts.dir, 'certs.d');
  await fs.mkdir(join(certs, reg.host), { recursive: true });
  await fs.copyFile(reg.caFile!, join(certs, reg.host, 'ca.crt'));
  const d = await Promise.all([1, 2, 3].map((i) => hosts.startDaemon(i, ['--registry-certs', certs])));
  const h = (i: number) => d[i - 1]!;
  await loadImagesOn(h(1)); // the workers have no image at all
  const env = { TSSWARM_CONFIG: join(hosts.dir, 'client') };
  const ok = async (dd: HostDaemon, args: string[], input?: string) => {
    const r = await dd.cli(args, { env, timeoutMs: 180_000, ...(input !== undefined ? { input } : {}) });
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  await ok(h(1), ['swarm', 'init', '--advertise-addr', hosts.address(1)]);
  const token = (await ok(h(1), ['swarm', 'join-token', '-q', 'worker'])).trim();
  for (const i of [2, 3]) await ok(h(i), joinArgs(hosts, i, token));
  const nodes = await until(
    'three ready nodes',
    () => cliJson<NodeRecord[]>(h(1), ['node', 'ls']),
    (n) => n.filter((x) => x.status === 'ready').length === 3,
    60_000,
  );
  const nodeOf = (i: number) => nodes.find((n) => n.address === hosts.address(i))!.id;
  await ok(h(1), ['login', reg.host, '-u', reg.user!, '--password-stdin'], reg.password);

  const dir = join(hosts.dir, 'proj');
  await fs.mkdir(join(dir, 'app'), { recursive: true });
  await fs.writeFile(join(dir, 'app', 'Dockerfile'), DOCKERFILE);
  await fs.writeFile(join(dir, 'app', 'msg'), 'built for the swarm\n');
  const image = `${reg.host}/tsswarm/app:1`;
  await fs.writeFile(
    join(dir, 'stack.yml'),
    [
      'services:',
      '  web:',
      `    image: ${image}`,
      '    build:',
      '      context: ./app',
      '    deploy:',
      '      replicas: 2',
      '      placement:',
      '        constraints: [node.role == worker]',
      '        max_replicas_per_node: 1',
      '',
    ].join('\n'),
  );
  const out = await ok(h(1), [
    'deploy',
    '--with-registry-auth',
    '--timeout',
    '150',
    join(dir, 'stack.yml'),
    'app',
  ]);
  t.match(out, /Successfully tagged/, 'the manager built the image');
  t.match(out, /digest: sha256:[a-f0-9]{64}/, 'and pushed it');

  const tasks = runningTasks(await cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'app_web']));
  t.equal(tasks.length, 2, 'two tasks run');
  t.same(tasks.map((x) => x.nodeId).sort(), [nodeOf(2), nodeOf(3)].sort(), 'one on each worker');
  t.match(
    tasks[0]!.container.image,
    new RegExp(`^${image.replace(/[.]/g, '\\.')}@sha256:[a-f0-9]{64}$`),
    'pinned to the pushed digest',
  );
  for (const i of [2, 3]) {
    const imgs = await cliJson<Array<{ id: string; repoTags: string[] }>>(h(i), ['image', 'ls']);
    t.equal(imgs.length, 1, `worker ${i} pulled the image (and only it)`);
    const logs = await ok(h(1), ['service', 'logs', 'app_web']);
    t.match(logs, /built for the swarm/, 'the tasks run the built image');
  }

  // the credentials never show: not in the API, not in a daemon's log
  const inspect = await ok(h(1), ['service', 'inspect', 'app_web']);
  t.notOk(inspect.includes(reg.password!), 'service inspect does not show the password');
  t.match(inspect, /<redacted>/, 'the credentials are redacted');
  t.notOk(
    JSON.stringify(await cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'app_web'])).includes(reg.password!),
    'nor do the tasks',
  );
  for (const i of [1, 2, 3]) {
    const log = await fs.readFile(join(hosts.host(i).dir, 'daemon.log'), 'utf8');
    t.notOk(log.includes(reg.password!), `host ${i}'s daemon log does not contain the password`);
  }

  // without --with-registry-auth the workers cannot pull a private image: the task says why
  await fs.writeFile(join(dir, 'app', 'msg'), 'second build\n');
  const private2 = `${reg.host}/tsswarm/private:1`;
  await fs.writeFile(
    join(dir, 'private.yml'),
    [
      'services:',
      '  priv:',
      `    image: ${private2}`,
      '    build: ./app',
      '    deploy:',
      '      placement:',
      '        constraints: [node.role == worker]',
      '',
    ].join('\n'),
  );
  await ok(h(1), ['deploy', '-d', join(dir, 'private.yml'), 'other']);
  const refused = await until(
    'a refused pull',
    () => cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'other_priv']),
    (ts) => ts.some((x) => /requires authentication/.test(x.status.err ?? '')),
    60_000,
  );
  t.ok(
    refused.some((x) => x.status.state === 'rejected'),
    'the task is rejected, saying the registry requires authentication',
  );

  // given the credentials by an update, the service's next task pulls and runs
  await ok(h(1), ['service', 'update', '--with-registry-auth', 'other_priv']);
  const first = await until(
    'the private service running',
    () => cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'other_priv']),
    (ts) => runningTasks(ts).length === 1,
    90_000,
  );
  t.equal(runningTasks(first).length, 1, 'it runs once given the credentials');
  // an update that sends back what it was shown (redacted) keeps them: the worker that has not
  // pulled the image yet pulls it with them
  await ok(h(1), ['service', 'update', '--env-add', 'AGAIN=1', '--replicas', '2', 'other_priv']);
  const after = await until(
    'two updated tasks running',
    () => cliJson<TaskRecord[]>(h(1), ['service', 'ps', 'other_priv']),
    (ts) => runningTasks(ts).filter((x) => x.container.env.includes('AGAIN=1')).length === 2,
    90_000,
  );
  const nodesNow = new Set(runningTasks(after).map((x) => x.nodeId));
  t.equal(nodesNow.size, 2, 'on both workers: one of them pulled with the kept credentials');
  t.match(await ok(h(1), ['service', 'inspect', 'other_priv']), /<redacted>/, 'still redacted');
});
