import { randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { cleanupPrefix } from '../../src/engine/cleanup.js';
import { assertPortFree, type EtcdSupervisor, startEtcdCluster } from '../../src/manager/etcd/supervisor.js';
import { EtcdStore, type EtcdStoreOptions } from '../../src/manager/store/etcd.js';
import { uniquePrefix } from './harness.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestEtcd {
  prefix: string;
  /** /tmp/<prefix>: every member's data dir and log. */
  dir: string;
  members: EtcdSupervisor[];
  /** Client URLs of all members. */
  endpoints: string[];
  /** Every PID an etcd of this test has had (restarts included). */
  pids: Set<number>;
  /** A store on the given members (default all), closed at teardown. */
  store(opts?: { members?: number[] } & Partial<EtcdStoreOptions>): EtcdStore;
  /** A raw etcd3 client (for what the store does not do: compaction, revoking by id), closed at teardown. */
  client(members?: number[]): Etcd3;
}

const usedPorts = new Set<number>();

/**
 * A free loopback port below the ephemeral range (32768+), so that no outgoing connection
 * takes it between this check and etcd's bind.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = randomInt(20_000, 32_000);
    if (usedPorts.has(port)) continue;
    usedPorts.add(port);
    if (
      await assertPortFree('127.0.0.1', port).then(
        () => true,
        () => false,
      )
    )
      return port;
  }
}

/** Prefixes and etcd PIDs (restarts included) of this process, for a last check that nothing is left. */
export const usedPrefixes: string[] = [];
export const etcdPids = new Set<number>();

/**
 * Starts 1 or 3 supervised etcd members on random loopback ports, with data under
 * /tmp/tsswarm-test-<hex>/ (their command lines name it, so cleanupPrefix finds leftovers
 * of a crashed run). At teardown, pass or fail: stores and clients closed, members stopped by
 * PID, everything with the prefix removed.
 */
export async function startEtcd(t: Teardown, opts: { members?: 1 | 3 } = {}): Promise<TestEtcd> {
  const prefix = uniquePrefix();
  usedPrefixes.push(prefix);
  const dir = join('/tmp', prefix);
  await fs.mkdir(dir, { recursive: true });
  const closers: Array<() => unknown> = [];
  const pids = new Set<number>();
  let members: EtcdSupervisor[] = [];
  t.teardown(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await Promise.all(members.map((m) => m.stop(2_000)));
    await cleanupPrefix(prefix);
  });
  const ports = [];
  for (let i = 0; i < (opts.members ?? 1); i++)
    ports.push({ client: await freePort(), peer: await freePort() });
  members = await startEtcdCluster({ namePrefix: prefix, dir, ports, fastElection: true });
  const track = (pid: number | undefined) => {
    if (!pid) return;
    pids.add(pid);
    etcdPids.add(pid);
  };
  for (const m of members) {
    track(m.pid);
    m.on('started', track);
  }
  const endpointsOf = (idx?: number[]) => (idx ?? members.map((_, i) => i)).map((i) => members[i]!.endpoint);
  return {
    prefix,
    dir,
    members,
    endpoints: endpointsOf(),
    pids,
    store(o = {}) {
      const s = new EtcdStore({ ...o, endpoints: endpointsOf(o.members) });
      closers.push(() => s.close());
      return s;
    },
    client(idx) {
      const c = new Etcd3({ hosts: endpointsOf(idx) });
      closers.push(() => c.close());
      return c;
    },
  };
}

/** PIDs among pids that are still alive. */
export function alive(pids: Iterable<number>): number[] {
  return [...pids].filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
}
