import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as packet from 'dns-packet';
import t from 'tap';
import { TsswarmError } from '../api/errors.js';
import { EmbeddedDns, parseUpstreams, type Resolver } from './dns.js';

const CLIENT = '10.0.1.10';
const NAMES: Record<string, string[]> = {
  web: ['10.0.1.2'],
  'tasks.web': ['10.0.1.10', '10.0.1.11', '10.0.1.12'],
  idle: [],
  many: Array.from({ length: 40 }, (_, i) => `10.0.2.${i + 1}`),
};
/** Knows NAMES for CLIENT only; records what it was asked. */
function resolver(calls: Array<[string, string]> = []): Resolver {
  return (client, qname) => {
    calls.push([client, qname]);
    return client === CLIENT ? NAMES[qname.toLowerCase()] : undefined;
  };
}

const query = (name: string, type: packet.RecordType = 'A', id = 4242) =>
  packet.encode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });

const rcodeOf = (d: packet.DecodedPacket) => (d.flags ?? 0) & 0xf;
const answersOf = (d: packet.DecodedPacket) =>
  (d.answers ?? []).map((a) => ({
    name: a.name,
    type: a.type,
    ttl: (a as { ttl?: number }).ttl,
    data: (a as { data?: unknown }).data,
  }));

async function ask(dns: EmbeddedDns, msg: Buffer, client = CLIENT): Promise<packet.DecodedPacket> {
  const out = await dns.answer(msg, client);
  if (!out) throw new Error('no reply');
  return packet.decode(out);
}

t.test('A: the addresses, TTL 0, id and question echoed', async (t) => {
  const calls: Array<[string, string]> = [];
  const dns = new EmbeddedDns(resolver(calls));
  const d = await ask(dns, query('web', 'A', 77));
  t.equal(d.type, 'response');
  t.equal(d.id, 77);
  t.equal(rcodeOf(d), 0);
  t.equal((d as { rcode?: string }).rcode, 'NOERROR');
  t.ok((d.flags ?? 0) & packet.AUTHORITATIVE_ANSWER, 'authoritative');
  t.same(d.questions, [{ name: 'web', type: 'A', class: 'IN' }]);
  t.same(answersOf(d), [{ name: 'web', type: 'A', ttl: 0, data: '10.0.1.2' }]);
  t.same(calls, [[CLIENT, 'web']], 'asked for the client and the name');

  const tasks = await ask(dns, query('tasks.web'));
  t.same(
    answersOf(tasks).map((a) => a.data),
    ['10.0.1.10', '10.0.1.11', '10.0.1.12'],
  );
  t.ok(answersOf(tasks).every((a) => a.ttl === 0 && a.type === 'A' && a.name === 'tasks.web'));
});

t.test('at most 32 answers', async (t) => {
  const d = await ask(new EmbeddedDns(resolver()), query('many'));
  t.equal(d.answers?.length, 32);
  t.equal(answersOf(d)[31]?.data, '10.0.2.32');
});

t.test('a known name with nothing running: NOERROR, no answers', async (t) => {
  const d = await ask(new EmbeddedDns(resolver()), query('idle'));
  t.equal(rcodeOf(d), 0);
  t.same(d.answers, []);
});

t.test('AAAA for a known name: NOERROR without answers (IPv4 only)', async (t) => {
  const d = await ask(new EmbeddedDns(resolver()), query('web', 'AAAA'));
  t.equal(rcodeOf(d), 0);
  t.equal((d as { rcode?: string }).rcode, 'NOERROR');
  t.same(d.answers, []);
  t.same(d.questions, [{ name: 'web', type: 'AAAA', class: 'IN' }]);
});

t.test('an unknown name without upstreams: NXDOMAIN', async (t) => {
  const dns = new EmbeddedDns(resolver());
  const d = await ask(dns, query('example.com', 'A', 9));
  t.equal(d.id, 9);
  t.equal(rcodeOf(d), 3);
  t.equal((d as { rcode?: string }).rcode, 'NXDOMAIN');
  t.same(d.answers, []);
  // a known name from a client the resolver does not know is unknown as well
  t.equal(rcodeOf(await ask(dns, query('web'), '10.9.9.9')), 3);
});

t.test('not a query, or no question: FORMERR; not DNS at all: no reply', async (t) => {
  const dns = new EmbeddedDns(resolver());
  const noQuestion = packet.encode({ type: 'query', id: 5, questions: [] });
  const d = await ask(dns, noQuestion);
  t.equal(rcodeOf(d), 1);
  t.equal(d.id, 5);
  const response = packet.encode({ type: 'response', id: 6, questions: [{ type: 'A', name: 'web' }] });
  t.equal(rcodeOf(await ask(dns, response)), 1);
  t.equal(await dns.answer(Buffer.from([1, 2, 3]), CLIENT), undefined);
  t.equal(await dns.answer(Buffer.alloc(0), CLIENT), undefined);
});

t.test('parseUpstreams: none, a list, an invalid address', async (t) => {
  t.same(parseUpstreams('none'), []);
  t.same(parseUpstreams('1.1.1.1'), ['1.1.1.1']);
  t.same(parseUpstreams('1.1.1.1, 8.8.8.8 ,9.9.9.9'), ['1.1.1.1', '8.8.8.8', '9.9.9.9']);
  for (const bad of ['dns.example', '1.1.1.1,::1', '1.1.1', '']) {
    try {
      parseUpstreams(bad);
      t.fail(`"${bad}" accepted`);
    } catch (e) {
      t.ok(e instanceof TsswarmError, `"${bad}": a typed error`);
      t.match((e as Error).message, /--dns-upstream/, `"${bad}": names the flag`);
    }
  }
});

t.test('parseUpstreams: absent reads the IPv4 nameservers of resolv.conf', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsswarm-dns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, 'resolv.conf');
  writeFileSync(
    conf,
    [
      '# generated',
      'search example.com',
      'nameserver 10.0.0.53',
      'nameserver ::1',
      'nameserver fe80::1%eth0',
      '  nameserver 192.168.1.1  ',
      '#nameserver 10.9.9.9',
      'options ndots:5',
      'nameserver 9.9.9.9',
      '',
    ].join('\n'),
  );
  t.same(parseUpstreams(undefined, conf), ['10.0.0.53', '192.168.1.1', '9.9.9.9']);
  t.same(parseUpstreams(undefined, join(dir, 'missing')), [], 'no file: no upstream');
  t.same(parseUpstreams('none', conf), [], 'none: the file is not read');
});

/** A UDP port free at the moment on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', res));
  const { port } = s.address();
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

t.test('listens on UDP and answers a query over the wire', async (t) => {
  const port = await freePort();
  const logs: string[] = [];
  const dns = new EmbeddedDns(
    (client, qname) => (client === '127.0.0.1' && qname === 'web' ? ['10.0.1.2', '10.0.1.3'] : undefined),
    [],
    (m) => logs.push(m),
    port,
  );
  t.teardown(() => dns.close());
  await dns.listen(['127.0.0.1']);
  t.same(dns.addresses, ['127.0.0.1']);

  const client = createSocket('udp4');
  t.teardown(() => client.close());
  const exchange = (msg: Buffer) =>
    new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer within 2s')), 2000);
      client.once('message', (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      client.send(msg, port, '127.0.0.1');
    });

  const d = packet.decode(await exchange(query('web', 'A', 1234)));
  t.equal(d.id, 1234);
  t.equal(rcodeOf(d), 0);
  t.same(answersOf(d), [
    { name: 'web', type: 'A', ttl: 0, data: '10.0.1.2' },
    { name: 'web', type: 'A', ttl: 0, data: '10.0.1.3' },
  ]);
  const nx = packet.decode(await exchange(query('nothing.here', 'A', 1235)));
  t.equal(nx.id, 1235);
  t.equal(rcodeOf(nx), 3);
  t.same(logs, []);

  // listening on no address closes the socket
  await dns.listen([]);
  t.same(dns.addresses, []);
  await dns.listen(['127.0.0.1']);
  t.same(dns.addresses, ['127.0.0.1']);
  dns.close();
  t.same(dns.addresses, []);
});
