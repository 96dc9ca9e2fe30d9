import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../../src/api/client.js';
import { cleanupPrefix, TEST_PREFIX } from '../../src/engine/cleanup.js';

/** Root of the compiled package (dist/test/lib -> repo). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A unique name prefix for one test's run; everything it creates carries it. */
export function uniquePrefix(): string {
  return `${TEST_PREFIX}${randomBytes(4).toString('hex')}`;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestDaemon {
  prefix: string;
  dir: string;
  dataRoot: string;
  socket: string;
  client: Client;
  pid: number;
  /** Runs the tsswarm CLI against this daemon. */
  cli(
    args: string[],
    opts?: { input?: string | Buffer; env?: Record<string, string>; timeoutMs?: number },
  ): Promise<CliResult>;
  /** Kills the daemon process (containers keep running). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the daemon again on the same data root. */
  restart(): Promise<void>;
  /** Cgroup, mount, process and bundle leftovers of containers (the daemon's own excluded). */
  leftovers(): Promise<string[]>;
}

export function runCli(
  args: string[],
  opts: { input?: string | Buffer; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (signal ? 128 : 255), stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

async function waitForSocket(path: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`daemon exited early (${child.exitCode}): ${log()}`);
    if (existsSync(path)) {
      const c = new Client({ url: `unix://${path}`, socketPath: path });
      if (
        await c.request('GET', '/_ping').then(
          () => true,
          () => false,
        )
      )
        return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`daemon did not come up: ${log()}`);
}

/** Starts a daemon with its own prefix, data root, socket and cgroup parent; all removed at teardown. */
export async function startTestDaemon(t: Teardown, extraArgs: string[] = []): Promise<TestDaemon> {
  const prefix = uniquePrefix();
  const dir = join('/tmp', prefix);
  const dataRoot = join(dir, 'root');
  const socket = join(dir, 'd.sock');
  await fs.mkdir(dir, { recursive: true });
  let child: ChildProcess | undefined;
  let log = '';
  const startChild = async () => {
    log = '';
    child = spawn(
      process.execPath,
      // in the machine's own network namespace: nothing of its network is touched (hosts.ts runs the datapath)
      [
        CLI,
        'daemon',
        '--data-root',
        dataRoot,
        '--socket',
        socket,
        '--cgroup-parent',
        prefix,
        '--no-datapath',
        ...extraArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log += d));
    await waitForSocket(socket, child, () => log);
  };
  t.teardown(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await cleanupPrefix(prefix);
  });
  await startChild();
  const host = `unix://${socket}`;
  const d: TestDaemon = {
    prefix,
    dir,
    dataRoot,
    socket,
    client: new Client({ url: host, socketPath: socket }),
    get pid() {
      return child?.pid ?? 0;
    },
    cli: (args, opts) => runCli(['-H', host, ...args], opts),
    async kill(signal = 'SIGKILL') {
      const c = child!;
      if (c.exitCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill(signal);
      await exited;
    },
    restart: startChild,
    async leftovers() {
      const found: string[] = [];
      // a removed container's layer is deleted in the background: give it a moment
      let containers: string[] = [];
      for (let i = 0; i < 40; i++) {
        containers = await fs.readdir(join(dataRoot, 'containers')).catch(() => [] as string[]);
        if (!containers.some((c) => c.startsWith('.trash-'))) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const c of containers) found.push(`bundle ${c}`);
      for (const root of [
        '/sys/fs/cgroup/memory',
        '/sys/fs/cgroup/pids',
        '/sys/fs/cgroup/cpu',
        '/sys/fs/cgroup/unified',
      ]) {
        const kids = await fs.readdir(join(root, prefix), { withFileTypes: true }).catch(() => []);
        for (const k of kids) if (k.isDirectory()) found.push(`cgroup ${root}/${prefix}/${k.name}`);
      }
      const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
      for (const l of mounts.split('\n')) if (l.includes(prefix)) found.push(`mount ${l.split(' ')[4]}`);
      for (const p of await fs.readdir('/proc')) {
        if (!/^\d+$/.test(p) || Number(p) === child?.pid) continue;
        const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes(prefix) && cmd.includes('tsswarm-shim')) found.push(`process ${p}`);
      }
      return found;
    },
  };
  return d;
}

/** `container inspect` of one container, parsed. */
export async function inspectContainer(d: TestDaemon, name: string) {
  return JSON.parse((await d.cli(['container', 'inspect', name])).stdout)[0];
}
