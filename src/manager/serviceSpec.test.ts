import t, { type Test } from 'tap';
import { TsswarmError } from '../api/errors.js';
import {
  hostPortsOf,
  normalizeServiceSpec,
  parsePlacementPref,
  parsePublish,
  updatePorts,
  updatePreferences,
} from './serviceSpec.js';

/** The message of the invalid_argument error `fn` throws. */
function refused(t: Test, fn: () => unknown, msg: RegExp, what = String(msg)): void {
  try {
    fn();
    t.fail(`${what}: accepted`);
  } catch (e) {
    t.ok(e instanceof TsswarmError && e.code === 'invalid_argument', `${what}: invalid_argument`);
    t.match((e as Error).message, msg, what);
  }
}

t.test('jobs: modes accepted, replicas and max concurrent, restart on failure by default', async (t) => {
  const rj = normalizeServiceSpec({ name: 'batch', image: 'busybox', mode: 'replicated-job', replicas: 5 });
  t.match(rj, {
    mode: 'replicated-job',
    replicas: 5,
    restartPolicy: { condition: 'on-failure', delayMs: 5000 },
  });
  t.equal(rj.maxConcurrent, undefined, 'all at once unless told');
  t.equal(normalizeServiceSpec({ name: 'b', image: 'x', mode: 'replicated-job' }).replicas, 1);
  const mc = normalizeServiceSpec({
    name: 'b',
    image: 'x',
    mode: 'replicated-job',
    replicas: 5,
    maxConcurrent: 2,
  });
  t.equal(mc.maxConcurrent, 2);
  const gj = normalizeServiceSpec({ name: 'g', image: 'x', mode: 'global-job' });
  t.match(gj, { mode: 'global-job', replicas: 0, restartPolicy: { condition: 'on-failure' } });
  const partial = normalizeServiceSpec({
    name: 'g',
    image: 'x',
    mode: 'global-job',
    restartPolicy: { delayMs: 100 },
  });
  t.same(partial.restartPolicy, { condition: 'on-failure', delayMs: 100, maxAttempts: 0, windowMs: 0 });
  t.equal(normalizeServiceSpec({ name: 's', image: 'x' }).restartPolicy.condition, 'any', 'services: any');
  t.equal(
    normalizeServiceSpec({
      name: 'j',
      image: 'x',
      mode: 'replicated-job',
      restartPolicy: { condition: 'none' },
    }).restartPolicy.condition,
    'none',
  );
  refused(
    t,
    () =>
      normalizeServiceSpec({
        name: 'j',
        image: 'x',
        mode: 'global-job',
        restartPolicy: { condition: 'any' },
      }),
    /restart condition "any" cannot be used with mode global-job/,
  );
  refused(
    t,
    () => normalizeServiceSpec({ name: 'g', image: 'x', mode: 'global-job', replicas: 4 }),
    /replicas can only be used with mode replicated or replicated-job \(this service is global-job\)/,
  );
  refused(
    t,
    () => normalizeServiceSpec({ name: 'j', image: 'x', mode: 'replicated', maxConcurrent: 2 }),
    /max concurrent can only be used with mode replicated-job/,
  );
  refused(
    t,
    () => normalizeServiceSpec({ name: 'j', image: 'x', mode: 'replicated-job', maxConcurrent: 0 }),
    /invalid max concurrent "0"/,
  );
  refused(
    t,
    () => normalizeServiceSpec({ name: 'j', image: 'x', mode: 'cron' as 'global' }),
    /unsupported mode "cron": replicated, global, replicated-job or global-job/,
  );
});

t.test('placement preferences are checked and normalised', async (t) => {
  const s = normalizeServiceSpec({
    name: 'w',
    image: 'x',
    preferences: [{ spread: 'NODE.labels.zone' }, { spread: 'engine.labels.rack' }],
  });
  t.same(s.preferences, [{ spread: 'node.labels.zone' }, { spread: 'engine.labels.rack' }]);
  refused(
    t,
    () => normalizeServiceSpec({ name: 'w', image: 'x', preferences: [{ spread: 'zone' }] }),
    /invalid placement preference: invalid spread "zone": expected node.labels.<name>/,
  );
  t.same(parsePlacementPref('spread=node.labels.zone'), { spread: 'node.labels.zone' });
  refused(t, () => parsePlacementPref('node.labels.zone'), /expected spread=node.labels.<name>/);
  refused(t, () => parsePlacementPref('binpack=node.labels.zone'), /spread is the only strategy/);
  refused(t, () => parsePlacementPref('spread=node.zone'), /invalid spread "node.zone"/);
  t.same(
    updatePreferences(
      [{ spread: 'node.labels.zone' }, { spread: 'node.labels.rack' }],
      ['spread=node.labels.dc', 'spread=node.labels.rack'],
      ['spread=node.labels.zone'],
    ),
    [{ spread: 'node.labels.rack' }, { spread: 'node.labels.dc' }],
    'removed, then added once',
  );
});

t.test('--publish: short and long syntax, ranges, and every kind of mistake', async (t) => {
  t.same(parsePublish('8080:80'), [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }]);
  t.same(parsePublish('53:53/udp'), [{ target: 53, published: 53, protocol: 'udp', mode: 'ingress' }]);
  t.same(parsePublish('80'), [{ target: 80, protocol: 'tcp', mode: 'ingress' }], 'target only');
  t.same(
    parsePublish('8080-8081:80-81'),
    [
      { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' },
      { target: 81, published: 8081, protocol: 'tcp', mode: 'ingress' },
    ],
    'a range is one port each',
  );
  t.same(parsePublish('published=8080,target=80,protocol=udp,mode=host'), [
    { target: 80, published: 8080, protocol: 'udp', mode: 'host' },
  ]);
  t.same(parsePublish('mode=host, target=80'), [{ target: 80, protocol: 'tcp', mode: 'host' }]);
  const bad: Array<[string, RegExp]> = [
    ['abc', /invalid publish "abc": the target port must be a number/],
    ['0:80', /invalid publish "0:80": the published port must be a number .* between 1 and 65535/],
    ['70000:80', /the published port must be a number .* between 1 and 65535/],
    ['8080:0', /the target port must be a number .* between 1 and 65535/],
    ['8080:80/xyz', /protocol must be tcp, udp or sctp/],
    ['127.0.0.1:8080:80', /a host IP is not supported/],
    ['8080-8082:80-81', /same size/],
    ['published=8080', /target is required/],
    ['published=8080,target=99999', /target must be a port between 1 and 65535/],
    ['published=0,target=80', /published must be a port between 1 and 65535/],
    ['target=80,protocol=icmp', /protocol must be tcp, udp or sctp/],
    ['target=80,mode=bridge', /mode must be ingress or host/],
    ['target=80,host_ip=1.2.3.4', /unknown field "host_ip"/],
    ['target=', /field "target" needs a value/],
  ];
  for (const [text, msg] of bad) refused(t, () => parsePublish(text), msg, text);
});

t.test('published ports in the spec: defaults, checks, host ports for the scheduler', async (t) => {
  const s = normalizeServiceSpec({
    name: 'w',
    image: 'x',
    endpoint: {
      ports: [
        { target: 80, published: 8080 } as never,
        { target: 443, published: 8443, protocol: 'tcp', mode: 'host' },
        { target: 53, published: 53, protocol: 'udp', mode: 'host' },
        { target: 9000, protocol: 'tcp', mode: 'host' },
      ],
    },
  });
  t.same(s.endpoint?.ports[0], { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' });
  t.same(
    hostPortsOf(s.endpoint?.ports),
    [
      { port: 8443, protocol: 'tcp' },
      { port: 53, protocol: 'udp' },
    ],
    'host mode with a published number only',
  );
  t.same(hostPortsOf(undefined), []);
  t.equal(normalizeServiceSpec({ name: 'w', image: 'x', endpoint: { ports: [] } }).endpoint, undefined);
  t.same(normalizeServiceSpec({ name: 'w', image: 'x', endpoint: { mode: 'dnsrr', ports: [] } }).endpoint, {
    mode: 'dnsrr',
    ports: [],
  });
  const port = (p: object) => () =>
    normalizeServiceSpec({ name: 'w', image: 'x', endpoint: { ports: [p as never] } });
  refused(t, port({ target: 0 }), /invalid target port 0: expected 1-65535/);
  refused(t, port({ target: 80, published: 65536 }), /invalid published port 65536/);
  refused(t, port({ target: 80, protocol: 'icmp' }), /invalid protocol "icmp" of port 80/);
  refused(t, port({ target: 80, mode: 'bridge' }), /invalid publish mode "bridge"/);
  refused(t, port({ target: '80' }), /invalid target port "80"/);
  refused(
    t,
    () =>
      normalizeServiceSpec({
        name: 'w',
        image: 'x',
        endpoint: { ports: [...parsePublish('8080:80'), ...parsePublish('8080:81')] },
      }),
    /port 8080\/tcp is published twice/,
  );
  refused(
    t,
    () =>
      normalizeServiceSpec({
        name: 'w',
        image: 'x',
        endpoint: { mode: 'dnsrr', ports: parsePublish('80:80') },
      }),
    /ingress mode needs endpoint mode vip/,
  );
});

t.test('--publish-add / --publish-rm', async (t) => {
  const cur = [...parsePublish('8080:80'), ...parsePublish('published=53,target=53,protocol=udp,mode=host')];
  t.same(
    updatePorts(cur, [], ['80']),
    parsePublish('published=53,target=53,protocol=udp,mode=host'),
    'by target',
  );
  t.same(updatePorts(cur, [], ['53']), cur, 'the protocol must match too');
  t.same(updatePorts(cur, [], ['53/udp']), parsePublish('8080:80'));
  t.same(updatePorts(cur, ['8080:80'], []), cur, 'an identical port is kept once');
  t.same(updatePorts(cur, ['9090:90'], ['8080:80']), [cur[1], ...parsePublish('9090:90')]);
  refused(t, () => updatePorts(cur, ['x'], []), /invalid publish "x"/);
});
