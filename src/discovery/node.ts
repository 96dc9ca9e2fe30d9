/**
 * One node's discovery when the swarm uses Consul (DESIGN.md §6): the node's Consul agent (a
 * server on a manager, a client on a worker, or none when the swarm points at an existing
 * Consul) and the loop that keeps that agent's registrations equal to the tasks the node runs.
 *
 * The loop syncs at once on every change the worker agent reports (a task assigned, a state
 * reported, a container's health), and again every SYNC_EVERY_MS as anti-entropy: it reads back
 * what the Consul agent holds and fixes the difference, so a restarted daemon or agent leaves
 * no stale entry and loses none. A failed sync (Consul unreachable) is retried every second
 * until it succeeds. Each sync also re-sends every check's status, keeping the TTLs alive: a
 * node that stops doing so (its daemon died) turns its tasks critical within TTL_MS.
 */
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { TaskRecord } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import type { ContainerRecord } from '../engine/containers/types.js';
import { ConsulAgent } from './consul/agent.js';
import { type ConsulClientOptions, ConsulRegistry, lookupConsul } from './consul/registry.js';
import type { Instance, LookupOptions } from './instances.js';
import { applySync, consulServiceName, nodeRegistrations, planSync } from './registrar.js';

/** How the swarm uses Consul: the cluster record's `discovery`, copied into each node's swarm.json. */
export interface ConsulSettings {
  /**
   * managed: every manager runs a Consul server (the first bootstraps it) and every worker a
   * client agent joined to them; external: every node registers through the agent at `addr`.
   */
  mode: 'managed' | 'external';
  /** external: HOST:PORT of a Consul agent's HTTP API. */
  addr?: string;
  datacenter: string;
}

/** `swarm init --consul | --consul-addr HOST:PORT [--consul-datacenter DC]`, checked. */
export function consulSettings(opts: {
  consul?: boolean;
  consulAddr?: string;
  consulDatacenter?: string;
}): ConsulSettings | undefined {
  if (opts.consul && opts.consulAddr)
    throw invalid(
      '--consul starts Consul with the managers and --consul-addr uses an existing Consul: give one of them',
    );
  if (!opts.consul && !opts.consulAddr) {
    if (opts.consulDatacenter !== undefined)
      throw invalid('--consul-datacenter needs --consul or --consul-addr');
    return undefined;
  }
  const datacenter = opts.consulDatacenter ?? 'dc1';
  if (!/^[a-z0-9_-]{1,63}$/.test(datacenter))
    throw invalid(`bad --consul-datacenter "${datacenter}": use lower-case letters, digits, '-' and '_'`);
  if (opts.consul) return { mode: 'managed', datacenter };
  return { mode: 'external', addr: checkHostPort(opts.consulAddr!), datacenter };
}

function checkHostPort(addr: string): string {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(addr) ?? /^([^:\s]+):(\d+)$/.exec(addr);
  const port = Number(m?.[2]);
  if (!m || !(port >= 1 && port <= 65535) || !(isIP(m[1]!) || /^[A-Za-z0-9.-]+$/.test(m[1]!)))
    throw invalid(
      `bad --consul-addr "${addr}": give the HOST:PORT of a Consul agent's HTTP API, e.g. 127.0.0.1:8500`,
    );
  return addr;
}

/** What a node registers from: its worker agent (src/worker/agent.ts). */
export interface TaskSource {
  snapshot(): { task: TaskRecord; container?: ContainerRecord }[];
  onChange(fn: () => void): () => void;
  /** Awaited before a task that is no longer wanted is stopped. */
  onBeforeStop(fn: (taskId: string) => Promise<void>): () => void;
}

export interface NodeDiscoveryOptions {
  dataRoot: string;
  node: { id: string; address: string; hostname: string };
  settings: ConsulSettings;
  /** managed: run a server (on a manager) instead of a client. */
  server: boolean;
  /** managed: the swarm's first server, which bootstraps Consul's raft alone. */
  bootstrap?: boolean;
  /** managed: the addresses of the managers, whose servers the agent joins. */
  join: string[];
  log: (m: string) => void;
}

/** The checks' TTL: a node whose daemon stops refreshing them turns critical this long after. */
export const TTL_MS = 15_000;
/** Anti-entropy and TTL refresh period. */
export const SYNC_EVERY_MS = 5_000;
const RETRY_MS = 1_000;
const RESTART_MS = 1_000;

/** The Consul data dir of a node. */
export const consulDir = (dataRoot: string) => join(dataRoot, 'consul');

export class NodeDiscovery {
  private agent?: ConsulAgent;
  private readonly registry: ConsulRegistry;
  /** How lookups reach Consul: the node's own agent. */
  readonly client: ConsulClientOptions;
  private source?: TaskSource;
  private off?: () => void;
  private tick?: NodeJS.Timeout;
  private retry?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  /** The first sync after start registers everything again (the agent may hold an older state). */
  private fresh = true;
  private stopped = false;
  private lastError = '';
  /** When every check's status was last re-sent. */
  private refreshed = 0;

  private constructor(private readonly opts: NodeDiscoveryOptions) {
    const { settings, node } = opts;
    if (settings.mode === 'managed') {
      const address = isIP(node.address) ? node.address : '127.0.0.1';
      this.agent = new ConsulAgent({
        nodeName: consulNodeName(node.hostname, node.id),
        datacenter: settings.datacenter,
        dataDir: consulDir(opts.dataRoot),
        bindAddr: address,
        clientAddr: address,
        server: opts.server,
        ...(opts.server && opts.bootstrap ? { bootstrapExpect: 1 } : {}),
        retryJoin: opts.join.filter((a) => a !== address && isIP(a)),
        retryIntervalMs: 1000,
        raftMultiplier: 1,
        logLevel: 'warn',
        stopTimeoutMs: 5_000,
      });
      this.client = { socketPath: this.agent.httpSocket };
    } else {
      const m = /^\[?(.*?)\]?:(\d+)$/.exec(settings.addr ?? '');
      if (!m) throw invalid(`bad Consul address "${settings.addr}"`);
      this.client = { host: m[1]!, port: Number(m[2]) };
    }
    this.registry = new ConsulRegistry({ ...this.client, nodeId: node.id, ttlMs: TTL_MS, timeoutMs: 5_000 });
  }

  /** Starts the node's Consul agent (managed) and waits until its API answers. */
  static async start(opts: NodeDiscoveryOptions): Promise<NodeDiscovery> {
    const d = new NodeDiscovery(opts);
    if (d.agent && !isIP(opts.node.address))
      opts.log(
        'consul: this node has no advertise address: its agent binds 127.0.0.1 and joins only agents of this host (join with --advertise-addr)',
      );
    if (d.agent) {
      await d.agent.start();
      d.supervise(d.agent);
      opts.log(
        `consul ${opts.server ? 'server' : 'client'} agent runs: HTTP ${d.agent.httpAddr}, DNS ${d.agent.dnsAddr}`,
      );
    }
    d.tick = setInterval(() => d.kick(), SYNC_EVERY_MS);
    return d;
  }

  /** The HTTP API of the node's own agent (managed only). */
  get httpAddr(): string | undefined {
    return this.agent?.httpAddr;
  }

  /** The DNS interface of the node's own agent (managed only). */
  get dnsAddr(): string | undefined {
    return this.agent?.dnsAddr;
  }

  /** Registers what `source` runs, from now on (a node's role change brings a new source). */
  follow(source: TaskSource): void {
    this.off?.();
    this.source = source;
    this.fresh = true;
    const offChange = source.onChange(() => this.kick());
    const offStop = source.onBeforeStop(() => this.settled());
    this.off = () => {
      offChange();
      offStop();
    };
    this.kick();
  }

  /** A service's instances as Consul sees them (passing only unless `all`). */
  lookup(service: string, opts: LookupOptions = {}): Promise<Instance[]> {
    return lookupConsul(this.client, consulServiceName(service), opts);
  }

  /** Stops syncing and the agent; registrations stay (the next start takes them over). */
  async stop(): Promise<void> {
    await this.halt();
    this.registry.close();
    await this.agent?.stop();
  }

  /**
   * The node leaves the swarm (or changes role): its registrations are removed, its agent
   * leaves the Consul cluster and its data dir is deleted (a new role starts afresh).
   */
  async leave(): Promise<void> {
    await this.halt();
    try {
      for (const r of await this.registry.registered()) await this.registry.deregister(r.id);
    } catch (e) {
      this.opts.log(`consul: cannot deregister this node's tasks: ${(e as Error).message}`);
    }
    this.registry.close();
    if (this.agent) {
      await this.agent.leave();
      await fs.rm(consulDir(this.opts.dataRoot), { recursive: true, force: true });
    }
  }

  private async halt(): Promise<void> {
    this.stopped = true;
    this.off?.();
    clearInterval(this.tick);
    clearTimeout(this.retry);
    await this.running;
  }

  /** Restarts the agent when it exits on its own. */
  private supervise(agent: ConsulAgent): void {
    void agent.whenExited().then(async () => {
      if (this.stopped) return;
      this.opts.log(`consul agent exited: restarting it in ${RESTART_MS} ms (log: ${agent.logPath})`);
      await new Promise((r) => setTimeout(r, RESTART_MS));
      if (this.stopped) return;
      try {
        await agent.start();
        this.fresh = true;
        this.kick();
      } catch (e) {
        this.opts.log(`consul agent did not restart: ${(e as Error).message}`);
      }
      this.supervise(agent);
    });
  }

  /** Resolves once the syncs asked for so far have run (a task going down is then deregistered). */
  private async settled(): Promise<void> {
    this.kick();
    while (this.running) await this.running;
  }

  /** Syncs now, or right after the sync under way. */
  private kick(): void {
    if (this.stopped || !this.source) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.sync().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async sync(): Promise<void> {
    const source = this.source;
    if (!source) return;
    try {
      const desired = nodeRegistrations(source.snapshot(), this.opts.node);
      const fresh = this.fresh;
      const plan = planSync(desired, await this.registry.registered());
      if (fresh) {
        plan.register = desired;
        plan.status = [];
      }
      await applySync(this.registry, plan);
      if (Date.now() - this.refreshed >= SYNC_EVERY_MS / 2) {
        await this.registry.refresh();
        this.refreshed = Date.now();
      }
      if (fresh) this.fresh = false;
      if (this.lastError) this.opts.log('consul: registrations are in sync again');
      this.lastError = '';
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastError) this.opts.log(`consul: sync failed, retrying every ${RETRY_MS} ms: ${msg}`);
      this.lastError = msg;
      clearTimeout(this.retry);
      if (!this.stopped) this.retry = setTimeout(() => this.kick(), RETRY_MS);
    }
  }
}

/** A node's name in Consul: its hostname made a DNS label, with its id's start (hosts may share a hostname). */
export function consulNodeName(hostname: string, nodeId: string): string {
  const base = hostname
    .replace(/[^A-Za-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 50);
  return `${base || 'node'}-${nodeId.slice(0, 8)}`;
}
