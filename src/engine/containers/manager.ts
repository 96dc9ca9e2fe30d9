import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import {
  closeSync,
  promises as fs,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join, relative } from 'node:path';
import { conflict, invalid, notFound, TsswarmError } from '../../api/errors.js';
import { parseBytes, resolveLimits } from '../cgroups/limits.js';
import type { CgroupDriver, CgroupStats } from '../cgroups/types.js';
import { atomicWriteJson } from '../fsutil.js';
import { hostInfo } from '../host.js';
import type { ImageStore } from '../images/store.js';
import { resolveCapabilities } from './capabilities.js';
import { mergeEnv, parseUserns, resolveCommand } from './command.js';
import { HealthMonitor, initialHealth, OUTPUT_KEEP, resolveHealthcheck } from './health.js';
import { generateName, newContainerId, validateName } from './naming.js';
import { type Directive, MASKED_PATHS, READONLY_PATHS, renderSpec } from './shimSpec.js';
import { signalNumber } from './signals.js';
import type { ContainerConfig, ContainerCreateRequest, ContainerRecord, ContainerState } from './types.js';

export interface ContainerManagerOptions {
  dataRoot: string;
  shimPath: string;
  images: ImageStore;
  cgroups: CgroupDriver;
  /** Parent cgroup name every container's cgroup is created under. */
  cgroupParent: string;
  log?: (msg: string) => void;
}

export interface ExecRequest {
  cmd: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  tty?: boolean;
  privileged?: boolean;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024;
const DEFAULT_LOG_MAX_FILES = 3;

/**
 * The engine's containers: creates their bundles, starts them through the C shim,
 * watches them exit, and keeps their state on disk so a restarted daemon re-adopts them.
 */
export class ContainerManager {
  private readonly containers = new Map<string, ContainerRecord>();
  private readonly events = new EventEmitter();
  private readonly watchers = new Map<string, Socket>();
  /** Log followers per container: an auto-removed container waits for them to finish reading. */
  private readonly holds = new Map<string, number>();
  private readonly pendingRemove = new Set<string>();
  private readonly monitors = new Map<string, HealthMonitor>();
  private closing = false;
  private readonly root: string;

  constructor(private readonly opts: ContainerManagerOptions) {
    this.root = join(opts.dataRoot, 'containers');
    this.events.setMaxListeners(0);
  }

  bundle(id: string): string {
    return join(this.root, id);
  }

  /**
   * The shim's control socket. A unix socket path must fit in 108 bytes, so a long one is
   * given relative to the working directory (the daemon works in its data root).
   */
  private ctlPath(id: string): string {
    const abs = join(this.bundle(id), 'ctl.sock');
    if (abs.length < 100) return abs;
    const rel = relative(process.cwd(), abs);
    if (rel.length >= 100)
      throw new TsswarmError('internal', `the data root path is too long for unix sockets: ${abs}`);
    return rel;
  }

  private cgroupName(id: string): string {
    return `${this.opts.cgroupParent}/${id}`;
  }

  /** Loads every container from disk and re-adopts the running ones. */
  async init(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    for (const id of await fs.readdir(this.root)) {
      if (id.startsWith('.trash-')) {
        await fs.rm(join(this.root, id), { recursive: true, force: true });
        continue;
      }
      const dir = this.bundle(id);
      try {
        const config = JSON.parse(await fs.readFile(join(dir, 'config.json'), 'utf8')) as ContainerConfig & {
          name: string;
          created: string;
        };
        const state = JSON.parse(await fs.readFile(join(dir, 'state.json'), 'utf8')) as ContainerState;
        const rec: ContainerRecord = { id, name: config.name, created: config.created, config, state };
        this.containers.set(id, rec);
      } catch {
        // a bundle whose create never finished: nothing runs from it
        await fs.rm(dir, { recursive: true, force: true });
      }
    }
    for (const rec of this.containers.values()) {
      if (rec.state.status === 'running') await this.adopt(rec);
      else if (rec.state.status === 'removing') await this.remove(rec.id, { force: true }).catch(() => {});
    }
  }

  private async adopt(rec: ContainerRecord): Promise<void> {
    if (shimAlive(rec.state.shimPid, this.bundle(rec.id))) {
      this.watchExit(rec);
      this.monitorHealth(rec);
      this.opts.log?.(`re-adopted running container ${rec.name} (pid ${rec.state.pid})`);
    } else {
      await this.finishExit(rec);
    }
  }

  list(all = false): ContainerRecord[] {
    return [...this.containers.values()]
      .filter((c) => all || c.state.status === 'running')
      .sort((a, b) => b.created.localeCompare(a.created));
  }

  /** By full id, unique id prefix or name. */
  get(ref: string): ContainerRecord {
    const name = ref.startsWith('/') ? ref.slice(1) : ref;
    for (const c of this.containers.values()) if (c.name === name) return c;
    const exact = this.containers.get(ref);
    if (exact) return exact;
    const matches = ref.length >= 1 ? [...this.containers.values()].filter((c) => c.id.startsWith(ref)) : [];
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw invalid(`container id prefix "${ref}" is ambiguous`);
    throw notFound(`no such container: ${ref}`);
  }

  /** Image ids used by any container (an image in use cannot be removed). */
  imageUser(imageId: string): string | undefined {
    for (const c of this.containers.values()) if (c.config.imageId === imageId) return c.name;
    return undefined;
  }

  async create(req: ContainerCreateRequest): Promise<{ record: ContainerRecord; warnings: string[] }> {
    if (!req.image) throw invalid('an image is required');
    const image = this.opts.images.resolve(req.image);
    const name = req.name ? validateName(req.name) : generateName((n) => this.nameTaken(n));
    if (this.nameTaken(name)) {
      throw conflict(
        `the container name "${name}" is already in use; remove that container or choose another name`,
      );
    }
    const id = newContainerId();
    const { path, args } = resolveCommand(image.config, { entrypoint: req.entrypoint, cmd: req.cmd });
    const limits = resolveLimits({ ...(req.resources ?? {}), devices: req.devices ?? [] }, hostInfo());
    const hostname = req.hostname ?? id.slice(0, 12);
    if (!/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/.test(hostname)) throw invalid(`invalid hostname "${hostname}"`);
    const env = mergeEnv(
      [DEFAULT_PATH, `HOSTNAME=${hostname}`],
      image.config.Env ?? [],
      req.tty ? ['TERM=xterm'] : [],
      req.env ?? [],
    );
    const logOpts = req.logOpts ?? {};
    for (const k of Object.keys(logOpts)) {
      if (k !== 'max-size' && k !== 'max-file')
        throw invalid(`unknown log option "${k}": use max-size or max-file`);
    }
    const maxFiles = logOpts['max-file'] !== undefined ? Number(logOpts['max-file']) : DEFAULT_LOG_MAX_FILES;
    if (!Number.isInteger(maxFiles) || maxFiles < 1)
      throw invalid(`invalid max-file "${logOpts['max-file']}": a whole number ≥ 1`);
    const config: ContainerConfig = {
      image: req.image,
      imageId: image.id,
      path,
      args,
      env,
      workingDir: req.workingDir || image.config.WorkingDir || '/',
      user: req.user || image.config.User || '',
      hostname,
      tty: !!req.tty,
      openStdin: !!req.openStdin,
      autoRemove: !!req.autoRemove,
      init: !!req.init,
      userns: req.userns ? parseUserns(req.userns) : undefined,
      capabilities: resolveCapabilities(req.capAdd, req.capDrop),
      devices: (req.devices ?? []).map(parseDeviceMapping),
      stopSignal: req.stopSignal || image.config.StopSignal || 'SIGTERM',
      stopTimeout: req.stopTimeout ?? 10,
      labels: { ...(image.config.Labels ?? {}), ...(req.labels ?? {}) },
      logMaxSize: logOpts['max-size'] !== undefined ? parseBytes(logOpts['max-size']) : DEFAULT_LOG_MAX_SIZE,
      logMaxFiles: maxFiles,
      limits,
      healthcheck: resolveHealthcheck(image.config.Healthcheck, req.healthcheck),
      ...(req.netns ? { netns: req.netns } : {}),
      ...(req.dns ? { dns: req.dns } : {}),
      ...(req.extraHosts?.length ? { extraHosts: req.extraHosts } : {}),
    };
    if (!config.workingDir.startsWith('/'))
      throw invalid(`the working directory "${config.workingDir}" is not absolute`);
    signalNumber(config.stopSignal);
    const created = new Date().toISOString();
    const record: ContainerRecord = {
      id,
      name,
      created,
      config,
      state: { status: 'created', pid: 0, shimPid: 0, oomKilled: false, restartCount: 0 },
    };
    const dir = this.bundle(id);
    try {
      await fs.mkdir(dir, { recursive: false, mode: 0o710 });
      await Promise.all(['upper', 'work', 'rootfs'].map((d) => fs.mkdir(join(dir, d))));
      await atomicWriteJson(join(dir, 'config.json'), { ...config, name, created });
      await atomicWriteJson(join(dir, 'state.json'), record.state);
    } catch (err) {
      await fs.rm(dir, { recursive: true, force: true });
      throw err;
    }
    this.containers.set(id, record);
    return { record, warnings: [] };
  }

  private nameTaken(name: string): boolean {
    for (const c of this.containers.values()) if (c.name === name) return true;
    return false;
  }

  private async saveState(rec: ContainerRecord): Promise<void> {
    await atomicWriteJson(join(this.bundle(rec.id), 'state.json'), rec.state);
  }

  /** Starts a created or exited container; resolves once its process runs. */
  async start(ref: string): Promise<{ record: ContainerRecord; warnings: string[] }> {
    const rec = this.get(ref);
    if (rec.state.status === 'running') return { record: rec, warnings: [] };
    if (rec.state.status === 'removing') throw conflict(`container ${rec.name} is being removed`);
    const dir = this.bundle(rec.id);
    const cfg = rec.config;
    // (the shim removes a stale exit.json and init.pid itself)
    const { cgroup, warnings } = await this.opts.cgroups.create(this.cgroupName(rec.id), cfg.limits);
    try {
      writeFileSync(join(dir, 'hostname'), `${cfg.hostname}\n`);
      const extra = (cfg.extraHosts ?? []).map(([ip, name]) => `${ip}\t${name}\n`).join('');
      writeFileSync(
        join(dir, 'hosts'),
        `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${extra || `127.0.1.1\t${cfg.hostname}\n`}`,
      );
      const etcFiles = ['hostname', 'hosts'];
      if (cfg.dns) {
        writeFileSync(
          join(dir, 'resolv.conf'),
          `${cfg.dns.map((a) => `nameserver ${a}\n`).join('')}options ndots:0\n`,
        );
        etcFiles.push('resolv.conf');
      }
      // bind targets exist before the container starts: a user-namespaced root could not create them
      mkdirSync(join(dir, 'upper', 'etc'), { recursive: true });
      for (const f of etcFiles) writeFileSync(join(dir, 'upper', 'etc', f), '', { flag: 'a' });
      const spec: Directive[] = [
        ['id', rec.id],
        ['bundle', dir],
        ['rootfs', join(dir, 'rootfs')],
        ...this.opts.images.layerDirs(cfg.imageId).map((l): Directive => ['lower', l]),
        ['upper', join(dir, 'upper')],
        ['work', join(dir, 'work')],
        ...(['mnt', 'uts', 'ipc', 'pid', 'net'] as const).map((n): Directive => ['ns', n]),
        ['hostname', cfg.hostname],
        ...cgroup.procsFiles.map((p): Directive => ['cgroup-procs', p]),
        ['bind', join(dir, 'hostname'), '/etc/hostname', 'rw'],
        ['bind', join(dir, 'hosts'), '/etc/hosts', 'rw'],
        ...(cfg.dns ? [['bind', join(dir, 'resolv.conf'), '/etc/resolv.conf', 'rw'] as Directive] : []),
        ...(cfg.netns ? [['netns', cfg.netns] as Directive] : []),
        ...cfg.devices.map((d): Directive => ['device', d.hostPath, d.containerPath]),
        ...MASKED_PATHS.map((p): Directive => ['mask', p]),
        ...READONLY_PATHS.map((p): Directive => ['readonly', p]),
        ['log-max-size', cfg.logMaxSize],
        ['log-max-files', cfg.logMaxFiles],
        ...this.processDirectives(cfg, cfg.env, cfg.workingDir, cfg.user, [cfg.path, ...cfg.args]),
      ];
      if (cfg.userns) {
        const m = cfg.userns;
        spec.push(
          ['ns', 'user'],
          ['uidmap', m.containerId, m.hostId, m.size],
          ['gidmap', m.containerId, m.hostId, m.size],
        );
      }
      if (cfg.tty) spec.push(['tty', 1]);
      if (cfg.openStdin) spec.push(['stdin', 1]);
      if (cfg.init) spec.push(['init', 1]);
      if (cfg.userns) {
        // the container's root must be able to traverse its bundle to reach the rootfs mount
        await fs.chmod(dir, 0o711);
      }
      const specPath = join(dir, 'spec');
      writeFileSync(specPath, renderSpec(spec));
      const { pid, shimPid } = await this.spawnShim(dir, specPath);
      rec.state = {
        ...rec.state,
        status: 'running',
        pid,
        shimPid,
        startedAt: new Date().toISOString(),
        finishedAt: undefined,
        exitCode: undefined,
        oomKilled: false,
        error: undefined,
      };
      await this.saveState(rec);
      this.watchExit(rec);
      this.monitorHealth(rec);
      this.events.emit(`start:${rec.id}`);
      return { record: rec, warnings };
    } catch (err) {
      this.events.emit(`start:${rec.id}`);
      await cgroup.destroy().catch(() => {});
      if (err instanceof TsswarmError) {
        rec.state = { ...rec.state, error: err.message };
        await this.saveState(rec).catch(() => {});
      }
      if (cfg.autoRemove) await this.remove(rec.id, { force: true }).catch(() => {});
      throw err;
    }
  }

  private processDirectives(
    cfg: ContainerConfig,
    env: string[],
    cwd: string,
    user: string,
    argv: string[],
  ): Directive[] {
    return [
      ...env.map((e): Directive => ['env', e]),
      ['cwd', cwd],
      ...(user ? [['user', user] as Directive] : []),
      ...argv.map((a): Directive => ['arg', a]),
      ...cfg.capabilities.map((c): Directive => ['cap', c]),
      ['no-new-privs', 1],
    ];
  }

  private spawnShim(dir: string, specPath: string): Promise<{ pid: number; shimPid: number }> {
    const errFd = openSync(join(dir, 'shim.log'), 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.opts.shimPath, ['run', specPath], {
        detached: true,
        stdio: ['ignore', 'pipe', errFd],
      });
    } finally {
      closeSync(errFd);
    }
    return new Promise((resolve, reject) => {
      let out = '';
      const fail = (msg: string) => reject(new TsswarmError('internal', msg));
      child.on('error', (e) => fail(`cannot run the container helper ${this.opts.shimPath}: ${e.message}`));
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (d: string) => {
        out += d;
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        const line = out.slice(0, nl);
        child.stdout!.destroy();
        child.unref();
        if (line.startsWith('ok ')) resolve({ pid: Number(line.slice(3)), shimPid: child.pid! });
        else reject(startError(line.replace(/^err /, '')));
      });
      child.stdout!.on('end', () => {
        if (!out.includes('\n'))
          fail(`the container helper exited without starting the container (see ${dir}/shim.log)`);
      });
    });
  }

  /** Connects to the shim's control socket and finishes the container when it closes. */
  private watchExit(rec: ContainerRecord, attempt = 0): void {
    const sock = connect(this.ctlPath(rec.id));
    this.watchers.set(rec.id, sock);
    let connected = false;
    sock.on('connect', () => {
      connected = true;
      sock.write('W');
    });
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.on('close', () => {
      this.watchers.delete(rec.id);
      if (this.closing) return;
      if (!connected && shimAlive(rec.state.shimPid, this.bundle(rec.id))) {
        // the shim is alive but its socket is not there yet (or briefly unavailable): retry
        setTimeout(() => this.watchExit(rec, attempt + 1), Math.min(1000, 20 * 2 ** attempt));
        return;
      }
      void this.waitShimGone(rec).then(() => this.finishExit(rec));
    });
  }

  private async waitShimGone(rec: ContainerRecord): Promise<void> {
    for (let i = 0; i < 100 && !(await exists(join(this.bundle(rec.id), 'exit.json'))); i++) {
      if (!shimAlive(rec.state.shimPid, this.bundle(rec.id))) break;
      await sleep(20);
    }
  }

  private async finishExit(rec: ContainerRecord): Promise<void> {
    if (rec.state.status !== 'running') return;
    this.monitors.get(rec.id)?.stop();
    this.monitors.delete(rec.id);
    const dir = this.bundle(rec.id);
    let exit: { exitCode: number; signal: number; finishedAt: string } | undefined;
    try {
      exit = JSON.parse(await fs.readFile(join(dir, 'exit.json'), 'utf8'));
    } catch {
      exit = undefined;
    }
    const cgroup = this.opts.cgroups.open(this.cgroupName(rec.id));
    const oomKilled = (await cgroup.oomKillCount().catch(() => 0)) > 0;
    await cgroup
      .destroy()
      .catch((e: Error) => this.opts.log?.(`cgroup of ${rec.name} not removed: ${e.message}`));
    rec.state = {
      ...rec.state,
      status: 'exited',
      pid: 0,
      shimPid: 0,
      exitCode: exit?.exitCode ?? 255,
      finishedAt: exit?.finishedAt ?? new Date().toISOString(),
      oomKilled,
      error: exit ? undefined : 'the container supervisor ended without recording an exit status',
    };
    await this.saveState(rec);
    this.events.emit(`exit:${rec.id}`, rec.state);
    this.events.emit('exit', rec);
    if (rec.config.autoRemove) {
      if (this.holds.get(rec.id)) this.pendingRemove.add(rec.id);
      else await this.remove(rec.id, { force: true }).catch(() => {});
    }
  }

  /**
   * Runs the container's healthcheck while it runs (from `starting`, also after a daemon
   * restart); each change of status is saved and reported to `onHealth` listeners.
   */
  private monitorHealth(rec: ContainerRecord): void {
    const cfg = rec.config.healthcheck;
    if (!cfg) return;
    this.monitors.get(rec.id)?.stop();
    const startedAt = Date.parse(rec.state.startedAt ?? '') || Date.now();
    rec.state.health = initialHealth();
    const m = new HealthMonitor(
      cfg,
      startedAt,
      (argv, timeoutMs) => this.probe(rec.id, argv, timeoutMs),
      (h) => {
        if (rec.state.status !== 'running') return;
        rec.state.health = h;
        void this.saveState(rec).catch(() => {});
        this.events.emit('health', rec);
      },
    );
    m.onProbe = (h) => {
      if (rec.state.status === 'running') rec.state.health = h;
    };
    this.monitors.set(rec.id, m);
    m.start();
  }

  /** One healthcheck probe: exec in the container, output kept, -1 after the timeout. */
  private async probe(
    id: string,
    argv: string[],
    timeoutMs: number,
  ): Promise<{ exitCode: number; output: string }> {
    const child = await this.exec(id, { cmd: argv });
    child.stdin?.end();
    let output = '';
    const take = (d: Buffer) => {
      if (output.length < OUTPUT_KEEP) output += d.toString('utf8');
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    (child.stdio[3] as unknown as { on?: (e: string, f: () => void) => void } | null)?.on?.(
      'error',
      () => {},
    );
    return new Promise((resolve) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGTERM'); // the shim forwards it to the probe
        setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 1000).unref();
      }, timeoutMs);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (timedOut) resolve({ exitCode: -1, output: `Health check exceeded timeout (${timeoutMs}ms)` });
        else resolve({ exitCode: code ?? 255, output });
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ exitCode: -1, output: e.message });
      });
    });
  }

  /** Calls `listener` with a container whose health status changed (starting → healthy → unhealthy …). */
  onHealth(listener: (rec: ContainerRecord) => void): () => void {
    this.events.on('health', listener);
    return () => this.events.off('health', listener);
  }

  /** Calls `listener` with every container that exits (after its state is recorded). */
  onExit(listener: (rec: ContainerRecord) => void): () => void {
    this.events.on('exit', listener);
    return () => this.events.off('exit', listener);
  }

  /** Keeps an auto-removed container until the returned release is called (log followers). */
  hold(id: string): () => void {
    this.holds.set(id, (this.holds.get(id) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.holds.get(id) ?? 1) - 1;
      if (n > 0) return void this.holds.set(id, n);
      this.holds.delete(id);
      if (this.pendingRemove.delete(id)) void this.remove(id, { force: true }).catch(() => {});
    };
  }

  /** Resolves once a created container has been started (or its start failed). */
  waitStarted(id: string): Promise<void> {
    const rec = this.get(id);
    if (rec.state.status !== 'created') return Promise.resolve();
    return new Promise((resolve) => this.events.once(`start:${rec.id}`, () => resolve()));
  }

  /** Resolves with the state once the container is not running (immediately if it is not). */
  async wait(ref: string): Promise<ContainerState> {
    const rec = this.get(ref);
    if (rec.state.status === 'created') await this.waitStarted(rec.id);
    if (rec.state.status !== 'running') return rec.state;
    return new Promise((resolve) => this.events.once(`exit:${rec.id}`, resolve));
  }

  /** Sends the stop signal, waits the grace period, then kills. */
  async stop(ref: string, timeoutSec?: number): Promise<ContainerRecord> {
    const rec = this.get(ref);
    if (rec.state.status !== 'running') return rec;
    const grace = timeoutSec ?? rec.config.stopTimeout;
    const exited = this.wait(rec.id);
    this.signal(rec, signalNumber(rec.config.stopSignal));
    const timedOut = await Promise.race([exited.then(() => false), sleep(grace * 1000).then(() => true)]);
    if (timedOut) {
      this.signal(rec, 9);
      await exited;
    }
    return rec;
  }

  async kill(ref: string, signal = 'SIGKILL'): Promise<ContainerRecord> {
    const rec = this.get(ref);
    const n = signalNumber(signal);
    if (rec.state.status !== 'running') throw conflict(`container ${rec.name} is not running`);
    this.signal(rec, n);
    if (n === 9) await this.wait(rec.id);
    return rec;
  }

  private signal(rec: ContainerRecord, n: number): void {
    try {
      process.kill(rec.state.pid, n);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }

  async restart(ref: string, timeoutSec?: number): Promise<ContainerRecord> {
    const rec = await this.stop(ref, timeoutSec);
    rec.state.restartCount += 1;
    return (await this.start(rec.id)).record;
  }

  async remove(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    const rec = this.get(ref);
    if (rec.state.status === 'running') {
      if (!opts.force) {
        throw conflict(`cannot remove running container ${rec.name}: stop it first, or use --force`);
      }
      await this.kill(rec.id, 'SIGKILL');
    }
    rec.state.status = 'removing';
    // rename out of the way at once, delete the container layer in the background
    const trash = join(this.root, `.trash-${rec.id}`);
    try {
      renameSync(this.bundle(rec.id), trash);
    } catch {
      await this.saveState(rec).catch(() => {});
      await fs.rm(this.bundle(rec.id), { recursive: true, force: true });
    }
    this.containers.delete(rec.id);
    void fs.rm(trash, { recursive: true, force: true }).catch(() => {});
  }

  async stats(ref: string): Promise<CgroupStats> {
    const rec = this.get(ref);
    if (rec.state.status !== 'running') throw conflict(`container ${rec.name} is not running`);
    return this.opts.cgroups.open(this.cgroupName(rec.id)).stats();
  }

  /** Opens an attach stream (shim frames both ways) to a running container's main process. */
  attach(ref: string): Promise<Socket> {
    const rec = this.get(ref);
    if (rec.state.status !== 'running')
      throw conflict(`cannot attach to container ${rec.name}: it is not running`);
    return new Promise((resolve, reject) => {
      const sock = connect(this.ctlPath(rec.id));
      sock.once('connect', () => {
        sock.write('A');
        resolve(sock);
      });
      sock.once('error', (e) =>
        reject(new TsswarmError('internal', `cannot attach to ${rec.name}: ${e.message}`)),
      );
    });
  }

  /** Starts a new process in a running container; the caller owns the child's stdio. */
  async exec(ref: string, req: ExecRequest): Promise<ChildProcess> {
    const rec = this.get(ref);
    if (rec.state.status !== 'running')
      throw conflict(`container ${rec.name} is not running: cannot exec in it`);
    if (!req.cmd || req.cmd.length === 0 || !req.cmd[0]) throw invalid('exec needs a command');
    const cfg = rec.config;
    const cgroup = this.opts.cgroups.open(this.cgroupName(rec.id));
    const spec: Directive[] = [
      ['target-pid', rec.state.pid],
      ...(cfg.userns ? [['join', 'user'] as Directive] : []),
      ...(['ipc', 'uts', 'net', 'pid', 'mnt'] as const).map((n): Directive => ['join', n]),
      ...cgroup.procsFiles.map((p): Directive => ['cgroup-procs', p]),
      ...this.processDirectives(
        cfg,
        mergeEnv(cfg.env, req.tty ? ['TERM=xterm'] : [], req.env ?? []),
        req.workingDir || cfg.workingDir,
        req.user || cfg.user,
        req.cmd,
      ),
    ];
    if (req.tty) spec.push(['tty', 1]);
    const specPath = join(this.bundle(rec.id), `exec-${newContainerId().slice(0, 12)}.spec`);
    await fs.writeFile(specPath, renderSpec(spec));
    const child = spawn(this.opts.shimPath, ['exec', specPath], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    child.on('exit', () => void fs.rm(specPath, { force: true }));
    child.on('error', () => void fs.rm(specPath, { force: true }));
    return child;
  }

  /** Stops watching (the daemon is shutting down); containers keep running. */
  close(): void {
    this.closing = true;
    for (const m of this.monitors.values()) m.stop();
    this.monitors.clear();
    for (const s of this.watchers.values()) s.destroy();
    this.watchers.clear();
  }
}

function parseDeviceMapping(spec: string): { hostPath: string; containerPath: string } {
  const [hostPath = '', containerPath = hostPath] = spec.split(':');
  if (!hostPath.startsWith('/') || !containerPath.startsWith('/')) {
    throw invalid(`invalid --device "${spec}": expected HOST_PATH[:CONTAINER_PATH] with absolute paths`);
  }
  return { hostPath, containerPath };
}

/** Maps the shim's start failure to docker run's exit codes: 127 not found, 126 not executable. */
function startError(message: string): TsswarmError {
  const code = /executable file not found|no such file or directory/i.test(message)
    ? 'command_not_found'
    : /permission denied|is a directory/i.test(message)
      ? 'command_not_executable'
      : /unable to find (user|group)/i.test(message)
        ? 'invalid_argument'
        : 'internal';
  return new TsswarmError(code, `cannot start container: ${message}`);
}

/** True when pid is a live shim serving this bundle (guards against pid reuse). */
function shimAlive(pid: number, bundle: string): boolean {
  if (!pid) return false;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return cmd.includes('tsswarm-shim') && cmd.includes(bundle) && !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
