/**
 * Consul on simulated hosts (test/lib/hosts.ts): agents started inside a host's network
 * namespace and stopped by PID at teardown, and the ways a test in the root namespace reaches
 * them. The root namespace cannot reach underlay addresses, so TCP and DNS queries run inside a
 * host (curl, node), while the consul npm client talks to an agent over its unix socket.
 */
import { join } from 'node:path';
import Consul from 'consul';
import { ConsulAgent, type ConsulAgentOptions } from '../../src/discovery/consul/agent.js';
import type { TestHosts } from './hosts.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * A Consul agent for host i (not started): named <prefix>-h<i>, data in <host dir>/consul,
 * bound to the host's address, joining the given hosts; stopped at teardown, pass or fail.
 */
export function consulAgentOn(
  t: Teardown,
  hosts: TestHosts,
  i: number,
  opts: { server?: boolean; bootstrapExpect?: number; join: number[] } & Partial<ConsulAgentOptions>,
): ConsulAgent {
  const h = hosts.host(i);
  const { join: joinHosts, ...rest } = opts;
  const agent = new ConsulAgent({
    nodeName: `${hosts.prefix}-h${i}`,
    dataDir: join(h.dir, 'consul'),
    bindAddr: h.address,
    clientAddr: h.address,
    netns: h.netns,
    retryJoin: joinHosts.map((j) => hosts.address(j)),
    retryIntervalMs: 500,
    raftMultiplier: 1,
    stopTimeoutMs: 5_000,
    ...rest,
  });
  // a teardown that throws would skip the ones registered before it (the hosts' own)
  t.teardown(() => agent.stop().catch(() => {}));
  return agent;
}

/** The consul npm client, talking to agent over its HTTP unix socket. */
export function consulClient(agent: ConsulAgent): Consul {
  // papi (the client's HTTP layer) takes socketPath; the client's typings do not list it
  const opts = { baseUrl: 'http://consul/v1', socketPath: agent.httpSocket };
  return new Consul(opts as ConstructorParameters<typeof Consul>[0]);
}

/** GETs url with curl from inside host `from`; the parsed JSON body. Throws on any failure. */
export async function curlJson<T = unknown>(hosts: TestHosts, from: number, url: string): Promise<T> {
  const r = await hosts.exec(from, ['curl', '-sS', '-f', '--max-time', '5', url], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`curl ${url} from host ${from}: exit ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

/** What a DNS A query answered: the addresses, or the resolver's error code (ENOTFOUND, EREFUSED…). */
export type DnsAnswer = { addresses: string[] } | { error: string };

const RESOLVE_SCRIPT = `
const { Resolver } = require('node:dns').promises;
const [server, name] = process.argv.slice(1);
const r = new Resolver({ timeout: 2000, tries: 1 });
r.setServers([server]);
r.resolve4(name).then(
  (addresses) => console.log(JSON.stringify({ addresses: addresses.sort() })),
  (e) => console.log(JSON.stringify({ error: e.code })),
);`;

/** Asks the DNS server at `server` (host:port) for name's A records, from inside host `from`. */
export async function resolveA(
  hosts: TestHosts,
  from: number,
  server: string,
  name: string,
): Promise<DnsAnswer> {
  const r = await hosts.exec(from, [process.execPath, '-e', RESOLVE_SCRIPT, server, name], {
    timeoutMs: 10_000,
  });
  if (r.code !== 0)
    throw new Error(`resolving ${name} from host ${from}: exit ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as DnsAnswer;
}
