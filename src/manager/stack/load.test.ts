// biome-ignore-all lint/suspicious/noTemplateCurlyInString: stack files write ${VAR} literally
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TsswarmError } from '../../api/errors.js';
import { type LoadOptions, loadStack } from './load.js';
import { renderStack } from './render.js';
import { composeSpecSchema } from './schema.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const tmp = await mkdtemp('/tmp/tsswarm-test-');
t.teardown(() => rm(tmp, { recursive: true, force: true }));

let cases = 0;
/** Writes `files` (name → text) into a fresh directory; returns the path of the first. */
async function write(files: Record<string, string>): Promise<string> {
  const dir = join(tmp, `case${++cases}`);
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return join(dir, Object.keys(files)[0]!);
}

async function load(text: string, opts: LoadOptions = {}, extra: Record<string, string> = {}) {
  const file = await write({ 'stack.yml': text, ...extra });
  return { file, ...(await loadStack(file, { name: 's', env: {}, ...opts })) };
}

/** The error lines of a refused stack file, with the file path replaced by FILE. */
async function errors(
  text: string,
  opts: LoadOptions = {},
  extra: Record<string, string> = {},
): Promise<string[]> {
  const file = await write({ 'stack.yml': text, ...extra });
  try {
    await loadStack(file, { name: 's', env: {}, ...opts });
  } catch (e) {
    if (!(e instanceof TsswarmError)) throw e;
    if (e.code !== 'invalid_argument') throw e;
    return e.message.split('\n').map((l) => l.split(file).join('FILE'));
  }
  throw new Error('the stack file was accepted');
}

const warningsOf = (r: { file: string; warnings: string[] }) =>
  r.warnings.map((w) => w.split(r.file).join('FILE'));

t.test('the schema is compose-spec, read from the npm package', async (t) => {
  const s = composeSpecSchema();
  t.equal(s.$id, 'compose_spec.json');
  t.equal(s.title, 'Compose Specification');
  const service = (s.definitions as Record<string, { properties: Record<string, unknown> }>).service!;
  t.ok(service.properties.deploy && service.properties.healthcheck);
});

t.test('YAML syntax errors name their line', async (t) => {
  const e = await errors('services:\n  web:\n    image: busybox\n    ports: [80\n  db:\n    image: x\n');
  t.equal(e.length, 1);
  t.match(e[0]!, /^FILE:5: invalid YAML: /);
  t.match(await errors('services:\n  web:\n    image: a\n    image: b\n'), [
    /^FILE:4: invalid YAML: Map keys must be unique/,
  ]);
  t.match(await errors(''), [/^FILE:1: the file is empty/]);
  t.match(await errors('- a\n- b\n'), [/^FILE:1: the top level must be a map/]);
});

t.test('schema errors: FILE:LINE, key path, readable message', async (t) => {
  t.same(await errors('services:\n  web:\n    image: busybox\n    imagee: busybox\n'), [
    'FILE:4: services.web: unknown key "imagee"; did you mean "image"?',
  ]);
  t.same(await errors('services:\n  web:\n    image: busybox\n    deploy:\n      replcias: 2\n'), [
    'FILE:5: services.web.deploy: unknown key "replcias"; did you mean "replicas"?',
  ]);
  t.same(await errors('version: "3.8"\nservice:\n  web:\n    image: busybox\n'), [
    'FILE:2: (top level): unknown key "service"; did you mean "services"?',
  ]);
  t.same(await errors('services:\n  web:\n    image: busybox\n    frobnicate: 1\n'), [
    'FILE:4: services.web: unknown key "frobnicate"',
  ]);
  t.same(await errors('services:\n  web:\n    image: busybox\n    ports: 80\n'), [
    'FILE:4: services.web.ports: must be a list (got 80)',
  ]);
  t.same(await errors('services:\n  web:\n    image: busybox\n    environment: 5\n'), [
    'FILE:4: services.web.environment: must be a map or a list (got 5)',
  ]);
  t.same(await errors('services:\n  web:\n    image: [busybox]\n'), [
    'FILE:3: services.web.image: must be string (got a list)',
  ]);
  t.same(
    await errors(
      'services:\n  web:\n    image: busybox\n    deploy:\n      update_config:\n        order: sideways\n',
    ),
    [
      'FILE:6: services.web.deploy.update_config.order: must be one of "start-first", "stop-first" (got "sideways")',
    ],
  );
  t.same(
    await errors(
      'services:\n  web:\n    image: busybox\n    depends_on:\n      db:\n        condition: started\n  db:\n    image: x\n',
    ),
    [
      'FILE:6: services.web.depends_on.db.condition: must be one of "service_started", "service_healthy", "service_completed_successfully" (got "started")',
    ],
  );
});

t.test('wrong types found after interpolation: replicas must be integer', async (t) => {
  t.same(await errors('services:\n  web:\n    image: busybox\n    deploy:\n      replicas: three\n'), [
    'FILE:5: services.web.deploy.replicas: must be integer (got "three")',
  ]);
  t.same(
    await errors('services:\n  web:\n    image: busybox\n    deploy:\n      replicas: ${N}\n', {
      env: { N: 'x' },
    }),
    ['FILE:5: services.web.deploy.replicas: must be integer (got "x")'],
  );
  t.same(await errors('services:\n  web:\n    image: busybox\n    deploy:\n      replicas: -1\n'), [
    'FILE:5: services.web.deploy.replicas: must not be negative (got -1)',
  ]);
});

t.test('enumerations the schema leaves open are checked', async (t) => {
  const e = await errors(
    [
      'services:',
      '  web:',
      '    image: busybox',
      '    deploy:',
      '      mode: replicate',
      '      endpoint_mode: rr',
      '      restart_policy:',
      '        condition: always',
      '      update_config:',
      '        failure_action: retry',
      '      rollback_config:',
      '        failure_action: rollback',
      '    ports:',
      '      - target: 80',
      '        mode: hostt',
      '        protocol: icmp',
      '',
    ].join('\n'),
  );
  t.same(e, [
    'FILE:5: services.web.deploy.mode: must be one of "replicated", "global", "replicated-job", "global-job" (got "replicate"); did you mean "replicated"?',
    'FILE:6: services.web.deploy.endpoint_mode: must be one of "vip", "dnsrr" (got "rr")',
    'FILE:8: services.web.deploy.restart_policy.condition: must be one of "none", "on-failure", "any" (got "always")',
    'FILE:10: services.web.deploy.update_config.failure_action: must be one of "pause", "continue", "rollback" (got "retry")',
    'FILE:12: services.web.deploy.rollback_config.failure_action: must be one of "pause", "continue" (got "rollback")',
    'FILE:15: services.web.ports[0].mode: must be one of "ingress", "host" (got "hostt"); did you mean "host"?',
    'FILE:16: services.web.ports[0].protocol: must be one of "tcp", "udp", "sctp" (got "icmp")',
  ]);
});

t.test('semantic errors, all listed at once', async (t) => {
  const e = await errors(
    [
      'services:', //                                          1
      '  web:', //                                             2
      '    image: busybox', //                                 3
      '    networks: [front, back]', //                        4
      '    depends_on: [api]', //                              5
      '    deploy:', //                                        6
      '      placement:', //                                   7
      '        constraints:', //                               8
      '          - node.role == manager', //                   9
      '          - node.zone == east', //                      10
      '          - node.labels.zone = east', //                11
      '  api:', //                                             12
      '    command: ["true"]', //                              13
      '    depends_on:', //                                    14
      '      db: {condition: service_healthy}', //             15
      '  db:', //                                              16
      '    image: busybox', //                                 17
      '    depends_on: [web, nosuch]', //                      18
      '  agent:', //                                           19
      '    image: busybox', //                                 20
      '    deploy: {mode: global, replicas: 2}', //            21
      '  job:', //                                             22
      '    image: busybox', //                                 23
      '    deploy:', //                                        24
      '      mode: replicated-job', //                         25
      '      restart_policy: {condition: any}', //             26
      'networks:', //                                          27
      '  front:', //                                           28
      '',
    ].join('\n'),
  );
  t.same(e, [
    'FILE:4: services.web.networks[1]: network "back" is not declared under the top-level networks',
    'FILE:10: services.web.deploy.placement.constraints[1]: invalid constraint "node.zone == east": unknown key "node.zone" (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name> or engine.labels.<name>); did you mean "node.labels.zone"?',
    'FILE:11: services.web.deploy.placement.constraints[2]: invalid constraint "node.labels.zone = east": expected == or !=',
    'FILE:12: services.api: image is required (the image the service runs)',
    'FILE:18: services.db.depends_on[1]: service "nosuch" is not defined in this stack',
    'FILE:18: services.db.depends_on.web: dependency cycle: web -> api -> db -> web',
    'FILE:21: services.agent.deploy.replicas: replicas cannot be used with mode global (only replicated or replicated-job)',
    'FILE:26: services.job.deploy.restart_policy.condition: "any" cannot be used with mode replicated-job: a job\'s tasks are not run again once they succeed (use on-failure)',
  ]);
});

t.test('values are parsed: durations, sizes, cpus, ports', async (t) => {
  const e = await errors(
    [
      'services:',
      '  web:',
      '    image: busybox',
      '    stop_grace_period: 10x',
      '    healthcheck: {interval: 5x}',
      '    ports: ["80:80:80:80", "70000:80", "8000-8001:80"]',
      '    deploy:',
      '      resources:',
      '        limits: {cpus: lots, memory: 1q}',
      '',
    ].join('\n'),
  );
  t.same(e, [
    'FILE:4: services.web.stop_grace_period: must be a duration such as "10s", "1m30s" or "500ms" (got "10x")',
    'FILE:5: services.web.healthcheck.interval: must be a duration such as "10s", "1m30s" or "500ms" (got "5x")',
    'FILE:6: services.web.ports[0]: invalid port "80:80:80:80": expected [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]',
    'FILE:6: services.web.ports[1]: invalid port "70000:80": the published port must be a number (or range) between 1 and 65535',
    'FILE:6: services.web.ports[2]: invalid port "8000-8001:80": the published and target ranges must have the same size',
    'FILE:9: services.web.deploy.resources.limits.cpus: must be a number of CPUs such as 0.5 or "1.5" (got "lots")',
    'FILE:9: services.web.deploy.resources.limits.memory: must be a size such as "512M" or "1g" (got "1q")',
  ]);
  t.same(await errors('services:\n  web:\n    image: busybox\n    stop_grace_period: 10\n'), [
    'FILE:4: services.web.stop_grace_period: must be string (got 10)',
  ]);
});

t.test('defaults filled as Docker fills them', async (t) => {
  const { stack, warnings } = await load('services:\n  web:\n    image: busybox:latest\n', { name: 'demo' });
  t.same(warnings, []);
  t.equal(stack.name, 'demo');
  t.same(stack.services.web, {
    name: 'demo_web',
    image: 'busybox:latest',
    env: {},
    labels: {},
    stopGracePeriodMs: 10_000,
    ulimits: {},
    capAdd: [],
    capDrop: [],
    ports: [],
    networks: [{ network: 'default', name: 'demo_default', aliases: [] }],
    dependsOn: {},
    deploy: {
      mode: 'replicated',
      replicas: 1,
      placement: { constraints: [], preferences: [], maxReplicasPerNode: 0 },
      resources: { limits: {}, reservations: {} },
      restartPolicy: { condition: 'any', delayMs: 5000, maxAttempts: 0, windowMs: 0 },
      updateConfig: {
        parallelism: 1,
        delayMs: 0,
        failureAction: 'pause',
        monitorMs: 5000,
        maxFailureRatio: 0,
        order: 'stop-first',
      },
      rollbackConfig: {
        parallelism: 1,
        delayMs: 0,
        failureAction: 'pause',
        monitorMs: 5000,
        maxFailureRatio: 0,
        order: 'stop-first',
      },
      labels: {},
      endpointMode: 'vip',
    },
    extensions: {},
  });
  t.same(stack.networks, {
    default: {
      name: 'demo_default',
      driver: 'overlay',
      driverOpts: {},
      attachable: false,
      internal: false,
      labels: {},
      ipam: { config: [] },
      external: false,
    },
  });

  const hc = await load(
    'services:\n  web:\n    image: b\n    healthcheck:\n      test: curl -f http://localhost\n',
  );
  t.same(hc.stack.services.web!.healthcheck, {
    test: ['CMD-SHELL', 'curl -f http://localhost'],
    intervalMs: 30_000,
    timeoutMs: 30_000,
    startPeriodMs: 0,
    startIntervalMs: 5_000,
    retries: 3,
  });
  const global = await load(
    'services:\n  a:\n    image: b\n    deploy: {mode: global}\n  j:\n    image: b\n    deploy: {mode: replicated-job}\n',
  );
  t.equal(global.stack.services.a!.deploy.replicas, undefined, 'no replicas for global');
  t.equal(global.stack.services.j!.deploy.replicas, 1);
  t.equal(
    global.stack.services.j!.deploy.restartPolicy.condition,
    'on-failure',
    'jobs restart on failure only',
  );
});

t.test('a full service is normalised', async (t) => {
  const { stack } = await load(
    [
      'name: fromfile',
      'services:',
      '  web:',
      '    image: busybox',
      '    command: httpd -f -p "8080" -h \'/var/www\'',
      '    entrypoint: ["/bin/sh", "-c"]',
      '    environment: ["A=1", "B", "C="]',
      '    working_dir: /srv',
      '    user: "1000:1000"',
      '    hostname: web1',
      '    labels: {com.example.role: web}',
      '    stop_grace_period: 1m30s',
      '    stop_signal: SIGINT',
      '    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}',
      '    cap_add: [net_admin, CAP_SYS_TIME]',
      '    cap_drop: [ALL]',
      '    healthcheck:',
      '      test: ["CMD", "wget", "-q", "http://localhost:8080"]',
      '      interval: 10s',
      '      timeout: 2s',
      '      start_period: 500ms',
      '      retries: 5',
      '    ports:',
      '      - "8080:80"',
      '      - "9000-9001:9000-9001/udp"',
      '      - 443',
      '      - target: 22',
      '        published: "2222"',
      '        mode: host',
      '    networks:',
      '      front:',
      '        aliases: [www]',
      '      outside:',
      '    x-tsswarm: {spread: zones, nested: [1, 2]}',
      '    deploy:',
      '      replicas: "4"',
      '      endpoint_mode: vip',
      '      labels: [com.example.svc=web, flag]',
      '      placement:',
      '        constraints: [node.role==worker, "node.labels.zone != east"]',
      '        preferences: [{spread: node.labels.zone}]',
      '        max_replicas_per_node: 2',
      '      resources:',
      '        limits: {cpus: "1.5", memory: 512M, pids: 200}',
      '        reservations: {cpus: 0.25, memory: 1g}',
      '      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3, window: 2m}',
      '      update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 30s, max_failure_ratio: 0.5, order: start-first}',
      '      rollback_config: {parallelism: 0, failure_action: continue}',
      'networks:',
      '  front:',
      '    driver: overlay',
      '    attachable: true',
      '    internal: "true"',
      '    labels: {tier: front}',
      '    driver_opts: {encrypted: ""}',
      '    ipam:',
      '      config: [{subnet: 10.20.0.0/24, gateway: 10.20.0.1}]',
      '  outside:',
      '    external: true',
      '    name: shared-net',
      '  unused:',
      '',
    ].join('\n'),
    { name: undefined, env: { B: 'from-env' } },
  );
  t.equal(stack.name, 'fromfile', 'the top-level name is the default stack name');
  const web = stack.services.web!;
  t.same(web.command, ['httpd', '-f', '-p', '8080', '-h', '/var/www']);
  t.same(web.entrypoint, ['/bin/sh', '-c']);
  t.same(web.env, { A: '1', B: 'from-env', C: '' });
  t.equal(web.workingDir, '/srv');
  t.equal(web.user, '1000:1000');
  t.equal(web.hostname, 'web1');
  t.same(web.labels, { 'com.example.role': 'web' });
  t.equal(web.stopGracePeriodMs, 90_000);
  t.equal(web.stopSignal, 'SIGINT');
  t.same(web.ulimits, { nofile: { soft: 1024, hard: 2048 }, nproc: { soft: 512, hard: 512 } });
  t.same(web.capAdd, ['CAP_NET_ADMIN', 'CAP_SYS_TIME']);
  t.same(web.capDrop, ['ALL']);
  t.same(web.healthcheck, {
    test: ['CMD', 'wget', '-q', 'http://localhost:8080'],
    intervalMs: 10_000,
    timeoutMs: 2_000,
    startPeriodMs: 500,
    startIntervalMs: 5_000,
    retries: 5,
  });
  t.same(web.ports, [
    { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' },
    { target: 9000, published: 9000, protocol: 'udp', mode: 'ingress' },
    { target: 9001, published: 9001, protocol: 'udp', mode: 'ingress' },
    { target: 443, protocol: 'tcp', mode: 'ingress' },
    { target: 22, published: 2222, protocol: 'tcp', mode: 'host' },
  ]);
  t.same(web.networks, [
    { network: 'front', name: 'fromfile_front', aliases: ['www'] },
    { network: 'outside', name: 'shared-net', aliases: [] },
  ]);
  t.same(web.extensions, { 'x-tsswarm': { spread: 'zones', nested: [1, 2] } }, 'x-tsswarm passes through');
  t.same(web.deploy, {
    mode: 'replicated',
    replicas: 4,
    placement: {
      constraints: ['node.role==worker', 'node.labels.zone != east'],
      preferences: [{ spread: 'node.labels.zone' }],
      maxReplicasPerNode: 2,
    },
    resources: {
      limits: { nanoCpus: 1_500_000_000, memoryBytes: 512 * 1024 ** 2, pids: 200 },
      reservations: { nanoCpus: 250_000_000, memoryBytes: 1024 ** 3 },
    },
    restartPolicy: { condition: 'on-failure', delayMs: 2000, maxAttempts: 3, windowMs: 120_000 },
    updateConfig: {
      parallelism: 2,
      delayMs: 10_000,
      failureAction: 'rollback',
      monitorMs: 30_000,
      maxFailureRatio: 0.5,
      order: 'start-first',
    },
    rollbackConfig: {
      parallelism: 0,
      delayMs: 0,
      failureAction: 'continue',
      monitorMs: 5000,
      maxFailureRatio: 0,
      order: 'stop-first',
    },
    labels: { 'com.example.svc': 'web', flag: '' },
    endpointMode: 'vip',
  });
  t.same(Object.keys(stack.networks), ['front', 'outside'], 'only networks a service uses');
  t.same(stack.networks.front, {
    name: 'fromfile_front',
    driver: 'overlay',
    driverOpts: { encrypted: '' },
    attachable: true,
    internal: true,
    labels: { tier: 'front' },
    ipam: { config: [{ subnet: '10.20.0.0/24', gateway: '10.20.0.1' }] },
    external: false,
  });
  t.equal(stack.networks.outside!.external, true);
  t.equal(stack.networks.outside!.name, 'shared-net');
});

t.test('unsupported keys are warnings with their lines, never dropped silently', async (t) => {
  const r = await load(
    [
      'services:', // 1
      '  web:', // 2
      '    image: busybox', // 3
      '    volumes: [data:/data]', // 4
      '    secrets: [token]', // 5
      '    privileged: true', // 6
      '    logging: {driver: json-file}', // 7
      '    ports:', // 8
      '      - "127.0.0.1:8080:80"', // 9
      '    deploy:', // 10
      '      resources:', // 11
      '        reservations:', // 12
      '          devices: [{capabilities: [gpu]}]', // 13
      '  built: {image: reg.example/built:1, build: {context: ./app, network: host, args: {A: b}}}', // 14
      '  # built is built by deploy', // 15
      'volumes:', // 16
      '  data:', // 17
      'secrets:', // 18
      '  token: {file: ./token}', // 19
      'networks:', // 20
      '  spare:', // 21
      '',
    ].join('\n'),
  );
  t.same(warningsOf(r), [
    'FILE:4: services.web.volumes: not supported by tsswarm yet; ignored',
    'FILE:5: services.web.secrets: not supported by tsswarm yet; ignored',
    'FILE:6: services.web.privileged: not supported by tsswarm yet; ignored',
    'FILE:7: services.web.logging: not supported by tsswarm yet; ignored',
    'FILE:9: services.web.ports[0]: the host IP 127.0.0.1 is not supported (ports are published on all addresses); ignored',
    'FILE:13: services.web.deploy.resources.reservations.devices: not supported by tsswarm yet; ignored',
    'FILE:14: services.built.build.network: not supported by tsswarm build; ignored',
    'FILE:16: volumes: not supported by tsswarm yet; ignored',
    'FILE:18: secrets: not supported by tsswarm yet; ignored',
    'FILE:21: networks.spare: network "spare" is not used by any service; not created',
  ]);
  t.equal(r.stack.services.built!.image, 'reg.example/built:1');
  t.match(r.stack.services.built!.build, { dockerfile: 'Dockerfile', args: { A: 'b' } });
  t.match(r.stack.services.built!.build!.context, /\/app$/, 'context resolved beside the stack file');
});

t.test('interpolation: environment, .env beside the file, precedence, $$, :? with its line', async (t) => {
  const text = [
    'services:',
    '  web:',
    '    image: busybox:${TAG}',
    '    environment:',
    '      FROM_DOTENV: $ONLY_DOTENV',
    '      BOTH: ${BOTH}',
    '      DEFAULTED: ${NOPE:-fallback}',
    '      LITERAL: $$HOME and $${X}',
    '      QUOTED: "${TAG}"',
    '    deploy:',
    '      replicas: ${REPLICAS:-2}',
    '',
  ].join('\n');
  const dotenv = '# local settings\nTAG=1.36\nONLY_DOTENV=dot\nBOTH=from-dotenv\n';
  const r = await load(text, { env: { BOTH: 'from-env' } }, { '.env': dotenv });
  const web = r.stack.services.web!;
  t.equal(web.image, 'busybox:1.36');
  t.same(web.env, {
    FROM_DOTENV: 'dot',
    BOTH: 'from-env',
    DEFAULTED: 'fallback',
    LITERAL: '$HOME and ${X}',
    QUOTED: '1.36',
  });
  t.equal(web.deploy.replicas, 2);
  t.same(r.warnings, []);

  const unset = await load('services:\n  web:\n    image: busybox\n    hostname: h${SUFFIX}\n');
  t.same(warningsOf(unset), [
    'FILE:4: services.web.hostname: the "SUFFIX" variable is not set; defaulting to a blank string',
  ]);
  t.equal(unset.stack.services.web!.hostname, 'h');

  t.same(
    await errors(
      'services:\n  web:\n    image: busybox\n    command:\n      - sh\n      - -c\n      - |\n        echo start\n        echo ${DB_URL:?set DB_URL to the database address}\n',
    ),
    [
      'FILE:9: services.web.command[2]: required variable DB_URL is missing a value: set DB_URL to the database address',
    ],
    'the line of the variable inside a block scalar',
  );
  t.same(await errors('services:\n  web:\n    image: "busybox:${TAG?}"\n    user: "$ 1"\n'), [
    'FILE:3: services.web.image: required variable TAG is missing a value',
    'FILE:4: services.web.user: invalid interpolation format "$ 1" (write $$ for a literal $)',
  ]);
  t.same(await errors('services:\n  web:\n    image: busybox\n', {}, { '.env': 'BAD LINE\n' }), [
    `${join(tmp, `case${cases}`, '.env')}:1: invalid line "BAD LINE": expected KEY=VALUE`,
  ]);
});

t.test('env_file: relative to the stack file, merged under environment', async (t) => {
  const file = await write({
    'stack.yml': [
      'services:',
      '  web:',
      '    image: busybox',
      '    env_file: [conf/common.env, {path: conf/missing.env, required: false}, conf/web.env]',
      '    environment: {OVERRIDE: from-environment}',
      '  db:',
      '    image: busybox',
      '    env_file: conf/nope.env',
      '',
    ].join('\n'),
  });
  const dir = dirname(file);
  await mkdir(join(dir, 'conf'));
  await writeFile(join(dir, 'conf/common.env'), 'A=1\nOVERRIDE=from-file\nSHARED=common\n');
  await writeFile(join(dir, 'conf/web.env'), 'SHARED=web\nFROM_HOST=${HOST_VAR}\n');
  await t.rejects(
    loadStack(file, { env: { HOST_VAR: 'h' } }),
    { message: `${file}:8: services.db.env_file: env file ${join(dir, 'conf/nope.env')} not found` },
    'a missing required env file names the line that asks for it',
  );
  await writeFile(join(dir, 'conf/nope.env'), '');
  const r = await loadStack(file, { env: { HOST_VAR: 'h' } });
  t.same(r.stack.services.web!.env, { A: '1', OVERRIDE: 'from-environment', SHARED: 'web', FROM_HOST: 'h' });
  t.equal(r.stack.name, `case${cases}`, 'the default stack name is the directory name');
});

t.test('anchors, aliases and << merge keys', async (t) => {
  const { stack } = await load(
    [
      'x-defaults: &defaults',
      '  image: busybox:latest',
      '  environment: &env {A: "1"}',
      '  deploy:',
      '    replicas: 2',
      'services:',
      '  web:',
      '    <<: *defaults',
      '    deploy: {replicas: 3}',
      '  worker:',
      '    <<: *defaults',
      '    labels: *env',
      '',
    ].join('\n'),
  );
  t.equal(stack.services.web!.image, 'busybox:latest');
  t.equal(stack.services.web!.deploy.replicas, 3, 'keys written beside << win');
  t.equal(stack.services.worker!.deploy.replicas, 2);
  t.same(stack.services.worker!.env, { A: '1' });
  t.same(stack.services.worker!.labels, { A: '1' });
  t.same(await errors('services:\n  web:\n    image: *nope\n'), [
    'FILE:3: services.web.image: unknown alias *nope',
  ]);
});

t.test('version: 3.x or none', async (t) => {
  t.ok(await load('version: 3.8\nservices:\n  web:\n    image: b\n'), 'an unquoted 3.8 is read as "3.8"');
  t.ok(await load('version: "3"\nservices:\n  web:\n    image: b\n'));
  t.same(await errors('version: "2.4"\nservices:\n  web:\n    image: b\n'), [
    'FILE:1: version: unsupported Compose file version "2.4": tsswarm reads version 3.x files and files without a version',
  ]);
});

t.test('networks, ports and endpoint checks across the stack', async (t) => {
  t.same(
    await errors(
      [
        'services:',
        '  a:',
        '    image: b',
        '    ports: ["8080:80"]',
        '  c:',
        '    image: b',
        '    ports: [{target: 81, published: 8080}]',
        '    deploy: {endpoint_mode: dnsrr}',
        'networks:',
        '  ext:',
        '    external: true',
        '    driver: overlay',
        '',
      ].join('\n'),
    ),
    [
      'FILE:7: services.c.ports[0]: a port published in ingress mode needs endpoint_mode vip (use mode: host with dnsrr)',
      'FILE:7: services.c.ports[0]: port 8080/tcp is already published at FILE:4 (services.a.ports[0])',
    ],
  );
  const { stack } = await load(
    'services:\n  a:\n    image: b\n    networks: [default]\nnetworks:\n  default:\n    attachable: true\n',
  );
  t.same(stack.networks.default!.attachable, true, 'a declared default network is used for <stack>_default');
  t.equal(stack.networks.default!.name, 's_default');
});

t.test('several files merge, later ones overriding (as docker compose -f a -f b)', async (t) => {
  const base = await write({
    'base.yml': [
      'services:',
      '  web:',
      '    image: busybox:1',
      '    command: ["a", "b"]',
      '    environment: [A=1, B=2]',
      '    ports: ["80:80"]',
      '    networks: [front]',
      '    deploy:',
      '      replicas: 2',
      '      labels: {x: "1"}',
      'networks:',
      '  front:',
      '',
    ].join('\n'),
    'prod.yml': [
      'services:',
      '  web:',
      '    image: busybox:2',
      '    command: c',
      '    environment: {B: "3", C: "4"}',
      '    ports: ["80:80", "443:443"]',
      '    networks: {back: {aliases: [w]}}',
      '    deploy:',
      '      replicas: ${R}',
      '  extra:',
      '    image: busybox',
      'networks:',
      '  back:',
      '',
    ].join('\n'),
  });
  const prod = join(dirname(base), 'prod.yml');
  const r = await loadStack([base, prod], { name: 'm', env: { R: 'five' } }).catch((e: Error) => e.message);
  t.equal(
    r,
    `${prod}:9: services.web.deploy.replicas: must be integer (got "five")`,
    'errors name the file that set the value',
  );
  const { stack } = await loadStack([base, prod], { name: 'm', env: { R: '5' } });
  const web = stack.services.web!;
  t.equal(web.image, 'busybox:2');
  t.same(web.command, ['c']);
  t.same(web.env, { A: '1', B: '3', C: '4' });
  t.same(
    web.ports.map((p) => p.target),
    [80, 443],
  );
  t.same(
    web.networks.map((n) => [n.network, n.aliases]),
    [
      ['front', []],
      ['back', ['w']],
    ],
  );
  t.equal(web.deploy.replicas, 5);
  t.same(web.deploy.labels, { x: '1' });
  t.ok(stack.services.extra);
});

t.test('the stack files in stacks/ pass', async (t) => {
  for (const [file, name] of [
    ['stacks/web.yml', 'web'],
    ['stacks/jobs.yml', 'jobs'],
  ] as const) {
    const r = await loadStack(join(repo, file), { name, env: {} });
    t.same(r.warnings, [], `${file}: no warnings`);
    t.ok(Object.keys(r.stack.services).length > 0, `${file}: has services`);
    t.ok(renderStack(r.stack, 'yaml').includes(`name: ${name}_`));
    t.same(JSON.parse(renderStack(r.stack, 'json')), JSON.parse(JSON.stringify(r.stack)));
  }
  const web = await loadStack(join(repo, 'stacks/web.yml'), { name: 'web', env: { WEB_REPLICAS: '5' } });
  t.equal(web.stack.services.httpd!.deploy.replicas, 5);
  const jobs = await loadStack(join(repo, 'stacks/jobs.yml'), { name: 'jobs', env: {} });
  t.same(
    Object.values(jobs.stack.services).map((s) => s.deploy.mode),
    ['global', 'replicated-job', 'replicated-job'],
  );
  t.same(jobs.stack.services.cleanup!.schedule, {
    cron: '*/5 * * * *',
    timezone: 'Europe/Berlin',
    concurrency: 'forbid',
    history: 10,
    missed: 'run-once',
  });
});

t.test('bad stack names are refused', async (t) => {
  const file = await write({ 'stack.yml': 'services:\n  web:\n    image: b\n' });
  await t.rejects(loadStack(file, { name: 'no spaces', env: {} }), /invalid stack name "no spaces"/);
  await t.rejects(loadStack(join(tmp, 'missing.yml'), { env: {} }), /stack file .*missing.yml not found/);
});
