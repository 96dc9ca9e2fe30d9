/**
 * Starts and stops one real Consul agent process (server or client).
 *
 * The config (see config.ts) is written to `<dataDir>/consul.json` and the agent's output to
 * `<dataDir>/consul.log`. With a `netns` option the agent runs inside that network namespace
 * through `ip netns exec`, which execs Consul in place, so the PID we hold is Consul's own.
 * The HTTP API is also served on the unix socket `<dataDir>/http.sock`: a socket file is
 * reachable from every network namespace, so this process can wait for readiness without
 * entering the agent's namespace. Signals go only to the process this object started, and
 * never after it has exited (Node's ChildProcess refuses then), so a reused PID is never hit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, constants, promises as fs, openSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { precondition, TsswarmError } from '../../api/errors.js';
import { type ConsulConfigOptions, consulConfig } from './config.js';

export const DEFAULT_CONSUL_BIN = '/var/cache/tsswarm/consul-v1.16.2/consul';

export interface ConsulAgentOptions extends Omit<ConsulConfigOptions, 'httpSocket'> {
  /** The consul binary; default $TSSWARM_CONSUL_BIN, else DEFAULT_CONSUL_BIN. */
  bin?: string;
  /** Run inside this named network namespace (`ip netns exec`). */
  netns?: string;
  /** start() also waits until the agent knows a raft leader. */
  waitForLeader?: boolean;
  /** How long start() waits; default 30 s. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL; default 10 s. */
  stopTimeoutMs?: number;
}

/** The consul binary to run (`bin`, else $TSSWARM_CONSUL_BIN, else DEFAULT_CONSUL_BIN); throws `precondition` if it is missing. */
export async function checkConsulBinary(bin?: string): Promise<string> {
  const path = bin || process.env.TSSWARM_CONSUL_BIN || DEFAULT_CONSUL_BIN;
  await fs.access(path, constants.X_OK).catch(() => {
    throw precondition(`consul binary not found at ${path}: run scripts/setup.sh, or set TSSWARM_CONSUL_BIN`);
  });
  return path;
}

const LOG_TAIL_BYTES = 3000;
const POLL_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ConsulAgent {
  /** host:port of the HTTP API (on the client address). */
  readonly httpAddr: string;
  /** host:port of the DNS interface (on the client address). */
  readonly dnsAddr: string;
  /** The HTTP API's unix socket. */
  readonly httpSocket: string;
  readonly configPath: string;
  readonly logPath: string;
  /** The PID of the agent this data dir last ran: a daemon that crashed left it running. */
  readonly pidPath: string;
  private readonly configText: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private spawnError: string | undefined;
  /** Size of the log file when the current run started: a failure shows only this run's lines. */
  private logOffset = 0;

  /** Checks the options (throws `invalid_argument`); starts nothing. */
  constructor(readonly opts: ConsulAgentOptions) {
    this.httpSocket = join(opts.dataDir, 'http.sock');
    this.configPath = join(opts.dataDir, 'consul.json');
    this.logPath = join(opts.dataDir, 'consul.log');
    this.pidPath = join(opts.dataDir, 'consul.pid');
    const config = consulConfig({ ...opts, httpSocket: this.httpSocket });
    this.configText = `${JSON.stringify(config, null, 2)}\n`;
    this.httpAddr = `${config.client_addr}:${config.ports.http}`;
    this.dnsAddr = `${config.client_addr}:${config.ports.dns}`;
  }

  /** PID of the running agent, or undefined when none runs. */
  get pid(): number | undefined {
    return this.running() ? this.child?.pid : undefined;
  }

  /**
   * Spawns the agent and resolves when its HTTP API answers (and a leader is known, with
   * waitForLeader). Throws `precondition` if the binary is missing; if the agent exits early
   * or the timeout passes, it is killed and the error carries the tail of its log.
   */
  async start(): Promise<void> {
    if (this.running()) throw new TsswarmError('conflict', `consul agent ${this.opts.nodeName} already runs`);
    const bin = await checkConsulBinary(this.opts.bin);
    await fs.mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    await this.stopStale();
    await fs.writeFile(this.configPath, this.configText);
    await fs.rm(this.httpSocket, { force: true });
    this.logOffset = (await fs.stat(this.logPath).catch(() => undefined))?.size ?? 0;
    this.spawnAgent(bin);
    if (this.child?.pid) await fs.writeFile(this.pidPath, `${this.child.pid}\n`);
    try {
      await this.waitReady(this.opts.startTimeoutMs ?? 30_000);
    } catch (e) {
      await this.kill();
      throw e;
    }
  }

  /** SIGTERM to the agent, SIGKILL if it has not exited after stopTimeoutMs. */
  async stop(): Promise<void> {
    if (!this.running()) return;
    this.child?.kill('SIGTERM');
    if (!(await this.exitsWithin(this.opts.stopTimeoutMs ?? 10_000))) await this.kill();
  }

  /** Resolves when the agent this object started has exited (at once when none runs). */
  whenExited(): Promise<void> {
    return this.exited;
  }

  /**
   * Asks the agent to leave its cluster gracefully (PUT /v1/agent/leave): its node and
   * services leave the catalog, and a server leaves the raft peers. The agent exits after.
   */
  async leave(): Promise<void> {
    if (!this.running()) return;
    await new Promise<void>((resolve) => {
      const req = http.request(
        { socketPath: this.httpSocket, path: '/v1/agent/leave', method: 'PUT', timeout: 10_000 },
        (res) => {
          res.resume();
          res.on('end', () => resolve());
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve());
      req.end();
    });
    await this.stop();
  }

  /**
   * An agent of this data dir left running by a daemon that died (its PID file names a process
   * whose command line is this agent's config): SIGTERM, then SIGKILL after stopTimeoutMs.
   * Any other process with that PID is left alone.
   */
  private async stopStale(): Promise<void> {
    const pid = Number((await fs.readFile(this.pidPath, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 1) return;
    const isOurs = async () =>
      (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(
        `-config-file=${this.configPath}`,
      );
    if (!(await isOurs())) return;
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + (this.opts.stopTimeoutMs ?? 10_000);
    while ((await isOurs()) && Date.now() < deadline) await sleep(POLL_MS);
    if (await isOurs()) process.kill(pid, 'SIGKILL');
    while (await isOurs()) await sleep(POLL_MS);
  }

  /** SIGKILL to the agent; resolves when it has exited. */
  async kill(): Promise<void> {
    if (this.running()) this.child?.kill('SIGKILL');
    await this.exited;
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const exited = await Promise.race([this.exited.then(() => true), timeout]);
    clearTimeout(timer);
    return exited;
  }

  private running(): boolean {
    const c = this.child;
    return !!c && this.spawnError === undefined && c.exitCode === null && c.signalCode === null;
  }

  private spawnAgent(bin: string): void {
    const agentArgs = [bin, 'agent', `-config-file=${this.configPath}`];
    const [cmd, ...args] = this.opts.netns
      ? ['ip', 'netns', 'exec', this.opts.netns, ...agentArgs]
      : agentArgs;
    const log = openSync(this.logPath, 'a');
    try {
      const child = spawn(cmd!, args, {
        stdio: ['ignore', log, log],
        env: { ...process.env, CHECKPOINT_DISABLE: '1' },
      });
      this.child = child;
      this.spawnError = undefined;
      this.exited = new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.once('error', (e) => {
          this.spawnError = e.message;
          resolve();
        });
      });
    } finally {
      closeSync(log);
    }
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const want = this.opts.waitForLeader ? 'a leader' : 'its HTTP API';
    for (;;) {
      if (!this.running()) throw await this.failure(`exited early (${this.exitStatus()})`);
      const leader = await getLeader(this.httpSocket);
      if (leader !== undefined && (!this.opts.waitForLeader || leader !== '')) return;
      if (Date.now() > deadline) throw await this.failure(`did not report ${want} within ${timeoutMs} ms`);
      await sleep(POLL_MS);
    }
  }

  private exitStatus(): string {
    const c = this.child;
    if (this.spawnError) return `spawn failed: ${this.spawnError}`;
    return c?.signalCode ? `signal ${c.signalCode}` : `exit code ${c?.exitCode}`;
  }

  private async failure(what: string): Promise<TsswarmError> {
    const log = await fs.readFile(this.logPath).catch(() => Buffer.alloc(0));
    const run = log.subarray(this.logOffset);
    const tail = run
      .subarray(Math.max(0, run.length - LOG_TAIL_BYTES))
      .toString('utf8')
      .trimEnd();
    return new TsswarmError(
      'internal',
      `consul agent ${this.opts.nodeName} ${what}; log ${this.logPath} ends:\n${tail}`,
    );
  }
}

/**
 * GET /v1/status/leader over the unix socket: the leader's address, '' while none is known
 * (a status other than 200 counts as none), undefined while the API does not answer.
 */
function getLeader(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/v1/status/leader', timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? parseLeader(body) : ''));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

function parseLeader(body: string): string {
  try {
    const v: unknown = JSON.parse(body);
    return typeof v === 'string' ? v : '';
  } catch {
    return '';
  }
}
