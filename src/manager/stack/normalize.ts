import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JobSchedule } from '../../api/cluster.js';
import { CONCURRENCY, cronError, DEFAULT_RUN_HISTORY, MISSED, timezoneError } from '../jobs/schedule.js';
import { checkConstraint, parseSpread } from './constraints.js';
import { parseEnvFile } from './dotenv.js';
import type { Lookup } from './interpolate.js';
import { parseShortPort } from './ports.js';
import { splitShellWords } from './shellwords.js';
import { at, dotted, type LMap, locate, type Path, toJS } from './source.js';
import { didYouMean } from './suggest.js';
import type {
  BuildSpec,
  DependencySpec,
  DeploySpec,
  HealthcheckSpec,
  NetworkAttachment,
  NetworkSpec,
  NormalizedStack,
  PortSpec,
  ServiceMode,
  ServiceSpec,
  UpdateConfigSpec,
} from './types.js';
import {
  describe,
  type Parsed,
  parseBoolean,
  parseBytes,
  parseDuration,
  parseInteger,
  parseNanoCpus,
  parseNumber,
} from './units.js';

export interface NormalizeInput {
  /** The merged, schema-valid stack file. */
  root: LMap;
  name: string;
  /** Relative `env_file` paths are read from here (the first stack file's directory, as Compose). */
  projectDir: string;
  /** The interpolation environment: `environment: [KEY]` and env files take values from it. */
  lookup: Lookup;
}

export interface NormalizeResult {
  stack: NormalizedStack;
  errors: string[];
  warnings: string[];
}

/** Service keys tsswarm acts on; every other key the schema accepts is reported as unsupported. */
const SERVICE_KEYS = new Set([
  'image',
  'command',
  'entrypoint',
  'environment',
  'env_file',
  'working_dir',
  'user',
  'hostname',
  'labels',
  'healthcheck',
  'stop_grace_period',
  'stop_signal',
  'ulimits',
  'cap_add',
  'cap_drop',
  'ports',
  'networks',
  'depends_on',
  'deploy',
]);
const DEPLOY_KEYS = new Set([
  'mode',
  'replicas',
  'placement',
  'resources',
  'restart_policy',
  'update_config',
  'rollback_config',
  'labels',
  'endpoint_mode',
]);
const TOP_KEYS = new Set(['version', 'name', 'services', 'networks']);
const NETWORK_KEYS = new Set([
  'name',
  'driver',
  'driver_opts',
  'attachable',
  'internal',
  'labels',
  'ipam',
  'external',
]);
const MODES: ServiceMode[] = ['replicated', 'global', 'replicated-job', 'global-job'];
const DEFAULT_NETWORK = 'default';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const has = (o: Obj, k: string) => Object.hasOwn(o, k) && o[k] !== undefined && o[k] !== null;

/** Semantic checks, defaults and the typed model; collects every error rather than stopping at the first. */
export function normalize(input: NormalizeInput): NormalizeResult {
  return new Normalizer(input).run();
}

class Normalizer {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  private readonly doc: Obj;
  private readonly usedNetworks = new Set<string>();
  private readonly published = new Map<string, Path>();

  constructor(private readonly input: NormalizeInput) {
    this.doc = obj(toJS(input.root));
  }

  private where(path: Path): string {
    return at(locate(this.input.root, path));
  }
  private error(path: Path, msg: string): void {
    this.errors.push(`${this.where(path)}: ${dotted(path)}: ${msg}`);
  }
  private warn(path: Path, msg: string): void {
    this.warnings.push(`${this.where(path)}: ${dotted(path)}: ${msg}`);
  }
  private unsupported(path: Path, what = 'not supported by tsswarm yet; ignored'): void {
    this.warn(path, what);
  }
  /** Unwraps a parse result, reporting its error at `path`; `fallback` keeps the run going. */
  private take<T>(path: Path, r: Parsed<T>, fallback: T): T {
    if (r.ok) return r.value;
    this.error(path, r.error);
    return fallback;
  }
  private optional<T>(o: Obj, key: string, path: Path, parse: (v: unknown) => Parsed<T>): T | undefined {
    return has(o, key) ? this.take([...path, key], parse(o[key]), undefined as T) : undefined;
  }
  private oneOf<T extends string>(o: Obj, key: string, path: Path, allowed: readonly T[], dflt: T): T {
    if (!has(o, key)) return dflt;
    const v = o[key];
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    this.error(
      [...path, key],
      `must be one of ${allowed.map((a) => `"${a}"`).join(', ')} (got ${describe(v)})${typeof v === 'string' ? didYouMean(v, allowed) : ''}`,
    );
    return dflt;
  }

  run(): NormalizeResult {
    const { doc } = this;
    for (const key of Object.keys(doc)) {
      if (!TOP_KEYS.has(key) && !key.startsWith('x-')) this.unsupported([key]);
    }
    const services = obj(doc.services);
    const names = Object.keys(services);
    if (names.length === 0) this.error(['services'], 'the stack defines no services');

    const out: Record<string, ServiceSpec> = {};
    for (const name of names) out[name] = this.service(name, obj(services[name]));
    this.checkDependencyCycles(out);

    const networks = this.networks();
    const stack: NormalizedStack = { name: this.input.name, services: out, networks };
    return { stack, errors: this.errors, warnings: this.warnings };
  }

  private service(key: string, s: Obj): ServiceSpec {
    const path = ['services', key];
    const scoped = `${this.input.name}_${key}`;
    if (scoped.length > 63)
      this.error(
        path,
        `the service name "${scoped}" is longer than 63 characters (a DNS label): shorten the stack or service name`,
      );
    const extensions: Record<string, unknown> = {};
    for (const k of Object.keys(s)) {
      if (k.startsWith('x-')) extensions[k] = s[k];
      else if (!SERVICE_KEYS.has(k) && k !== 'build') this.unsupported([...path, k]);
    }

    const image = typeof s.image === 'string' ? s.image.trim() : '';
    if (!image) {
      this.error(
        has(s, 'image') ? [...path, 'image'] : path,
        has(s, 'build')
          ? 'a service with build needs image: the name (with its registry) the build is pushed to, for the nodes to pull'
          : 'image is required (the image the service runs)',
      );
    }
    const build = has(s, 'build') ? this.build(s.build, [...path, 'build']) : undefined;

    const tsswarm = obj(extensions['x-tsswarm']);
    // a schedule makes a job: replicated-job unless deploy.mode says global-job
    const deploy = this.deploy(
      path,
      obj(s.deploy),
      has(tsswarm, 'schedule') ? 'replicated-job' : 'replicated',
    );
    const schedule = this.schedule(tsswarm, [...path, 'x-tsswarm'], deploy.mode);
    const spec: ServiceSpec = {
      name: scoped,
      image,
      ...(build ? { build } : {}),
      command: this.argv(s, 'command', path),
      entrypoint: this.argv(s, 'entrypoint', path),
      env: this.environment(s, path),
      workingDir: typeof s.working_dir === 'string' ? s.working_dir : undefined,
      user: has(s, 'user') ? String(s.user) : undefined,
      hostname: typeof s.hostname === 'string' ? s.hostname : undefined,
      labels: this.dict(s.labels, [...path, 'labels']),
      healthcheck: has(s, 'healthcheck')
        ? this.healthcheck(obj(s.healthcheck), [...path, 'healthcheck'])
        : undefined,
      stopGracePeriodMs: this.optional(s, 'stop_grace_period', path, parseDuration) ?? 10_000,
      stopSignal: typeof s.stop_signal === 'string' ? s.stop_signal : undefined,
      ulimits: this.ulimits(obj(s.ulimits), [...path, 'ulimits']),
      capAdd: this.capabilities(s.cap_add),
      capDrop: this.capabilities(s.cap_drop),
      ports: this.ports(s.ports, [...path, 'ports'], deploy.endpointMode),
      networks: this.attachments(s.networks, [...path, 'networks']),
      dependsOn: this.dependsOn(s.depends_on, [...path, 'depends_on'], key),
      deploy,
      schedule,
      extensions,
    };
    for (const k of Object.keys(spec) as (keyof ServiceSpec)[]) if (spec[k] === undefined) delete spec[k];
    return spec;
  }

  /**
   * A job's schedule, from `x-tsswarm: {schedule, timezone, concurrency, history, missed}`
   * (node-cron expressions; other x-tsswarm keys pass through untouched).
   */
  private schedule(x: Obj, path: Path, mode: DeploySpec['mode']): JobSchedule | undefined {
    const keys = ['timezone', 'concurrency', 'history', 'missed'];
    if (!has(x, 'schedule')) {
      for (const k of keys) if (has(x, k)) this.error([...path, k], 'needs a schedule (x-tsswarm.schedule)');
      return undefined;
    }
    const errors = this.errors.length;
    const cron = x.schedule;
    if (typeof cron !== 'string')
      this.error([...path, 'schedule'], `must be a cron expression string (got ${describe(cron)})`);
    else {
      const e = cronError(cron);
      if (e) this.error([...path, 'schedule'], e);
    }
    if (mode !== 'replicated-job' && mode !== 'global-job')
      this.error(
        [...path, 'schedule'],
        `a schedule needs deploy.mode replicated-job or global-job (this service is ${mode}): a scheduled service runs to completion at each firing`,
      );
    let timezone = 'UTC';
    if (has(x, 'timezone')) {
      const tz = x.timezone;
      const e = typeof tz === 'string' ? timezoneError(tz) : `must be a time zone name (got ${describe(tz)})`;
      if (e) this.error([...path, 'timezone'], e);
      else timezone = tz as string;
    }
    const concurrency = this.oneOf(x, 'concurrency', path, CONCURRENCY, 'forbid');
    const missed = this.oneOf(x, 'missed', path, MISSED, 'run-once');
    let history = DEFAULT_RUN_HISTORY;
    if (has(x, 'history')) {
      const h = x.history;
      if (typeof h === 'number' && Number.isInteger(h) && h >= 1) history = h;
      else this.error([...path, 'history'], `must be a whole number ≥ 1 (got ${describe(h)})`);
    }
    if (this.errors.length > errors || typeof cron !== 'string') return undefined;
    return { cron: cron.trim(), timezone, concurrency, history, missed };
  }

  /** `command`/`entrypoint`: a list as written, a string split shell-like (never run through sh). */
  /** `build: CONTEXT` or `{context, dockerfile, args, target}`; the context relative to the stack file. */
  private build(v: unknown, path: Path): BuildSpec | undefined {
    const b = typeof v === 'string' ? { context: v } : obj(v);
    if (typeof v !== 'string' && (v === null || typeof v !== 'object' || Array.isArray(v))) {
      this.error(path, `must be a context path or a mapping (got ${describe(v)})`);
      return undefined;
    }
    for (const k of Object.keys(b)) {
      if (!['context', 'dockerfile', 'args', 'target'].includes(k))
        this.warn([...path, k], 'not supported by tsswarm build; ignored');
    }
    const context = typeof b.context === 'string' && b.context.trim() ? b.context.trim() : '.';
    if (b.dockerfile !== undefined && typeof b.dockerfile !== 'string')
      this.error([...path, 'dockerfile'], `must be a path (got ${describe(b.dockerfile)})`);
    if (b.target !== undefined && typeof b.target !== 'string')
      this.error([...path, 'target'], `must be a stage name (got ${describe(b.target)})`);
    return {
      context: resolve(this.input.projectDir, context),
      dockerfile: typeof b.dockerfile === 'string' ? b.dockerfile : 'Dockerfile',
      args: this.dict(b.args, [...path, 'args']),
      ...(typeof b.target === 'string' ? { target: b.target } : {}),
    };
  }

  private argv(s: Obj, key: string, path: Path): string[] | undefined {
    const v = s[key];
    if (v === undefined || v === null) return undefined;
    if (Array.isArray(v)) return v.map(String);
    const r = splitShellWords(String(v));
    if (r.ok) return r.value;
    this.error([...path, key], r.error);
    return undefined;
  }

  /** A list of `KEY=VALUE` (or `KEY`) or a map → string map. `fromEnv` resolves bare keys. */
  private dict(v: unknown, path: Path, fromEnv = false): Record<string, string> {
    const out: Record<string, string> = {};
    const set = (k: string, value: unknown, at: Path) => {
      if (k === '') return this.error(at, 'empty key');
      if (value === null || value === undefined) {
        if (!fromEnv) out[k] = '';
        else {
          const e = this.input.lookup(k);
          if (e !== undefined) out[k] = e;
        }
      } else out[k] = String(value);
    };
    if (Array.isArray(v)) {
      v.forEach((item, i) => {
        const s = String(item);
        const eq = s.indexOf('=');
        set(eq < 0 ? s : s.slice(0, eq), eq < 0 ? null : s.slice(eq + 1), [...path, i]);
      });
    } else if (isObj(v)) for (const [k, value] of Object.entries(v)) set(k, value, [...path, k]);
    return out;
  }

  private environment(s: Obj, path: Path): Record<string, string> {
    const env: Record<string, string> = {};
    const files: unknown[] = !has(s, 'env_file') ? [] : Array.isArray(s.env_file) ? s.env_file : [s.env_file];
    files.forEach((entry, i) => {
      const at: Path = Array.isArray(s.env_file) ? [...path, 'env_file', i] : [...path, 'env_file'];
      const e: Obj = isObj(entry) ? entry : { path: entry };
      const required = has(e, 'required')
        ? this.take([...at, 'required'], parseBoolean(e.required), true)
        : true;
      if (has(e, 'format') && e.format !== 'raw' && e.format !== '')
        this.warn(
          [...at, 'format'],
          `env file format ${describe(e.format)} is not supported; read as KEY=VALUE lines`,
        );
      const file = resolve(this.input.projectDir, String(e.path));
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' && !required) return;
        this.error(
          at,
          code === 'ENOENT'
            ? `env file ${file} not found`
            : `cannot read env file ${file}: ${(err as Error).message}`,
        );
        return;
      }
      const r = parseEnvFile(text, file, this.input.lookup);
      this.errors.push(...r.errors);
      this.warnings.push(...r.warnings);
      Object.assign(env, r.vars);
    });
    Object.assign(env, this.dict(s.environment, [...path, 'environment'], true));
    return env;
  }

  private healthcheck(h: Obj, path: Path): HealthcheckSpec {
    let test: string[] | undefined;
    const disabled = has(h, 'disable') && this.take([...path, 'disable'], parseBoolean(h.disable), false);
    if (disabled) {
      if (has(h, 'test')) this.error([...path, 'disable'], 'disable: true and test cannot be set together');
      test = ['NONE'];
    } else if (typeof h.test === 'string') test = ['CMD-SHELL', h.test];
    else if (Array.isArray(h.test)) {
      test = h.test.map(String);
      const kind = test[0];
      if (kind === 'NONE') {
        if (test.length > 1) this.error([...path, 'test'], '["NONE"] takes no other items');
      } else if (kind === 'CMD' || kind === 'CMD-SHELL') {
        if (test.length < 2) this.error([...path, 'test'], `${kind} needs a command after it`);
        else if (kind === 'CMD-SHELL' && test.length > 2) test = ['CMD-SHELL', test.slice(1).join(' ')];
      } else {
        this.error(
          [...path, 'test'],
          `a list must start with "NONE", "CMD" or "CMD-SHELL" (got ${describe(kind)}); write a string for a shell command`,
        );
      }
    }
    const duration = (key: string, dflt: number) => {
      const ms = this.optional(h, key, path, parseDuration) ?? dflt;
      if (ms > 0 && ms < 1) this.error([...path, key], 'must be at least 1ms');
      return ms;
    };
    const hc: HealthcheckSpec = {
      test,
      intervalMs: duration('interval', 30_000),
      timeoutMs: duration('timeout', 30_000),
      startPeriodMs: duration('start_period', 0),
      startIntervalMs: duration('start_interval', 5_000),
      retries: this.nonNegative(h, 'retries', path, 3),
    };
    if (!test) delete hc.test;
    return hc;
  }

  private nonNegative(o: Obj, key: string, path: Path, dflt: number): number {
    const n = this.optional(o, key, path, parseInteger);
    if (n === undefined) return dflt;
    if (n < 0) {
      this.error([...path, key], `must not be negative (got ${n})`);
      return dflt;
    }
    return n;
  }

  private ulimits(u: Obj, path: Path): Record<string, { soft: number; hard: number }> {
    const out: Record<string, { soft: number; hard: number }> = {};
    for (const [name, v] of Object.entries(u)) {
      if (name.startsWith('x-')) continue;
      const at = [...path, name];
      if (isObj(v)) {
        const soft = this.take([...at, 'soft'], parseInteger(v.soft), 0);
        const hard = this.take([...at, 'hard'], parseInteger(v.hard), 0);
        if (soft > hard) this.error(at, `soft limit ${soft} is above the hard limit ${hard}`);
        out[name] = { soft, hard };
      } else {
        const n = this.take(at, parseInteger(v), 0);
        out[name] = { soft: n, hard: n };
      }
    }
    return out;
  }

  private capabilities(v: unknown): string[] {
    if (!Array.isArray(v)) return [];
    return v.map((c) => {
      const s = String(c).trim().toUpperCase();
      return s === 'ALL' || s.startsWith('CAP_') ? s : `CAP_${s}`;
    });
  }

  private ports(v: unknown, path: Path, endpointMode: 'vip' | 'dnsrr'): PortSpec[] {
    if (!Array.isArray(v)) return [];
    const out: PortSpec[] = [];
    v.forEach((item, i) => {
      const at = [...path, i];
      const before = out.length;
      if (isObj(item)) this.longPort(item, at, out);
      else this.shortPort(item, at, out);
      for (const p of out.slice(before)) {
        if (p.mode === 'ingress' && endpointMode === 'dnsrr')
          this.error(
            at,
            'a port published in ingress mode needs endpoint_mode vip (use mode: host with dnsrr)',
          );
        if (p.published !== undefined && p.mode === 'ingress') {
          const id = `${p.published}/${p.protocol}`;
          const prev = this.published.get(id);
          if (prev)
            this.error(at, `port ${id} is already published at ${this.where(prev)} (${dotted(prev)})`);
          else this.published.set(id, at);
        }
      }
    });
    return out;
  }

  private longPort(p: Obj, at: Path, out: PortSpec[]): void {
    for (const k of ['host_ip', 'name', 'app_protocol']) if (has(p, k)) this.unsupported([...at, k]);
    const target = this.portNumber(p.target, [...at, 'target']);
    const published = has(p, 'published') ? this.portNumber(p.published, [...at, 'published']) : undefined;
    const protocol = this.oneOf(p, 'protocol', at, ['tcp', 'udp', 'sctp'] as const, 'tcp');
    const mode = this.oneOf(p, 'mode', at, ['ingress', 'host'] as const, 'ingress');
    if (target === undefined) return;
    out.push(published === undefined ? { target, protocol, mode } : { target, published, protocol, mode });
  }

  private portNumber(v: unknown, at: Path): number | undefined {
    const n = this.take(at, parseInteger(v), undefined as unknown as number);
    if (n === undefined) return undefined;
    if (n < 1 || n > 65535) {
      this.error(at, `port must be between 1 and 65535 (got ${n})`);
      return undefined;
    }
    return n;
  }

  /** `[HOST_IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]` or a number. */
  private shortPort(item: unknown, at: Path, out: PortSpec[]): void {
    const spec = String(item).trim();
    const r = parseShortPort(spec);
    if (!r.ok) {
      this.error(at, `invalid port ${JSON.stringify(spec)}: ${r.error}`);
      return;
    }
    if (r.value.hostIp)
      this.warn(
        at,
        `the host IP ${r.value.hostIp} is not supported (ports are published on all addresses); ignored`,
      );
    out.push(...r.value.ports);
  }

  private attachments(v: unknown, path: Path): NetworkAttachment[] {
    const declared = obj(this.doc.networks);
    const entries: [string, unknown, Path][] = Array.isArray(v)
      ? v.map((n, i) => [String(n), null, [...path, i]])
      : isObj(v)
        ? Object.entries(v).map(([n, c]) => [n, c, [...path, n]])
        : [];
    if (entries.length === 0) entries.push([DEFAULT_NETWORK, null, path]);
    const out: NetworkAttachment[] = [];
    for (const [key, config, at] of entries) {
      if (key !== DEFAULT_NETWORK && !Object.hasOwn(declared, key)) {
        this.error(
          at,
          `network "${key}" is not declared under the top-level networks${didYouMean(key, Object.keys(declared))}`,
        );
        continue;
      }
      this.usedNetworks.add(key);
      const c = obj(config);
      for (const k of Object.keys(c))
        if (k !== 'aliases' && !k.startsWith('x-')) this.unsupported([...at, k]);
      out.push({
        network: key,
        name: this.networkName(key, obj(declared[key])),
        aliases: Array.isArray(c.aliases) ? c.aliases.map(String) : [],
      });
    }
    return out;
  }

  private networkName(key: string, n: Obj): string {
    const external = n.external;
    if (isObj(external) && typeof external.name === 'string') return external.name;
    if (typeof n.name === 'string' && n.name !== '') return n.name;
    if (external === true || external === 'true') return key;
    return `${this.input.name}_${key}`;
  }

  private dependsOn(v: unknown, path: Path, self: string): Record<string, DependencySpec> {
    const services = obj(this.doc.services);
    const out: Record<string, DependencySpec> = {};
    const entries: [string, Obj, Path][] = Array.isArray(v)
      ? v.map((n, i) => [String(n), { condition: 'service_started' }, [...path, i]])
      : isObj(v)
        ? Object.entries(v).map(([n, c]) => [n, obj(c), [...path, n]])
        : [];
    for (const [name, c, at] of entries) {
      if (name === self) {
        this.error(at, `service "${self}" cannot depend on itself`);
        continue;
      }
      if (!Object.hasOwn(services, name)) {
        this.error(
          at,
          `service "${name}" is not defined in this stack${didYouMean(name, Object.keys(services))}`,
        );
        continue;
      }
      if (has(c, 'restart')) this.unsupported([...at, 'restart']);
      out[name] = {
        condition: this.oneOf(
          c,
          'condition',
          at,
          ['service_started', 'service_healthy', 'service_completed_successfully'] as const,
          'service_started',
        ),
        required: has(c, 'required') ? this.take([...at, 'required'], parseBoolean(c.required), true) : true,
      };
    }
    return out;
  }

  /** Reports each dependency cycle once, as `a -> b -> a`. */
  private checkDependencyCycles(services: Record<string, ServiceSpec>): void {
    const state = new Map<string, 'visiting' | 'done'>();
    const stack: string[] = [];
    const visit = (name: string) => {
      state.set(name, 'visiting');
      stack.push(name);
      for (const dep of Object.keys(services[name]?.dependsOn ?? {})) {
        if (state.get(dep) === 'visiting') {
          const cycle = [...stack.slice(stack.indexOf(dep)), dep];
          this.error(['services', name, 'depends_on', dep], `dependency cycle: ${cycle.join(' -> ')}`);
        } else if (!state.has(dep)) visit(dep);
      }
      stack.pop();
      state.set(name, 'done');
    };
    for (const name of Object.keys(services)) if (!state.has(name)) visit(name);
  }

  private deploy(servicePath: Path, d: Obj, defaultMode: DeploySpec['mode']): DeploySpec {
    const path = [...servicePath, 'deploy'];
    for (const k of Object.keys(d))
      if (!DEPLOY_KEYS.has(k) && !k.startsWith('x-')) this.unsupported([...path, k]);
    const mode = this.oneOf(d, 'mode', path, MODES, defaultMode);
    const job = mode.endsWith('-job');
    const replicatedMode = mode === 'replicated' || mode === 'replicated-job';
    let replicas: number | undefined;
    if (has(d, 'replicas')) {
      if (!replicatedMode)
        this.error(
          [...path, 'replicas'],
          `replicas cannot be used with mode ${mode} (only replicated or replicated-job)`,
        );
      else replicas = this.nonNegative(d, 'replicas', path, 1);
    } else if (replicatedMode) replicas = 1;

    const placement = obj(d.placement);
    const pPath = [...path, 'placement'];
    const constraints: string[] = [];
    (Array.isArray(placement.constraints) ? placement.constraints : []).forEach((c, i) => {
      const r = checkConstraint(String(c));
      if (r.ok) constraints.push(r.value);
      else this.error([...pPath, 'constraints', i], r.error);
    });
    const preferences: { spread: string }[] = [];
    (Array.isArray(placement.preferences) ? placement.preferences : []).forEach((p, i) => {
      const at = [...pPath, 'preferences', i];
      if (!has(obj(p), 'spread')) this.error(at, 'a preference is { spread: node.labels.<name> }');
      else {
        const r = parseSpread(String(obj(p).spread));
        if (r.ok) preferences.push({ spread: r.value });
        else this.error([...at, 'spread'], r.error);
      }
    });
    const maxReplicasPerNode = this.nonNegative(placement, 'max_replicas_per_node', pPath, 0);
    if (maxReplicasPerNode > 0 && !replicatedMode)
      this.error(
        [...pPath, 'max_replicas_per_node'],
        `cannot be used with mode ${mode} (only replicated or replicated-job)`,
      );

    const resources = obj(d.resources);
    const rPath = [...path, 'resources'];
    const limits = obj(resources.limits);
    const reservations = obj(resources.reservations);
    for (const k of Object.keys(reservations))
      if (k !== 'cpus' && k !== 'memory' && !k.startsWith('x-'))
        this.unsupported([...rPath, 'reservations', k]);
    const amounts = (o: Obj, at: Path) => {
      const nanoCpus = this.optional(o, 'cpus', at, parseNanoCpus);
      if (nanoCpus !== undefined && nanoCpus > 0 && nanoCpus < 1e6)
        this.error([...at, 'cpus'], `must be at least 0.001 (got ${describe(o.cpus)})`);
      const memoryBytes = this.optional(o, 'memory', at, parseBytes);
      if (memoryBytes !== undefined && memoryBytes > 0 && memoryBytes < 4 * 1024 * 1024)
        this.error([...at, 'memory'], `must be at least 4MiB (got ${describe(o.memory)})`);
      return {
        ...(nanoCpus ? { nanoCpus } : {}),
        ...(memoryBytes ? { memoryBytes } : {}),
      };
    };
    const pids = has(limits, 'pids') ? this.nonNegative(limits, 'pids', [...rPath, 'limits'], 0) : 0;

    const rp = obj(d.restart_policy);
    const rpPath = [...path, 'restart_policy'];
    const condition = this.oneOf(
      rp,
      'condition',
      rpPath,
      ['none', 'on-failure', 'any'] as const,
      job ? 'on-failure' : 'any',
    );
    if (job && condition === 'any')
      this.error(
        [...rpPath, 'condition'],
        `"any" cannot be used with mode ${mode}: a job's tasks are not run again once they succeed (use on-failure)`,
      );

    return {
      mode,
      ...(replicas === undefined ? {} : { replicas }),
      placement: { constraints, preferences, maxReplicasPerNode },
      resources: {
        limits: { ...amounts(limits, [...rPath, 'limits']), ...(pids ? { pids } : {}) },
        reservations: amounts(reservations, [...rPath, 'reservations']),
      },
      restartPolicy: {
        condition,
        delayMs: this.optional(rp, 'delay', rpPath, parseDuration) ?? 5_000,
        maxAttempts: this.nonNegative(rp, 'max_attempts', rpPath, 0),
        windowMs: this.optional(rp, 'window', rpPath, parseDuration) ?? 0,
      },
      updateConfig: this.updateConfig(obj(d.update_config), [...path, 'update_config'], true),
      rollbackConfig: this.updateConfig(obj(d.rollback_config), [...path, 'rollback_config'], false),
      labels: this.dict(d.labels, [...path, 'labels']),
      endpointMode: this.oneOf(d, 'endpoint_mode', path, ['vip', 'dnsrr'] as const, 'vip'),
    };
  }

  private updateConfig(u: Obj, path: Path, isUpdate: boolean): UpdateConfigSpec {
    const actions = isUpdate
      ? (['pause', 'continue', 'rollback'] as const)
      : (['pause', 'continue'] as const);
    const ratio = this.optional(u, 'max_failure_ratio', path, parseNumber) ?? 0;
    if (ratio < 0 || ratio > 1)
      this.error([...path, 'max_failure_ratio'], `must be between 0 and 1 (got ${ratio})`);
    return {
      parallelism: this.nonNegative(u, 'parallelism', path, 1),
      delayMs: this.optional(u, 'delay', path, parseDuration) ?? 0,
      failureAction: this.oneOf<UpdateConfigSpec['failureAction']>(
        u,
        'failure_action',
        path,
        actions,
        'pause',
      ),
      monitorMs: this.optional(u, 'monitor', path, parseDuration) ?? 5_000,
      maxFailureRatio: ratio,
      order: this.oneOf(u, 'order', path, ['stop-first', 'start-first'] as const, 'stop-first'),
    };
  }

  /** Top-level networks used by services (plus `<stack>_default` when needed), as Docker creates them. */
  private networks(): Record<string, NetworkSpec> {
    const declared = obj(this.doc.networks);
    const out: Record<string, NetworkSpec> = {};
    for (const key of Object.keys(declared)) {
      if (!this.usedNetworks.has(key) && key !== DEFAULT_NETWORK)
        this.warn(['networks', key], `network "${key}" is not used by any service; not created`);
    }
    for (const key of this.usedNetworks) {
      const n = obj(declared[key]);
      const path = ['networks', key];
      for (const k of Object.keys(n))
        if (!NETWORK_KEYS.has(k) && !k.startsWith('x-')) this.unsupported([...path, k]);
      const external =
        has(n, 'external') &&
        (isObj(n.external) || this.take([...path, 'external'], parseBoolean(n.external), false));
      if (isObj(n.external))
        this.warn([...path, 'external'], 'external: { name } is deprecated; write external: true and name:');
      if (external) {
        for (const k of ['driver', 'driver_opts', 'ipam', 'internal', 'attachable', 'labels'])
          if (has(n, k))
            this.error(
              [...path, k],
              `an external network is created outside the stack: "${k}" cannot be set`,
            );
      }
      const driver = this.oneOf(n, 'driver', path, ['overlay', 'bridge'] as const, 'overlay');
      const ipam = obj(n.ipam);
      const ipamPath = [...path, 'ipam'];
      for (const k of Object.keys(ipam))
        if (k !== 'driver' && k !== 'config' && !k.startsWith('x-')) this.unsupported([...ipamPath, k]);
      const config = (Array.isArray(ipam.config) ? ipam.config : []).flatMap((c, i) => {
        const o = obj(c);
        const at = [...ipamPath, 'config', i];
        for (const k of Object.keys(o))
          if (!['subnet', 'gateway', 'ip_range'].includes(k) && !k.startsWith('x-'))
            this.unsupported([...at, k]);
        if (!has(o, 'subnet')) {
          this.error(at, 'subnet is required');
          return [];
        }
        const pool: NetworkSpec['ipam']['config'][number] = { subnet: String(o.subnet) };
        if (!isCidr(pool.subnet))
          this.error([...at, 'subnet'], `must be a CIDR such as 10.10.0.0/24 (got ${describe(o.subnet)})`);
        if (has(o, 'gateway')) pool.gateway = String(o.gateway);
        if (has(o, 'ip_range')) pool.ipRange = String(o.ip_range);
        if (pool.ipRange && !isCidr(pool.ipRange))
          this.error([...at, 'ip_range'], `must be a CIDR (got ${describe(o.ip_range)})`);
        return [pool];
      });
      const flag = (k: string) => (has(n, k) ? this.take([...path, k], parseBoolean(n[k]), false) : false);
      out[key] = {
        name: this.networkName(key, n),
        driver,
        driverOpts: this.dict(n.driver_opts, [...path, 'driver_opts']),
        attachable: flag('attachable'),
        internal: flag('internal'),
        labels: this.dict(n.labels, [...path, 'labels']),
        ipam: { ...(typeof ipam.driver === 'string' ? { driver: ipam.driver } : {}), config },
        external,
      };
    }
    return out;
  }
}

function isCidr(s: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const bits = Number(m[2]);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(m[1]!))
    return bits <= 32 && m[1]!.split('.').every((o) => Number(o) <= 255);
  return m[1]!.includes(':') && bits <= 128;
}
