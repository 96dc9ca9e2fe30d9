import type { TaskRecord } from '../../src/api/cluster.js';
import { freePort } from './etcd.js';
import { loadTestImages } from './fixtures.js';
import { startTestDaemon, type TestDaemon } from './harness.js';
import { until } from './wait.js';

/** What of a tap test these helpers use. */
type Tap = Parameters<typeof startTestDaemon>[0] & {
  equal(found: unknown, wanted: unknown, msg: string): unknown;
};

/** `swarm init` on free ports (several test daemons share the host's network), with `extra` options. */
export async function initSwarm(t: Tap, d: TestDaemon, extra: string[] = []): Promise<void> {
  const init = await d.cli([
    'swarm',
    'init',
    ...extra,
    '--etcd-client-port',
    String(await freePort()),
    '--etcd-peer-port',
    String(await freePort()),
    '--dispatcher-port',
    String(await freePort()),
  ]);
  t.equal(init.code, 0, init.stderr);
}

/** A test daemon with the test images loaded, as the single manager of a new swarm. */
export async function startSwarmDaemon(t: Tap): Promise<TestDaemon> {
  const d = await startTestDaemon(t);
  await loadTestImages(d);
  await initSwarm(t, d);
  return d;
}

/** A CLI listing with `--format json`, parsed; throws with the CLI's message when it fails. */
export async function cliJson<T>(d: Pick<TestDaemon, 'cli'>, args: string[]): Promise<T> {
  const r = await d.cli([...args, '--format', 'json']);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/**
 * cliJson, asked again while the call fails: for reads just after a failover, when a manager's
 * store may answer "leader changed" or time out once.
 */
export function cliJsonSettled<T>(
  d: Pick<TestDaemon, 'cli'>,
  args: string[],
  timeoutMs = 30_000,
): Promise<T> {
  return until(
    `${args.join(' ')} to answer`,
    () => cliJson<T>(d, args),
    () => true,
    timeoutMs,
  );
}

/**
 * A command run until it succeeds, or until its error says (`done`) that an earlier try whose
 * answer was lost did: for writes just after a failover.
 */
export function cliSettled(
  d: Pick<TestDaemon, 'cli'>,
  args: string[],
  done?: RegExp,
  timeoutMs = 30_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return until(
    `${args.join(' ')} to succeed`,
    () => d.cli(args),
    (r) => r.code === 0 || (done?.test(r.stderr) ?? false),
    timeoutMs,
  );
}

/** Tasks running and meant to. */
export const runningTasks = (ts: TaskRecord[]) =>
  ts.filter((x) => x.desiredState === 'running' && x.status.state === 'running');

/** `swarm join` of simulated host i, with `token`, through host 1's dispatcher. */
export const joinArgs = (hosts: { address(i: number): string }, i: number, token: string): string[] => [
  'swarm',
  'join',
  '--token',
  token,
  '--advertise-addr',
  hosts.address(i),
  `${hosts.address(1)}:2377`,
];
