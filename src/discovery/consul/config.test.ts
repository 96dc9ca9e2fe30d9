import t, { type Test } from 'tap';
import { TsswarmError } from '../../api/errors.js';
import { type ConsulConfigOptions, consulConfig } from './config.js';

const base: ConsulConfigOptions = { nodeName: 'n1', dataDir: '/tmp/c/n1' };

function rejects(t: Test, opts: ConsulConfigOptions, message: RegExp): void {
  t.throws(() => consulConfig(opts), { code: 'invalid_argument', message }, String(message));
}

t.test('defaults: a client on loopback with the standard ports, gRPC and HTTPS off', async (t) => {
  const c = consulConfig(base);
  t.equal(c.node_name, 'n1');
  t.equal(c.datacenter, 'dc1');
  t.equal(c.data_dir, '/tmp/c/n1');
  t.equal(c.bind_addr, '127.0.0.1');
  t.equal(c.client_addr, '127.0.0.1');
  t.equal(c.server, false);
  t.notOk('bootstrap_expect' in c);
  t.notOk('addresses' in c);
  t.notOk('performance' in c);
  t.same(c.retry_join, []);
  t.equal(c.log_level, 'info');
  t.same(c.ports, {
    http: 8500,
    dns: 8600,
    serf_lan: 8301,
    serf_wan: 8302,
    server: 8300,
    https: -1,
    grpc: -1,
    grpc_tls: -1,
  });
});

t.test('nothing leaves the machine: no update check, no recursors, no UI, no scripts', async (t) => {
  for (const server of [false, true]) {
    const c = consulConfig({ ...base, server });
    t.equal(c.disable_update_check, true);
    t.same(c.recursors, []);
    t.same(c.ui_config, { enabled: false });
    t.equal(c.enable_script_checks, false);
    t.equal(c.enable_local_script_checks, false);
    t.equal(c.disable_remote_exec, true);
    t.equal(c.disable_host_node_id, true);
    t.same(c.dns_config, { allow_stale: true, only_passing: true });
  }
});

t.test('leave behaviour: clients leave on SIGTERM, servers keep their raft membership', async (t) => {
  const client = consulConfig(base);
  t.equal(client.leave_on_terminate, true);
  t.equal(client.skip_leave_on_interrupt, false);
  const server = consulConfig({ ...base, server: true });
  t.equal(server.leave_on_terminate, false);
  t.equal(server.skip_leave_on_interrupt, true);
});

t.test('a server of a 3-server cluster on its own address', async (t) => {
  const c = consulConfig({
    nodeName: 'srv-1',
    datacenter: 'west_2',
    dataDir: '/var/lib/x',
    bindAddr: '10.254.3.11',
    clientAddr: '10.254.3.11',
    httpSocket: '/var/lib/x/http.sock',
    server: true,
    bootstrapExpect: 3,
    retryJoin: ['10.254.3.12', '10.254.3.13:8301', '[fd00::1]:8301', 'fd00::2'],
    retryIntervalMs: 500,
    ports: { http: 18500, dns: 18600 },
    logLevel: 'debug',
    raftMultiplier: 1,
  });
  t.equal(c.server, true);
  t.equal(c.bootstrap_expect, 3);
  t.equal(c.datacenter, 'west_2');
  t.equal(c.bind_addr, '10.254.3.11');
  t.same(c.addresses, { http: '10.254.3.11 unix:///var/lib/x/http.sock' });
  t.same(c.retry_join, ['10.254.3.12', '10.254.3.13:8301', '[fd00::1]:8301', 'fd00::2']);
  t.equal(c.retry_interval, '500ms');
  t.equal(c.ports.http, 18500);
  t.equal(c.ports.dns, 18600);
  t.equal(c.ports.serf_lan, 8301);
  t.equal(c.log_level, 'debug');
  t.same(c.performance, { raft_multiplier: 1 });
});

t.test('the config is plain JSON', async (t) => {
  const c = consulConfig({ ...base, server: true, bootstrapExpect: 1 });
  t.same(JSON.parse(JSON.stringify(c)), c);
});

t.test('bad options throw invalid_argument naming the problem', async (t) => {
  t.throws(() => consulConfig({ ...base, nodeName: '' }), TsswarmError);
  rejects(t, { ...base, nodeName: '' }, /node name is empty/);
  rejects(t, { ...base, nodeName: 'has space' }, /bad Consul node name "has space"/);
  rejects(t, { ...base, nodeName: 'x'.repeat(64) }, /at most 63/);
  rejects(t, { ...base, datacenter: 'DC 1' }, /bad datacenter/);
  rejects(t, { ...base, dataDir: 'relative/dir' }, /dataDir must be an absolute path/);
  rejects(t, { ...base, bindAddr: 'localhost' }, /bindAddr must be an IP address/);
  rejects(t, { ...base, clientAddr: '10.0.0' }, /clientAddr must be an IP address/);
  rejects(t, { ...base, bootstrapExpect: 3 }, /bootstrapExpect is for servers only/);
  rejects(t, { ...base, server: true, bootstrapExpect: 0 }, /bootstrapExpect must be an integer/);
  rejects(t, { ...base, server: true, bootstrapExpect: 2.5 }, /bootstrapExpect must be an integer/);
  rejects(t, { ...base, ports: { http: 0 } }, /ports\.http must be an integer from 1 to 65535, got 0/);
  rejects(t, { ...base, ports: { dns: 65536 } }, /ports\.dns must be an integer/);
  rejects(t, { ...base, ports: { serfLan: 1.5 } }, /ports\.serfLan must be an integer/);
  rejects(t, { ...base, ports: { dns: 8500 } }, /ports\.http and ports\.dns are both 8500/);
  rejects(t, { ...base, retryJoin: ['consul.example.com'] }, /not an IP address.*join by address only/);
  rejects(t, { ...base, retryJoin: ['provider=aws tag_key=x'] }, /not an IP address/);
  rejects(t, { ...base, retryJoin: ['10.0.0.1:99999'] }, /not an IP address with an optional port/);
  rejects(t, { ...base, logLevel: 'loud' as 'info' }, /bad Consul log level "loud"/);
  rejects(t, { ...base, raftMultiplier: 11 }, /raftMultiplier must be an integer from 1 to 10/);
  rejects(t, { ...base, retryIntervalMs: 0 }, /retryIntervalMs must be an integer/);
  rejects(t, { ...base, httpSocket: 'rel.sock' }, /httpSocket must be an absolute path/);
  rejects(t, { ...base, httpSocket: `/${'d'.repeat(120)}/http.sock` }, /longer than 107 bytes/);
});
