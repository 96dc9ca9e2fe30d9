import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { servicesFromStack } from './deploy.js';
import { normalizeServiceSpec } from './serviceSpec.js';
import { loadStack } from './stack/load.js';

const tmp = await mkdtemp('/tmp/tsswarm-test-');
t.teardown(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
async function specs(yaml: string) {
  const file = join(tmp, `stack${++n}.yml`);
  await writeFile(file, yaml);
  const { stack } = await loadStack(file, { name: 's', env: {} });
  return servicesFromStack(stack).map(normalizeServiceSpec);
}

t.test('job modes become job services', async (t) => {
  const [migrate, agent, once] = await specs(`services:
  migrate:
    image: busybox
    deploy:
      mode: replicated-job
      replicas: 3
      restart_policy: { max_attempts: 2 }
  agent:
    image: busybox
    deploy: { mode: global-job }
  once:
    image: busybox
    deploy: { mode: replicated-job }
`);
  t.match(migrate, {
    name: 's_migrate',
    mode: 'replicated-job',
    replicas: 3,
    restartPolicy: { condition: 'on-failure', maxAttempts: 2 },
  });
  t.equal(migrate!.maxConcurrent, undefined, 'every completion at once, as docker stack deploy does');
  t.match(agent, {
    name: 's_agent',
    mode: 'global-job',
    replicas: 0,
    restartPolicy: { condition: 'on-failure' },
  });
  t.match(once, { mode: 'replicated-job', replicas: 1 });
});

t.test('ports: short and long syntax, host and ingress, endpoint mode', async (t) => {
  const [web, dns, plain] = await specs(`services:
  web:
    image: busybox
    ports:
      - "8080:80"
      - "9000-9001:9000-9001/udp"
      - 443
      - { target: 8443, published: 18443, mode: host }
  dns:
    image: busybox
    ports: [{ target: 53, published: 53, protocol: udp, mode: host }]
    deploy: { endpoint_mode: dnsrr }
  plain:
    image: busybox
`);
  t.same(web!.endpoint, {
    mode: 'vip',
    ports: [
      { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' },
      { target: 9000, published: 9000, protocol: 'udp', mode: 'ingress' },
      { target: 9001, published: 9001, protocol: 'udp', mode: 'ingress' },
      { target: 443, protocol: 'tcp', mode: 'ingress' },
      { target: 8443, published: 18443, protocol: 'tcp', mode: 'host' },
    ],
  });
  t.same(dns!.endpoint, {
    mode: 'dnsrr',
    ports: [{ target: 53, published: 53, protocol: 'udp', mode: 'host' }],
  });
  t.equal(plain!.endpoint, undefined, 'no ports: no endpoint');
});

t.test('a redeploy without ports or max_replicas_per_node clears them on the service', async (t) => {
  const [before] = await specs(`services:
  web:
    image: busybox
    ports: ["8080:80"]
    deploy: { placement: { max_replicas_per_node: 2 } }
`);
  const [raw] = servicesFromStack(
    (
      await loadStack(
        await (async () => {
          const f = join(tmp, 'after.yml');
          await writeFile(f, 'services:\n  web:\n    image: busybox\n');
          return f;
        })(),
        { name: 's', env: {} },
      )
    ).stack,
  );
  // the manager merges the new spec over the stored one, as `updateService` does
  const merged = normalizeServiceSpec({ ...before!, ...raw! });
  t.equal(merged.endpoint, undefined);
  t.equal(merged.maxReplicasPerNode, undefined);
  t.equal(before!.maxReplicasPerNode, 2);
});
