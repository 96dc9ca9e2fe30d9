import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli, startTestDaemon, uniquePrefix } from './lib/harness.js';

const port = () => 20000 + Math.floor(Math.random() * 30000);

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makeCerts(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=tsswarm test CA',
  );
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    );
    execFileSync('sh', ['-c', `printf '${ext}\\n' > ${name}.ext`], { cwd: dir });
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
    );
  }
}

t.test('remote access needs TLS with client certificates unless loopback', async (t) => {
  const prefix = uniquePrefix();
  const dir = join('/tmp', prefix);
  await fs.mkdir(dir, { recursive: true });
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const open = await runCli([
    'daemon',
    '--data-root',
    join(dir, 'root'),
    '--socket',
    join(dir, 'x.sock'),
    '--cgroup-parent',
    prefix,
    '--listen',
    `tcp://0.0.0.0:${port()}`,
  ]);
  t.equal(open.code, 125, 'an open TCP socket is refused');
  t.match(open.stderr, /refusing to listen on tcp:\/\/0\.0\.0\.0:\d+ without TLS/);
  const half = await runCli([
    'daemon',
    '--data-root',
    join(dir, 'root'),
    '--socket',
    join(dir, 'x.sock'),
    '--cgroup-parent',
    prefix,
    '--listen',
    `tcp://0.0.0.0:${port()}`,
    '--tlscert',
    'x.pem',
  ]);
  t.match(half.stderr, /TLS needs all of --tlscert, --tlskey and --tlscacert/);

  const certs = join(dir, 'certs');
  await fs.mkdir(certs);
  makeCerts(certs);
  const clientDir = join(dir, 'client');
  await fs.mkdir(clientDir);
  await fs.copyFile(join(certs, 'ca.pem'), join(clientDir, 'ca.pem'));
  await fs.copyFile(join(certs, 'client.pem'), join(clientDir, 'cert.pem'));
  await fs.copyFile(join(certs, 'client-key.pem'), join(clientDir, 'key.pem'));
  const p = port();
  const d = await startTestDaemon(t, [
    '--listen',
    `tcp://127.0.0.1:${p}`,
    '--tlscert',
    join(certs, 'server.pem'),
    '--tlskey',
    join(certs, 'server-key.pem'),
    '--tlscacert',
    join(certs, 'ca.pem'),
  ]);
  const ok = await runCli(['-H', `tcp://127.0.0.1:${p}`, '--tls-dir', clientDir, 'version']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /Daemon: \d+\.\d+\.\d+/);
  const viaEnv = await runCli(['container', 'ps'], {
    env: { TSSWARM_HOST: `tcp://127.0.0.1:${p}`, TSSWARM_CERT_PATH: clientDir },
  });
  t.equal(viaEnv.code, 0, 'TSSWARM_HOST and TSSWARM_CERT_PATH choose the daemon');
  const noCert = await runCli(['-H', `tcp://127.0.0.1:${p}`, 'version']);
  t.not(noCert.code, 0, 'a client without a certificate is turned away');
  const st = await fs.stat(d.socket);
  t.equal(st.mode & 0o777, 0o660, 'the unix socket is not world-accessible');
  const second = await runCli([
    'daemon',
    '--data-root',
    join(dir, 'root2'),
    '--socket',
    d.socket,
    '--cgroup-parent',
    prefix,
  ]);
  t.equal(second.code, 125);
  t.match(second.stderr, /another daemon is already serving/);
});
