import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { ServiceRecord } from '../src/api/cluster.js';
import { startSwarmDaemon } from './lib/swarm.js';

const loop = 'trap "exit 0" TERM; while true; do sleep 0.1; done';
const stackFile = (extra = '') => `services:
  db:
    image: busybox:test
    command: ["sh", "-c", ${JSON.stringify(loop)}]
  web:
    image: busybox:test
    command: ["sh", "-c", ${JSON.stringify(loop)}]
    environment:
      GREETING: \${GREETING:-hello}
    depends_on: [db]
    deploy:
      replicas: \${WEB_REPLICAS:-2}
      update_config:
        parallelism: 2
        monitor: 200ms
${extra}`;

t.test(
  'deploy: a stack file becomes services; redeploy is idempotent; changes roll out; bad files change nothing',
  async (t) => {
    const d = await startSwarmDaemon(t);
    const dir = join(d.dir, 'stack');
    await fs.mkdir(dir);
    const file = join(dir, 'stack.yml');
    await fs.writeFile(file, stackFile());
    const services = async () =>
      JSON.parse((await d.cli(['service', 'ls', '--format', 'json'])).stdout) as Array<
        ServiceRecord & { running: number }
      >;

    const first = await d.cli(['deploy', file, 'demo'], { timeoutMs: 120_000 });
    t.equal(first.code, 0, first.stderr);
    t.match(first.stdout, /Creating service demo_db/);
    t.match(first.stdout, /Creating service demo_web/);
    t.match(
      first.stderr,
      /demo_db 1\/1\s+demo_web 2\/2|demo_web 2\/2\s+demo_db 1\/1/,
      'progress until every service runs',
    );
    let svcs = await services();
    t.same(svcs.map((s) => [s.spec.name, s.running]).sort(), [
      ['demo_db', 1],
      ['demo_web', 2],
    ]);
    const web = svcs.find((s) => s.spec.name === 'demo_web')!;
    t.same(web.spec.dependsOn, ['demo_db'], 'depends_on is kept');
    t.ok(web.spec.container.env.includes('GREETING=hello'), 'interpolated with its default');

    const again = await d.cli(['deploy', file, 'demo'], { timeoutMs: 120_000 });
    t.equal(again.code, 0, again.stderr);
    t.notMatch(again.stdout, /Creating|Updating/, 'the same file again changes nothing');
    t.same((await services()).map((s) => s.version).sort(), svcs.map((s) => s.version).sort());

    const scaled = await d.cli(['deploy', file, 'demo'], {
      env: { WEB_REPLICAS: '3', GREETING: 'bonjour' },
      timeoutMs: 120_000,
    });
    t.equal(scaled.code, 0, scaled.stderr);
    t.match(scaled.stdout, /Updating service demo_web/);
    svcs = await services();
    const web2 = svcs.find((s) => s.spec.name === 'demo_web')!;
    t.equal(web2.running, 3);
    t.equal(web2.version, web.version + 1, 'a changed environment is a new version, rolled out');

    const ls = await d.cli(['stack', 'ls']);
    t.match(ls.stdout, /demo\s+2/);
    t.match((await d.cli(['stack', 'ps', 'demo'])).stdout, /demo_web\.3/);

    await t.test('bad stack files are refused with FILE:LINE and change nothing', async (t) => {
      const bad = join(dir, 'bad.yml');
      await fs.writeFile(bad, 'services:\n  web:\n    imagee: busybox:test\n');
      const r = await d.cli(['deploy', bad, 'demo']);
      t.equal(r.code, 125);
      t.match(r.stderr, /bad\.yml:3: services\.web: unknown key "imagee"/);
      const undef = join(dir, 'undef.yml');
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a compose variable, not a JS template
      await fs.writeFile(undef, 'services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image to run}\n');
      const u = await d.cli(['deploy', undef, 'demo']);
      t.match(u.stderr, /undef\.yml:3: .*set IMAGE to the image to run/);
      const cases: Array<[string, string, RegExp]> = [
        ['syntax.yml', 'services:\n  web:\n    image: [unclosed\n', /syntax\.yml:\d+: invalid YAML/],
        [
          'type.yml',
          'services:\n  web:\n    image: busybox:test\n    deploy:\n      replicas: many\n',
          /type\.yml:5: services\.web\.deploy\.replicas: must be integer \(got "many"\)/,
        ],
        [
          'constraint.yml',
          'services:\n  web:\n    image: busybox:test\n    deploy:\n      placement:\n        constraints: ["node.zone=>a"]\n',
          /constraint\.yml:6: .*invalid constraint "node\.zone=>a"/,
        ],
        [
          'noimage.yml',
          'services:\n  web:\n    command: ["true"]\n',
          /noimage\.yml:2: services\.web: image is required/,
        ],
      ];
      for (const [name, text, want] of cases) {
        await fs.writeFile(join(dir, name), text);
        const r = await d.cli(['deploy', join(dir, name), 'demo']);
        t.equal(r.code, 125, name);
        t.match(r.stderr, want, name);
      }
      t.same(
        (await services()).map((s) => s.version).sort(),
        svcs.map((s) => s.version).sort(),
        'nothing changed',
      );
    });

    await t.test('a service that cannot be placed makes deploy fail, saying why', async (t) => {
      const stuck = join(dir, 'stuck.yml');
      await fs.writeFile(
        stuck,
        `services:\n  nowhere:\n    image: busybox:test\n    deploy:\n      placement:\n        constraints: [node.labels.zone==b]\n`,
      );
      const r = await d.cli(['deploy', '--timeout', '3', stuck, 'stuck'], { timeoutMs: 60_000 });
      t.equal(r.code, 125);
      t.match(r.stderr, /no suitable node \(scheduling constraints not satisfied on 1 node\)/);
      t.match(r.stderr, /did not converge within 3s/);
      t.equal((await d.cli(['stack', 'rm', 'stuck'])).code, 0);
    });

    await t.test(
      'jobs, published ports and depends_on a job: deploy waits for the completions',
      async (t) => {
        const jobs = join(dir, 'jobs.yml');
        await fs.writeFile(
          jobs,
          `services:
  migrate:
    image: busybox:test
    command: ["true"]
    deploy: { mode: replicated-job, replicas: 2 }
  api:
    image: busybox:test
    command: ["sh", "-c", ${JSON.stringify(loop)}]
    depends_on: [migrate]
    ports:
      - { target: 80, published: 18090, mode: host }
      - "18091:81/udp"
  once:
    image: busybox:test
    command: ["true"]
    deploy: { mode: global-job }
`,
        );
        const r = await d.cli(['deploy', jobs, 'jobs'], { timeoutMs: 120_000 });
        t.equal(r.code, 0, r.stderr);
        t.match(r.stderr, /jobs_migrate 2\/2 completed/, 'progress counts completions');
        t.match(r.stderr, /jobs_once 1\/1 completed/);
        const listed = JSON.parse(
          (await d.cli(['stack', 'services', '--format', 'json', 'jobs'])).stdout,
        ) as Array<ServiceRecord & { running: number; completed?: number; total?: number }>;
        const byName = new Map(listed.map((s) => [s.spec.name, s]));
        t.match(byName.get('jobs_migrate'), {
          spec: { mode: 'replicated-job', replicas: 2 },
          completed: 2,
          total: 2,
        });
        t.match(byName.get('jobs_once'), { spec: { mode: 'global-job' }, completed: 1, total: 1 });
        t.match(byName.get('jobs_api'), {
          running: 1,
          spec: {
            dependsOn: ['jobs_migrate'],
            endpoint: {
              ports: [
                { target: 80, published: 18090, protocol: 'tcp', mode: 'host' },
                { target: 81, published: 18091, protocol: 'udp', mode: 'ingress' },
              ],
            },
          },
        });
        t.match(
          (await d.cli(['stack', 'services', 'jobs'])).stdout,
          /jobs_migrate\s+replicated-job\s+0\/0 \(2\/2 completed\)/,
        );
        const ps = JSON.parse((await d.cli(['stack', 'ps', '--format', 'json', 'jobs'])).stdout) as Array<{
          serviceName: string;
          status: { state: string };
        }>;
        t.equal(
          ps.filter((x) => x.serviceName === 'jobs_migrate' && x.status.state === 'complete').length,
          2,
        );
        const again = await d.cli(['deploy', jobs, 'jobs'], { timeoutMs: 120_000 });
        t.equal(again.code, 0, again.stderr);
        t.notMatch(
          again.stdout,
          /Creating|Updating/,
          'the same file again changes nothing, jobs and ports included',
        );
        const psAgain = JSON.parse(
          (await d.cli(['stack', 'ps', '--format', 'json', 'jobs'])).stdout,
        ) as unknown[];
        t.equal(psAgain.length, ps.length, 'and runs no job again');
        t.equal((await d.cli(['stack', 'rm', 'jobs'])).code, 0);
      },
    );

    await t.test('--prune removes services no longer in the file; stack rm removes the rest', async (t) => {
      await fs.writeFile(
        file,
        stackFile()
          .replace(/ {2}db:[\s\S]*?(?= {2}web:)/, '')
          .replace('    depends_on: [db]\n', ''),
      );
      const p = await d.cli(['deploy', '--prune', file, 'demo'], { timeoutMs: 120_000 });
      t.equal(p.code, 0, p.stderr);
      t.match(p.stdout, /Removing service demo_db/);
      t.same(
        (await services()).map((s) => s.spec.name),
        ['demo_web'],
      );
      const rm = await d.cli(['stack', 'rm', 'demo']);
      t.match(rm.stdout, /Removing service demo_web/);
      t.same(await services(), []);
      const none = await d.cli(['stack', 'rm', 'demo']);
      t.match(none.stderr, /no such stack: demo/);
    });
  },
);
