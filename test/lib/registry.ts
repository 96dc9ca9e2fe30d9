/**
 * A real OCI/Docker registry (Debian's docker-registry, distribution 2.8) for one test, and
 * skopeo set up to talk to it and to nothing else.
 *
 * Everything lives in /tmp/tsswarm-test-reg-<hex>/ (its command line names that dir, so
 * `tsswarm cleanup --all-test-runs` finds the leftovers of a crashed run):
 *   config.yml   registry config (filesystem storage in data/, delete enabled, health checks off)
 *   registry.log the registry's stdout and stderr (log level warn)
 *   htpasswd     bcrypt entry of user `tester` (auth: true)
 *   tls/         CA key and the server's key and certificate (tls: true)
 *   certs/ca.crt the CA alone: skopeo's cert dir (a *.key in it without a *.cert is an error)
 *   skopeo/      policy.json, registries.conf, auth.json, an empty registries.d, home and tmp:
 *                skopeo reads no file of the machine or of ~ (~/.docker included)
 * At teardown, pass or fail: the spawned PID (and only it) gets SIGKILL, then the dir is removed.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { TEST_PREFIX } from '../../src/engine/cleanup.js';
import { freePort } from './etcd.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestRegistry {
  /** ADDR:PORT, what image references start with (`${host}/repo:tag`). */
  host: string;
  /** http(s)://ADDR:PORT */
  url: string;
  /** /tmp/tsswarm-test-reg-<hex> */
  dir: string;
  pid: number;
  tls: boolean;
  /** PEM file of the CA that signed the server's certificate (tls: true). */
  caFile?: string;
  /** Directory holding only ca.crt, for skopeo's --cert-dir and the like (tls: true). */
  certDir?: string;
  user?: string;
  password?: string;
  logFile: string;
  /** The named network namespace it runs in (reachable only from inside it). */
  netns?: string;
}

export interface RegistryOptions {
  tls?: boolean;
  auth?: boolean;
  /** Listen address, default 127.0.0.1. */
  address?: string;
  /** Run inside this named network namespace (`nsenter --net=/run/netns/NAME`); it must have lo up. */
  netns?: string;
}

const REGISTRY_BIN = '/usr/bin/docker-registry';
const USER = 'tester';
const START_TIMEOUT_MS = 20_000;

/** PIDs of every registry this process started, for a last check that nothing is left. */
export const registryPids = new Set<number>();

function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: opts.env, timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const why = err.killed ? `killed after ${opts.timeoutMs ?? 30_000} ms` : `exit ${err.code}`;
          reject(new Error(`${cmd} ${args.join(' ')}: ${why}: ${stderr.trim() || err.message}`));
        } else resolve({ stdout, stderr });
      },
    );
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tail(file: string, lines = 20): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n') || '(empty log)';
}

/** Whether address:port can be bound right now (in this process's network namespace). */
function canBind(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host: address, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A CA, and a server certificate for IP:address and DNS:localhost signed by it (ECDSA P-256). */
async function makeCerts(dir: string, address: string): Promise<{ ca: string; cert: string; key: string }> {
  const tls = join(dir, 'tls');
  await fs.mkdir(tls, { recursive: true });
  const caKey = join(tls, 'ca.key');
  const ca = join(dir, 'certs', 'ca.crt');
  const key = join(tls, 'server.key');
  const csr = join(tls, 'server.csr');
  const cert = join(tls, 'server.crt');
  const ext = join(tls, 'server.ext');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    caKey,
    '-out',
    ca,
    '-days',
    '7',
    '-subj',
    '/CN=tsswarm-test registry CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await run('openssl', ['req', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${address}`]);
  const san = net.isIP(address) ? `IP:${address}` : `DNS:${address}`;
  await fs.writeFile(
    ext,
    `subjectAltName=${san},DNS:localhost\nbasicConstraints=critical,CA:FALSE\n` +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '7',
    '-extfile',
    ext,
  ]);
  return { ca, cert, key };
}

/** The status of GET url (no redirects followed), trusting ca; throws on connection errors. */
function getStatus(url: string, ca: string | undefined): Promise<number> {
  const get = url.startsWith('https:') ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, { ca, agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** getStatus from inside a named network namespace (a node child entered with nsenter). */
const PROBE_SCRIPT = `
const [url, caFile] = process.argv.slice(1);
const { readFileSync } = await import('node:fs');
const mod = await import(url.startsWith('https:') ? 'node:https' : 'node:http');
const ca = caFile ? readFileSync(caFile, 'utf8') : undefined;
const req = mod.get(url, { ca, agent: false, timeout: 2000 }, (res) => { res.resume(); console.log(res.statusCode); });
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

async function getStatusIn(netns: string, url: string, caFile: string | undefined): Promise<number> {
  const r = await run(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      process.execPath,
      '--input-type=module',
      '-e',
      PROBE_SCRIPT,
      url,
      ...(caFile ? [caFile] : []),
    ],
    // not tap's NODE_OPTIONS (loaders that slow every probe down)
    { timeoutMs: 5_000, env: { PATH: process.env.PATH ?? '' } },
  ).catch((e: Error) => {
    // the message of run() names the whole script
    throw new Error(`(in netns ${netns}) ${e.message.slice(e.message.lastIndexOf(`${url}: `))}`);
  });
  return Number(r.stdout.trim());
}

function configYaml(o: {
  dir: string;
  addr: string;
  tls?: { cert: string; key: string };
  htpasswd?: string;
}): string {
  // JSON strings are valid YAML scalars: no quoting surprises in paths
  const q = JSON.stringify;
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  formatter: text',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(join(o.dir, 'data'))}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${q(o.addr)}`,
    // without one it generates a secret and warns about it
    `  secret: ${q(randomBytes(16).toString('hex'))}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    ...(o.tls ? ['  tls:', `    certificate: ${q(o.tls.cert)}`, `    key: ${q(o.tls.key)}`] : []),
    'health:',
    '  storagedriver:',
    '    enabled: false',
    ...(o.htpasswd ? ['auth:', '  htpasswd:', '    realm: tsswarm-test', `    path: ${q(o.htpasswd)}`] : []),
    '',
  ].join('\n');
}

/** skopeo's own policy, registries config, auth file and home, so nothing of the machine's is read. */
async function writeSkopeoFiles(dir: string): Promise<void> {
  const s = join(dir, 'skopeo');
  await fs.mkdir(join(s, 'registries.d'), { recursive: true });
  await fs.mkdir(join(s, 'home'), { recursive: true });
  await fs.mkdir(join(s, 'tmp'), { recursive: true });
  await fs.writeFile(
    join(s, 'policy.json'),
    `${JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }, null, 2)}\n`,
  );
  await fs.writeFile(
    join(s, 'registries.conf'),
    'unqualified-search-registries = []\nshort-name-mode = "disabled"\n',
  );
  await fs.writeFile(join(s, 'auth.json'), '{"auths":{}}\n');
}

/**
 * Starts docker-registry on a free port of address (default 127.0.0.1), optionally with TLS
 * (own CA) and htpasswd auth (user `tester`, random password), optionally inside a named
 * network namespace; resolves once GET /v2/ answers 200 or 401. Removed at teardown.
 */
export async function startRegistry(t: Teardown, opts: RegistryOptions = {}): Promise<TestRegistry> {
  const prefix = `${TEST_PREFIX}reg-${randomBytes(4).toString('hex')}`;
  const dir = join('/tmp', prefix);
  const address = opts.address ?? '127.0.0.1';
  const logFile = join(dir, 'registry.log');
  let child: ReturnType<typeof spawn> | undefined;
  let exited: Promise<unknown> = Promise.resolve();

  const stop = async () => {
    const c = child;
    if (c?.pid && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await exited;
    }
  };
  t.teardown(async () => {
    await stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  await fs.mkdir(join(dir, 'certs'), { recursive: true });
  await writeSkopeoFiles(dir);
  const tlsFiles = opts.tls ? await makeCerts(dir, address) : undefined;
  let password: string | undefined;
  let htpasswd: string | undefined;
  if (opts.auth) {
    password = randomBytes(12).toString('hex');
    htpasswd = join(dir, 'htpasswd');
    const { stdout } = await run('htpasswd', ['-Bbn', USER, password]);
    await fs.writeFile(htpasswd, `${stdout.trim()}\n`, { mode: 0o600 });
  }

  const hostOf = (port: number) => `${net.isIPv6(address) ? `[${address}]` : address}:${port}`;
  const started = Date.now();
  let lastError = '';
  // a port found free can still be taken before the registry binds it: then another one
  for (let attempt = 1; attempt <= 3; attempt++) {
    let port = await freePort();
    while (!opts.netns && address !== '127.0.0.1' && !(await canBind(address, port))) port = await freePort();
    const host = hostOf(port);
    const url = `${opts.tls ? 'https' : 'http'}://${host}`;
    const config = join(dir, 'config.yml');
    await fs.writeFile(config, configYaml({ dir, addr: host, tls: tlsFiles, htpasswd }));

    const log = await fs.open(logFile, 'a');
    const argv = [REGISTRY_BIN, 'serve', config];
    // nsenter (without --fork) execs the registry: the PID is the registry's
    const [cmd, ...args] = opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`, ...argv] : argv;
    // a clean environment: REGISTRY_* variables would override the config
    const c = spawn(cmd!, args, { stdio: ['ignore', log.fd, log.fd], env: { PATH: process.env.PATH ?? '' } });
    await log.close();
    child = c;
    let spawnError: Error | undefined;
    exited = new Promise((r) => {
      c.once('exit', r);
      c.once('error', (e) => {
        spawnError = e;
        r(e);
      });
    });
    if (c.pid) registryPids.add(c.pid);
    const gone = () => c.exitCode !== null || c.signalCode !== null || spawnError !== undefined;

    const ca = tlsFiles ? await fs.readFile(tlsFiles.ca, 'utf8') : undefined;
    const deadline = started + START_TIMEOUT_MS;
    let ready = false;
    while (Date.now() < deadline) {
      if (gone()) break;
      try {
        const status = opts.netns
          ? await getStatusIn(opts.netns, `${url}/v2/`, tlsFiles?.ca)
          : await getStatus(`${url}/v2/`, ca);
        if (status === 200 || status === 401) {
          ready = true;
          break;
        }
        lastError = `GET ${url}/v2/ answered ${status}`;
      } catch (e) {
        lastError = (e as Error).message;
      }
      await sleep(50);
    }
    if (ready && c.pid) {
      return {
        host,
        url,
        dir,
        pid: c.pid,
        tls: !!opts.tls,
        caFile: tlsFiles?.ca,
        certDir: tlsFiles ? join(dir, 'certs') : undefined,
        user: opts.auth ? USER : undefined,
        password,
        logFile,
        netns: opts.netns,
      };
    }
    const died = gone();
    await stop();
    const logText = await tail(logFile);
    if (died && /address already in use/.test(logText) && Date.now() < deadline) {
      await fs.appendFile(logFile, `--- ${host} was taken, retrying on another port ---\n`);
      continue;
    }
    throw new Error(
      `registry at ${url}${opts.netns ? ` (netns ${opts.netns})` : ''} did not come up ` +
        `${died ? `(${spawnError ? spawnError.message : `exited: ${c.exitCode ?? c.signalCode}`})` : `within ${START_TIMEOUT_MS} ms`}` +
        `${lastError ? `; last probe: ${lastError}` : ''}; ${logFile}:\n${logText}`,
    );
  }
  throw new Error(
    `registry: no free port on ${address} after 3 attempts; ${logFile}:\n${await tail(logFile)}`,
  );
}

/** The Authorization header value (Basic) for reg's user; throws when reg has no auth. */
export function registryAuthHeader(reg: TestRegistry): string {
  if (reg.user === undefined || reg.password === undefined)
    throw new Error(`registry ${reg.host} has no auth`);
  return `Basic ${Buffer.from(`${reg.user}:${reg.password}`).toString('base64')}`;
}

function flags(reg: TestRegistry, dash: string): string[] {
  return [
    ...(reg.tls ? [`--${dash}cert-dir=${reg.certDir}`] : [`--${dash}tls-verify=false`]),
    ...(reg.user !== undefined ? [`--${dash}creds=${reg.user}:${reg.password}`] : []),
  ];
}

/** Flags of single-image skopeo commands (inspect, delete, list-tags) for reg. */
export function skopeoArgs(reg: TestRegistry): string[] {
  return flags(reg, '');
}

/** Flags of `skopeo copy`/`sync` for reg as the source. */
export function skopeoSrcArgs(reg: TestRegistry): string[] {
  return flags(reg, 'src-');
}

/** Flags of `skopeo copy`/`sync` for reg as the destination. */
export function skopeoDestArgs(reg: TestRegistry): string[] {
  return flags(reg, 'dest-');
}

/**
 * Runs `skopeo <global flags> ...args` (inside reg's netns if it has one) with its own policy,
 * registries config, auth file, home and tmp dir; resolves stdout, throws with stderr on failure
 * or after timeoutMs (default 60 s). args carry the subcommand and its flags (see skopeoArgs).
 */
export async function skopeo(
  reg: TestRegistry,
  args: string[],
  opts: { timeoutMs?: number } = {},
): Promise<string> {
  const s = join(reg.dir, 'skopeo');
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const argv = [
    'skopeo',
    `--policy=${join(s, 'policy.json')}`,
    // hidden global flag of skopeo 1.9 (CONTAINERS_REGISTRIES_CONF is not read: /etc's would be)
    `--registries-conf=${join(s, 'registries.conf')}`,
    `--registries.d=${join(s, 'registries.d')}`,
    `--tmpdir=${join(s, 'tmp')}`,
    `--command-timeout=${Math.max(1, Math.floor(timeoutMs / 1000))}s`,
    ...args,
  ];
  const [cmd, ...rest] = reg.netns ? ['nsenter', `--net=/run/netns/${reg.netns}`, ...argv] : argv;
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: join(s, 'home'),
    XDG_RUNTIME_DIR: join(s, 'home'),
    XDG_CONFIG_HOME: join(s, 'home'),
    XDG_DATA_HOME: join(s, 'home'),
    REGISTRY_AUTH_FILE: join(s, 'auth.json'),
    // as root, containers/image keeps its blob-info cache in /var/lib/containers/cache and
    // looks for signatures in /var/lib/containers/sigstore; as "rootless" both go below XDG_DATA_HOME
    _CONTAINERS_ROOTLESS_UID: '1',
    // no HTTP(S)_PROXY: a non-loopback registry address would go through it
  };
  const { stdout } = await run(cmd!, rest, { env, timeoutMs: timeoutMs + 5_000 });
  return stdout;
}
