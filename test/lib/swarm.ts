import type { TaskRecord } from '../../src/api/cluster.js';
import { freePort } from './etcd.js';
import { loadTestImages } from './fixtures.js';
import { startTestDaemon, type TestDaemon } from './harness.js';

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
