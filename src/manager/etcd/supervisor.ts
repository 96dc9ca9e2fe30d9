import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, constants, existsSync, promises as fs, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { delimiter, isAbsolute, join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { TsswarmError } from '../../api/errors.js';

/**
 * Starts and supervises local etcd members: the "embedded default" single member of
 * `swarm init`, or a static cluster on one host (tests of failover). Each member runs as a
 * child process with its data in `<dir>/data` and its log in `<dir>/etcd.log`; it is
 * restarted with a bounded backoff when it dies, and stopped by PID (SIGTERM, then SIGKILL).
 */

export interface EtcdMemberOptions {
  /** Member name (`--name`), unique in its cluster. */
  name: string;
  /** The member's directory: etcd's data in `data/`, its log in `etcd.log`, its PID in `etcd.pid`. */
  dir: string;
  /** Address to listen and advertise on; default 127.0.0.1. */
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** `name=peerURL,...` of every member of a static cluster; default this member alone. */
  initialCluster?: string;
  /**
   * Serve clients and peers over TLS, requiring certificates signed by the CA in caFile from
   * both (the swarm's own etcd: only managers hold such certificates). Default: plain HTTP.
   */
  tls?: EtcdTlsFiles;
  /** `existing` when the member joins a running cluster (it was added with memberAdd); default `new`. */
  initialClusterState?: 'new' | 'existing';
  /** `--initial-cluster-token`; default the member's name. */
  clusterToken?: string;
  /** The etcd binary; default $TSSWARM_ETCD_BIN or `etcd` on PATH. */
  bin?: string;
  /** Periodic auto-compaction keeps this much history (etcd duration); default '1h'. */
  compactionRetention?: string;
  /** Restart etcd when it exits on its own; default true. */
  restart?: boolean;
  /** Raft timers for loopback (heartbeat 50 ms, election 500 ms) instead of etcd's defaults. */
  fastElection?: boolean;
  /** How long start() waits for the member to serve; default 30 s. */
  startTimeoutMs?: number;
  log?: (msg: string) => void;
}

/** PEM files of an etcd member's TLS: the CA it trusts, its certificate and key. */
export interface EtcdTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** The etcd3 client's credentials from PEM text (a client certificate of the etcd CA). */
export function etcdCredentials(tls: { caCertPem: string; certPem: string; keyPem: string }) {
  return {
    rootCertificate: Buffer.from(tls.caCertPem),
    certChain: Buffer.from(tls.certPem),
    privateKey: Buffer.from(tls.keyPem),
  };
}

function readTlsFiles(f: EtcdTlsFiles) {
  return etcdCredentials({
    caCertPem: readFileSync(f.caFile, 'utf8'),
    certPem: readFileSync(f.certFile, 'utf8'),
    keyPem: readFileSync(f.keyFile, 'utf8'),
  });
}

export const DEFAULT_CLIENT_PORT = 2379;
export const DEFAULT_PEER_PORT = 2380;
const RESTART_BACKOFF_MIN_MS = 100;
const RESTART_BACKOFF_MAX_MS = 5_000;
/** A member that ran at least this long before dying restarts without backoff. */
const STABLE_AFTER_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The etcd binary to run: explicit path, $TSSWARM_ETCD_BIN, or `etcd` on PATH. Throws `precondition` if none. */
export function findEtcdBinary(bin = process.env.TSSWARM_ETCD_BIN || 'etcd'): string {
  const candidates =
    isAbsolute(bin) || bin.includes('/')
      ? [bin]
      : (process.env.PATH ?? '').split(delimiter).map((d) => join(d, bin));
  for (const c of candidates) if (c && existsSync(c)) return c;
  throw new TsswarmError(
    'precondition',
    `the etcd binary (${bin}) is missing: install etcd-server: run scripts/setup.sh (or npm run setup)`,
  );
}

/** Throws `conflict` naming the address when something already listens on host:port. */
export async function assertPortFree(host: string, port: number, what = 'port'): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE')
        reject(
          new TsswarmError(
            'conflict',
            `etcd ${what} ${host}:${port} is in use (another etcd, or another program): stop it or choose another port`,
          ),
        );
      else
        reject(
          new TsswarmError('invalid_argument', `cannot listen on ${host}:${port}: ${e.message}`, {
            cause: e,
          }),
        );
    });
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve()));
  });
}

/** Creates dir and proves it writable; throws `precondition` naming it otherwise. */
async function assertWritableDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await fs.access(dir, constants.W_OK);
    const probe = join(dir, '.write-probe');
    await fs.writeFile(probe, '');
    await fs.rm(probe);
  } catch (e) {
    throw new TsswarmError(
      'precondition',
      `the etcd data dir ${dir} is not writable (${(e as Error).message}): choose another directory or fix its permissions`,
      { cause: e },
    );
  }
}

/** True when the etcd at endpoint has a leader and answers a linearizable read within timeoutMs. */
export async function isHealthy(endpoint: string, timeoutMs = 1_000, tls?: EtcdTlsFiles): Promise<boolean> {
  const client = new Etcd3({
    hosts: endpoint,
    ...(tls ? { credentials: readTlsFiles(tls) } : {}),
    dialTimeout: timeoutMs,
    defaultCallOptions: () => ({ deadline: Date.now() + timeoutMs }),
  });
  try {
    await client.get('health').string();
    return true;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One supervised etcd member. Emits 'started' (pid) on every spawn, 'exit' (code, signal) when
 * it dies unexpectedly, and 'restarted' (pid) when a restart after such a death serves again.
 */
export class EtcdSupervisor extends EventEmitter {
  readonly name: string;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  readonly logPath: string;
  private readonly pidPath: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private backoffMs = RESTART_BACKOFF_MIN_MS;
  private startedAt = 0;
  private readonly log: (msg: string) => void;

  constructor(readonly opts: EtcdMemberOptions) {
    super();
    this.name = opts.name;
    this.host = opts.host ?? '127.0.0.1';
    this.clientPort = opts.clientPort ?? DEFAULT_CLIENT_PORT;
    this.peerPort = opts.peerPort ?? DEFAULT_PEER_PORT;
    this.dataDir = join(opts.dir, 'data');
    this.logPath = join(opts.dir, 'etcd.log');
    this.pidPath = join(opts.dir, 'etcd.pid');
    this.log = opts.log ?? (() => {});
  }

  /** The client URL, e.g. http://127.0.0.1:2379 (https with TLS). */
  get endpoint(): string {
    return `${this.opts.tls ? 'https' : 'http'}://${this.host}:${this.clientPort}`;
  }
  get peerURL(): string {
    return `${this.opts.tls ? 'https' : 'http'}://${this.host}:${this.peerPort}`;
  }
  /** PID of the running etcd, or undefined between a death and its restart. */
  get pid(): number | undefined {
    return this.child && this.child.exitCode === null && this.child.signalCode === null
      ? this.child.pid
      : undefined;
  }

  /**
   * Starts the member and waits until it serves (it needs a quorum: start every member of a
   * static cluster before awaiting). Checks the binary, the data dir and both ports first and
   * fails with a typed error that says what to do. A leftover etcd of this member (from the
   * PID file, checked against its command line) is stopped first. A member that does not come
   * up is stopped again before the error is thrown. With `wait: false` it only spawns the
   * member (a learner serves no reads until it is promoted: call waitHealthy() after that).
   */
  async start(opts: { wait?: boolean } = {}): Promise<void> {
    this.stopping = false;
    const bin = findEtcdBinary(this.opts.bin);
    await assertWritableDir(this.dataDir);
    await this.stopLeftover();
    await assertPortFree(this.host, this.clientPort, 'client port');
    await assertPortFree(this.host, this.peerPort, 'peer port');
    this.spawnMember(bin);
    if (opts.wait === false) return;
    try {
      await this.waitHealthy(this.opts.startTimeoutMs ?? 30_000);
    } catch (e) {
      await this.stop(1_000); // leave nothing running behind a failed start
      throw e;
    }
  }

  /** Waits until the member serves a linearizable read; fails early if the process exits. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const child = this.child;
    while (Date.now() < deadline) {
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        throw await this.startFailure(`etcd ${this.name} exited (${child?.exitCode ?? child?.signalCode})`);
      }
      const wait = Math.min(1_000, Math.max(100, deadline - Date.now()));
      if (await isHealthy(this.endpoint, wait, this.opts.tls)) return;
      await sleep(50);
    }
    throw await this.startFailure(`etcd ${this.name} did not become healthy within ${timeoutMs} ms`);
  }

  /** Kills the process as a crash would (default SIGKILL) and waits for it to die; the supervisor restarts it. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const pid = this.pid;
    if (!pid) return;
    const exited = this.exited;
    process.kill(pid, signal);
    await exited;
  }

  /** Stops the member by PID: SIGTERM, SIGKILL after graceMs; no restart follows. Safe to call twice. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const pid = this.pid;
    if (pid) {
      const exited = this.exited;
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (this.pid === pid) process.kill(pid, 'SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    }
    await fs.rm(this.pidPath, { force: true });
  }

  private spawnMember(bin: string): void {
    const o = this.opts;
    const args = [
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      `--listen-peer-urls=${this.peerURL}`,
      `--initial-advertise-peer-urls=${this.peerURL}`,
      `--initial-cluster=${o.initialCluster ?? `${this.name}=${this.peerURL}`}`,
      `--initial-cluster-token=${o.clusterToken ?? this.name}`,
      `--initial-cluster-state=${o.initialClusterState ?? 'new'}`, // ignored once the data dir holds a member
      '--auto-compaction-mode=periodic',
      `--auto-compaction-retention=${o.compactionRetention ?? '1h'}`,
      '--snapshot-count=10000',
      '--logger=zap',
      '--log-outputs=stderr',
    ];
    if (o.fastElection) args.push('--heartbeat-interval=50', '--election-timeout=500');
    if (o.tls) {
      const { caFile, certFile, keyFile } = o.tls;
      args.push(
        `--cert-file=${certFile}`,
        `--key-file=${keyFile}`,
        `--trusted-ca-file=${caFile}`,
        '--client-cert-auth',
        `--peer-cert-file=${certFile}`,
        `--peer-key-file=${keyFile}`,
        `--peer-trusted-ca-file=${caFile}`,
        '--peer-client-cert-auth',
      );
    }
    const logFd = openSync(this.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(bin, args, { stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    this.child = child;
    this.startedAt = Date.now();
    this.exited = new Promise((resolve) => {
      let done = false;
      const ended = (code: number | null, signal: NodeJS.Signals | null) => {
        if (done) return;
        done = true;
        resolve();
        this.onExit(child, code, signal);
      };
      child.once('exit', ended);
      child.once('error', (e) => {
        this.log(`etcd ${this.name}: ${e.message}`);
        ended(null, null); // a failed spawn: 'exit' may not follow
      });
    });
    if (child.pid) {
      void fs.writeFile(this.pidPath, `${child.pid}\n`).catch(() => {});
      this.emit('started', child.pid);
    }
    this.log(`etcd ${this.name} started (pid ${child.pid}) on ${this.endpoint}`);
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child || this.stopping) return;
    this.log(`etcd ${this.name} (pid ${child.pid}) exited (${code ?? signal})`);
    this.emit('exit', code, signal);
    if (this.opts.restart === false) return;
    if (Date.now() - this.startedAt >= STABLE_AFTER_MS) this.backoffMs = RESTART_BACKOFF_MIN_MS;
    this.scheduleRestart();
  }

  /** Restarts after the current backoff, doubling it up to RESTART_BACKOFF_MAX_MS. */
  private scheduleRestart(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, RESTART_BACKOFF_MAX_MS);
    this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    if (this.stopping) return;
    let bin: string;
    try {
      bin = findEtcdBinary(this.opts.bin);
    } catch (e) {
      this.log((e as Error).message);
      this.scheduleRestart();
      return;
    }
    this.spawnMember(bin);
    try {
      await this.waitHealthy(this.opts.startTimeoutMs ?? 30_000);
      this.log(`etcd ${this.name} restarted (pid ${this.pid})`);
      this.emit('restarted', this.pid);
    } catch (e) {
      // If it died, its exit has scheduled the next attempt; if it is slow, it may still come up.
      this.log(`etcd ${this.name} restart: ${(e as Error).message}`);
    }
  }

  /** Stops an etcd left running by a previous supervisor of this member (PID file + command line check). */
  private async stopLeftover(): Promise<void> {
    const pid = Number((await fs.readFile(this.pidPath, 'utf8').catch(() => '')).trim());
    if (!pid || !pidAlive(pid)) return;
    const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmd.includes('etcd') || !cmd.includes(this.dataDir)) return;
    this.log(`stopping leftover etcd ${this.name} (pid ${pid})`);
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(50);
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 40 && pidAlive(pid); i++) await sleep(50);
  }

  /** A typed error for a member that would not start, with what its log says. */
  private async startFailure(what: string): Promise<TsswarmError> {
    const text = await fs.readFile(this.logPath, 'utf8').catch(() => '');
    const tail = text.split('\n').filter(Boolean).slice(-5);
    const lines = tail.map((l) => {
      try {
        const j = JSON.parse(l) as { msg?: string; error?: string };
        return [j.msg, j.error].filter(Boolean).join(': ');
      } catch {
        return l;
      }
    });
    const joined = lines.join('\n');
    if (/address already in use/.test(joined))
      return new TsswarmError(
        'conflict',
        `${what}: a port of ${this.host}:${this.clientPort}/${this.peerPort} is in use\n${joined}`,
      );
    if (/permission denied|read-only file system/i.test(joined))
      return new TsswarmError(
        'precondition',
        `${what}: the data dir ${this.dataDir} is not writable\n${joined}`,
      );
    return new TsswarmError('daemon_unreachable', `${what} (log ${this.logPath}):\n${joined}`);
  }
}

/** Starts one supervised etcd member and waits until it serves. */
export async function startEtcd(opts: EtcdMemberOptions): Promise<EtcdSupervisor> {
  const s = new EtcdSupervisor(opts);
  await s.start();
  return s;
}

export interface EtcdClusterOptions
  extends Omit<EtcdMemberOptions, 'name' | 'dir' | 'clientPort' | 'peerPort' | 'initialCluster'> {
  /** Member names are `<namePrefix>-0` … ; the token defaults to namePrefix. */
  namePrefix: string;
  /** Member i lives in `<dir>/<name>`. */
  dir: string;
  /** One {client, peer} port pair per member. */
  ports: Array<{ client: number; peer: number }>;
}

/**
 * Starts a static cluster of ports.length members (`--initial-cluster` naming all), all on
 * host, and waits until every member serves. If one fails, the others are stopped.
 */
export async function startEtcdCluster(opts: EtcdClusterOptions): Promise<EtcdSupervisor[]> {
  const host = opts.host ?? '127.0.0.1';
  const names = opts.ports.map((_, i) => `${opts.namePrefix}-${i}`);
  const initialCluster = opts.ports.map((p, i) => `${names[i]}=http://${host}:${p.peer}`).join(',');
  const members = opts.ports.map(
    (p, i) =>
      new EtcdSupervisor({
        ...opts,
        name: names[i]!,
        dir: join(opts.dir, names[i]!),
        clientPort: p.client,
        peerPort: p.peer,
        initialCluster,
        clusterToken: opts.clusterToken ?? opts.namePrefix,
      }),
  );
  const results = await Promise.allSettled(members.map((m) => m.start()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(members.map((m) => m.stop(1_000)));
    throw failed.reason;
  }
  return members;
}
