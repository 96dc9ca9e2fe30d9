/**
 * Service registration in Consul (DESIGN.md §6): ConsulRegistry keeps one node's tasks
 * registered in its local Consul agent, and lookupConsul reads a service's instances back.
 *
 * Every task is a Consul service (id = task id) with one TTL check, `tsswarm:<task id>`, whose
 * status is the task's: the node re-sends it every TTL/3 (refresh), so the check turns critical
 * when the node stops doing so, and Consul drops the service after DEREGISTER_AFTER critical
 * (a node gone for good leaves nothing behind). A registration carries the tag `tsswarm` and
 * the meta `tsswarm_node=<node id>`: a registry only ever reads back its own, never services
 * registered by hand or by another node. Calls for one task reach the agent in the order they
 * were made. Consul's failures become TsswarmErrors naming the agent: `daemon_unreachable`
 * when it cannot be reached or fails (5xx), `not_found` for an unknown task, `invalid_argument`
 * when it refuses a request (other 4xx).
 */
import Consul from 'consul';
import { type ErrorCode, invalid, notFound, TsswarmError } from '../../api/errors.js';
import type { Instance, LookupOptions } from '../instances.js';
import type { Registration, Registry } from '../registry.js';

/** How to reach one Consul agent's HTTP API. */
export interface ConsulClientOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8500. */
  port?: number;
  /** The agent's HTTP unix socket, used instead of host and port. */
  socketPath?: string;
  /** Per request; default 10 s. */
  timeoutMs?: number;
}

export interface ConsulRegistryOptions extends ConsulClientOptions {
  /** This node's id, in the meta of every registration it makes. */
  nodeId: string;
  /** The checks' TTL; default 30 s. Call refresh() every ttlMs / 3. */
  ttlMs?: number;
}

export const OWNER_TAG = 'tsswarm';
export const OWNER_META = 'tsswarm_node';
export const CHECK_NAME = 'tsswarm task';
/** How long a check may stay critical before Consul removes its service. */
export const DEREGISTER_AFTER = '10m';
const DEFAULT_TTL_MS = 30_000;
const DEFAULT_TIMEOUT_MS = 10_000;

/** The id of a task's TTL check. */
export const checkIdOf = (taskId: string) => `tsswarm:${taskId}`;

/** A service as the agent lists it (/v1/agent/services). */
interface AgentService {
  ID: string;
  Service: string;
  Address: string;
  Port: number;
  Tags: string[] | null;
  Meta: Record<string, string> | null;
}
type CheckStatus = 'passing' | 'warning' | 'critical';
/** One entry of /v1/health/service/<name>. */
interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: AgentService;
  Checks: { Status: CheckStatus }[];
}

export class ConsulRegistry implements Registry {
  private readonly consul: Consul;
  private readonly where: string;
  private readonly ttl: string;
  /** What this object was last told for each task: refresh() re-sends it. */
  private readonly wanted = new Map<string, Registration>();
  /** The last pending call of each task, so that its calls run one after another. */
  private readonly pending = new Map<string, Promise<unknown>>();

  /** Checks the options (throws `invalid_argument`); connects lazily. */
  constructor(private readonly opts: ConsulRegistryOptions) {
    if (!opts.nodeId) throw invalid('ConsulRegistry needs the node id its registrations carry');
    const ttlMs = opts.ttlMs ?? DEFAULT_TTL_MS;
    if (!Number.isInteger(ttlMs) || ttlMs < 1000)
      throw invalid(`ttlMs must be an integer of at least 1000, got ${ttlMs}`);
    this.ttl = `${ttlMs}ms`;
    ({ consul: this.consul, where: this.where } = consulClient(opts));
  }

  /** This node's registrations, as registered (without the ownership tag and meta), by id. */
  async registered(): Promise<Registration[]> {
    const [services, checks] = await Promise.all([
      this.call('list services', () => this.consul.agent.service.list()),
      this.call('list checks', () => this.consul.agent.check.list()),
    ]);
    return (Object.values(services) as AgentService[])
      .filter((s) => s.Meta?.[OWNER_META] === this.opts.nodeId)
      .map((s) => toRegistration(s, checks[checkIdOf(s.ID)]))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  async register(r: Registration): Promise<void> {
    if (!r.id || !r.name) throw invalid(`a registration needs an id and a name, got "${r.id}", "${r.name}"`);
    const wanted = { ...r };
    this.wanted.set(r.id, wanted);
    await this.serial(r.id, async () => {
      try {
        await this.send(wanted);
      } catch (e) {
        // refresh() retries what the agent could not be told, not what it refused
        if (isCode(e, 'invalid_argument') && this.wanted.get(r.id) === wanted) this.wanted.delete(r.id);
        throw e;
      }
    });
  }

  async setStatus(id: string, status: Registration['status'], note?: string): Promise<void> {
    const r = this.wanted.get(id);
    if (r) this.wanted.set(id, withStatus(r, status, note));
    await this.serial(id, () => this.sendStatus(id, status, note));
  }

  /** Removes the task's service and check; one the agent does not know is already gone. */
  async deregister(id: string): Promise<void> {
    this.wanted.delete(id);
    await this.serial(id, async () => {
      try {
        await this.call(`deregister ${id}`, () => this.consul.agent.service.deregister(id));
      } catch (e) {
        if (!isCode(e, 'not_found')) throw e;
      }
    });
  }

  /**
   * Re-sends the status of every task registered through this object, so their TTLs do not
   * expire while the node lives; one the agent lost (restarted on a new data dir, or reaped
   * after DEREGISTER_AFTER) is registered again. Tasks registered by an earlier process are
   * not known here: the node re-registers them first. Tries every task, then throws the first
   * failure.
   */
  async refresh(): Promise<void> {
    const results = await Promise.allSettled(
      [...this.wanted.keys()].map((id) =>
        this.serial(id, async () => {
          const r = this.wanted.get(id);
          if (!r) return;
          try {
            await this.sendStatus(id, r.status, r.note);
          } catch (e) {
            if (!isCode(e, 'not_found')) throw e;
            await this.send(r);
          }
        }),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Closes the client's idle connections. */
  close(): void {
    this.consul.destroy();
  }

  /** Registers r's service and check; the check starts in r's status (not critical) and output. */
  private async send(r: Registration): Promise<void> {
    const definition = {
      id: r.id,
      name: r.name,
      address: r.address,
      ...(r.port !== undefined ? { port: r.port } : {}),
      tags: [...new Set([...r.tags, OWNER_TAG])],
      meta: { ...r.meta, [OWNER_META]: this.opts.nodeId },
      check: {
        checkid: checkIdOf(r.id),
        name: CHECK_NAME,
        ttl: this.ttl,
        status: r.status,
        deregistercriticalserviceafter: DEREGISTER_AFTER,
        // the typings require a timeout, which a TTL check has not: the client never sends it
        timeout: '',
      },
    };
    await this.call(`register ${r.id}`, () => this.consul.agent.service.register(definition));
    await this.sendStatus(r.id, r.status, r.note);
  }

  private async sendStatus(id: string, status: Registration['status'], note?: string): Promise<void> {
    const update = { id: checkIdOf(id), ...(note ? { note } : {}) };
    await this.call(`set ${id} ${status}`, () =>
      status === 'passing' ? this.consul.agent.check.pass(update) : this.consul.agent.check.fail(update),
    );
  }

  /** Runs fn once the previous call for the same task has settled. */
  private serial(id: string, fn: () => Promise<void>): Promise<void> {
    const run = (this.pending.get(id) ?? Promise.resolve()).then(fn, fn);
    const settled = run.catch(() => {});
    this.pending.set(id, settled);
    void settled.then(() => {
      if (this.pending.get(id) === settled) this.pending.delete(id);
    });
    return run;
  }

  private call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return callAgent(this.where, what, fn);
  }
}

/**
 * The instances of service `name` as Consul's catalog sees them (/v1/health/service), passing
 * ones only unless `all`, by id. An instance's state is the worst of its checks (the node's
 * included, as Consul's own passing filter does).
 */
export async function lookupConsul(
  opts: ConsulClientOptions,
  name: string,
  lookup: LookupOptions = {},
): Promise<Instance[]> {
  const { consul, where } = consulClient(opts);
  try {
    const entries: HealthEntry[] = await callAgent(where, `look up ${name}`, () =>
      consul.health.service({ service: name, passing: !lookup.all }),
    );
    return entries.map(toInstance).sort((a, b) => a.id.localeCompare(b.id));
  } finally {
    consul.destroy();
  }
}

/** A client for one agent, and how errors name that agent. */
function consulClient(opts: ConsulClientOptions): { consul: Consul; where: string } {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8500;
  // papi (the client's HTTP layer) takes socketPath and timeout; the client's typings list neither
  const options = opts.socketPath
    ? { baseUrl: 'http://consul/v1', socketPath: opts.socketPath, timeout }
    : { host, port, timeout };
  return {
    consul: new Consul(options as ConstructorParameters<typeof Consul>[0]),
    where: opts.socketPath ? `unix:${opts.socketPath}` : `${host}:${port}`,
  };
}

/** What papi (the client's HTTP layer) throws. */
interface ClientError extends Error {
  isValidation?: boolean;
  isResponse?: boolean;
  statusCode?: number;
  response?: { body?: unknown };
}

/** Runs one call to the agent at `where`, turning its failure into a TsswarmError. */
async function callAgent<T>(where: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw agentError(`consul agent at ${where}: ${what}`, e as ClientError);
  }
}

function agentError(context: string, e: ClientError): TsswarmError {
  if (e.isValidation) return invalid(`${context}: ${e.message}`, e);
  if (!e.isResponse || e.statusCode === undefined)
    return new TsswarmError('daemon_unreachable', `${context}: ${e.message}`, { cause: e });
  const body = typeof e.response?.body === 'string' ? e.response.body.trim() : '';
  const message = `${context}: HTTP ${e.statusCode}: ${body || e.message}`;
  if (e.statusCode === 404) return notFound(message);
  if (e.statusCode < 500) return invalid(message, e);
  return new TsswarmError('daemon_unreachable', message, { cause: e });
}

const isCode = (e: unknown, code: ErrorCode) => e instanceof TsswarmError && e.code === code;

function withStatus(r: Registration, status: Registration['status'], note?: string): Registration {
  const { note: _old, ...rest } = r;
  return { ...rest, status, ...(note ? { note } : {}) };
}

function toRegistration(s: AgentService, check?: { Status: string; Output: string }): Registration {
  const { [OWNER_META]: _owner, ...meta } = s.Meta ?? {};
  const note = check?.Output.trim();
  return {
    id: s.ID,
    name: s.Service,
    address: s.Address,
    ...(s.Port ? { port: s.Port } : {}),
    tags: (s.Tags ?? []).filter((t) => t !== OWNER_TAG),
    meta,
    status: check?.Status === 'passing' ? 'passing' : 'critical',
    ...(note ? { note } : {}),
  };
}

const SEVERITY: Record<CheckStatus, number> = { passing: 0, warning: 1, critical: 2 };

function toInstance(e: HealthEntry): Instance {
  const s = e.Service;
  const state = e.Checks.reduce<CheckStatus>(
    (worst, c) => (SEVERITY[c.Status] > SEVERITY[worst] ? c.Status : worst),
    'passing',
  );
  return {
    id: s.ID,
    service: s.Meta?.service ?? s.Service,
    address: s.Address || e.Node.Address,
    ...(s.Meta?.network ? { network: s.Meta.network } : {}),
    ...(s.Port ? { port: s.Port } : {}),
    node: s.Meta?.[OWNER_META] ?? e.Node.Node,
    hostname: e.Node.Node,
    healthy: state === 'passing',
    state,
    meta: s.Meta ?? {},
  };
}
