/**
 * The configuration file of one Consul agent (server or client), built from typed options.
 *
 * Pure: options in, Consul's JSON config out, nothing read or written. Every choice that keeps
 * the agent private to this machine and its own namespaces is made here, in one place: no
 * update check, no UI, no script checks, no DNS recursors (a name outside `.consul` is refused,
 * never forwarded), joins by address only (no name lookup, no cloud auto-join), gRPC off. The
 * DNS interface answers stale reads and only healthy (passing) instances. Bad options throw
 * `invalid_argument` naming the option and what would be accepted.
 */

import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { invalid } from '../../api/errors.js';

export type ConsulLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** The agent's listening ports; each 1..65535 and all different. */
export interface ConsulPorts {
  http: number;
  dns: number;
  serfLan: number;
  serfWan: number;
  /** Server RPC (used by servers; clients dial it). */
  server: number;
}

export const DEFAULT_PORTS: Readonly<ConsulPorts> = {
  http: 8500,
  dns: 8600,
  serfLan: 8301,
  serfWan: 8302,
  server: 8300,
};

export interface ConsulConfigOptions {
  /** The node's name in the cluster: letters, digits and '-', at most 63 (a DNS label). */
  nodeName: string;
  /** Default 'dc1'. */
  datacenter?: string;
  /** Absolute path of the agent's data directory. */
  dataDir: string;
  /** Address for cluster traffic (gossip, RPC), also advertised; default 127.0.0.1. */
  bindAddr?: string;
  /** Address of the HTTP API and the DNS interface; default 127.0.0.1. */
  clientAddr?: string;
  /** Also serve the HTTP API on this unix socket (absolute path), reachable from any network namespace. */
  httpSocket?: string;
  /** Run as a server (a raft voter) instead of a client. */
  server?: boolean;
  /** Servers only: wait for this many servers before electing the first leader. */
  bootstrapExpect?: number;
  /** Addresses (IP or IP:port) of agents to join at start, retried until one answers. */
  retryJoin?: string[];
  /** Pause between rounds of retry_join; default 2000 ms (Consul's own default of 30 s suits WANs). */
  retryIntervalMs?: number;
  /** Ports to use instead of DEFAULT_PORTS. */
  ports?: Partial<ConsulPorts>;
  /** Default 'info'. */
  logLevel?: ConsulLogLevel;
  /** Scales raft's timers (1 = fastest failover, Consul's default is 5); 1..10. */
  raftMultiplier?: number;
}

/** Consul's agent configuration file (the subset tsswarm writes), as JSON. */
export interface ConsulConfigFile {
  node_name: string;
  datacenter: string;
  data_dir: string;
  bind_addr: string;
  client_addr: string;
  addresses?: { http: string };
  server: boolean;
  bootstrap_expect?: number;
  retry_join: string[];
  retry_interval: string;
  ports: {
    http: number;
    dns: number;
    serf_lan: number;
    serf_wan: number;
    server: number;
    https: -1;
    grpc: -1;
    grpc_tls: -1;
  };
  log_level: ConsulLogLevel;
  leave_on_terminate: boolean;
  skip_leave_on_interrupt: boolean;
  disable_update_check: true;
  disable_host_node_id: true;
  disable_remote_exec: true;
  enable_script_checks: false;
  enable_local_script_checks: false;
  ui_config: { enabled: false };
  recursors: string[];
  dns_config: { allow_stale: true; only_passing: true };
  performance?: { raft_multiplier: number };
}

const LOG_LEVELS: readonly ConsulLogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/** Builds the agent's config file; throws `invalid_argument` on a bad option. */
export function consulConfig(opts: ConsulConfigOptions): ConsulConfigFile {
  const server = opts.server ?? false;
  const ports = checkPorts(opts.ports ?? {});
  const clientAddr = checkIp('clientAddr', opts.clientAddr ?? '127.0.0.1');
  const config: ConsulConfigFile = {
    node_name: checkNodeName(opts.nodeName),
    datacenter: checkDatacenter(opts.datacenter ?? 'dc1'),
    data_dir: checkAbsolute('dataDir', opts.dataDir),
    bind_addr: checkIp('bindAddr', opts.bindAddr ?? '127.0.0.1'),
    client_addr: clientAddr,
    server,
    retry_join: (opts.retryJoin ?? []).map(checkJoinAddress),
    retry_interval: `${checkInteger('retryIntervalMs', opts.retryIntervalMs ?? 2000, 100, 3_600_000)}ms`,
    ports: {
      http: ports.http,
      dns: ports.dns,
      serf_lan: ports.serfLan,
      serf_wan: ports.serfWan,
      server: ports.server,
      https: -1,
      grpc: -1,
      grpc_tls: -1,
    },
    log_level: checkLogLevel(opts.logLevel ?? 'info'),
    // A server keeps its raft membership when stopped (it comes back as the same voter); a
    // client leaves gracefully, so it is removed from the catalog instead of marked failed.
    leave_on_terminate: !server,
    skip_leave_on_interrupt: server,
    disable_update_check: true,
    // several agents share one machine (one per namespace): node ids must not derive from it
    disable_host_node_id: true,
    disable_remote_exec: true,
    enable_script_checks: false,
    enable_local_script_checks: false,
    ui_config: { enabled: false },
    recursors: [],
    dns_config: { allow_stale: true, only_passing: true },
  };
  if (opts.httpSocket !== undefined)
    config.addresses = { http: `${clientAddr} unix://${checkSocketPath(opts.httpSocket)}` };
  if (opts.bootstrapExpect !== undefined) {
    if (!server)
      throw invalid('bootstrapExpect is for servers only: set server: true or drop bootstrapExpect');
    config.bootstrap_expect = checkInteger('bootstrapExpect', opts.bootstrapExpect, 1, 1000);
  }
  if (opts.raftMultiplier !== undefined)
    config.performance = { raft_multiplier: checkInteger('raftMultiplier', opts.raftMultiplier, 1, 10) };
  return config;
}

function checkNodeName(name: string): string {
  if (!name) throw invalid('the Consul node name is empty: give every agent a unique name');
  if (!/^[A-Za-z0-9-]{1,63}$/.test(name))
    throw invalid(`bad Consul node name "${name}": use letters, digits and '-', at most 63 characters`);
  return name;
}

function checkDatacenter(dc: string): string {
  if (!/^[a-z0-9_-]{1,63}$/.test(dc))
    throw invalid(`bad datacenter "${dc}": use lower-case letters, digits, '-' and '_'`);
  return dc;
}

function checkAbsolute(what: string, path: string): string {
  if (!path || !isAbsolute(path)) throw invalid(`${what} must be an absolute path, got "${path}"`);
  return path;
}

function checkSocketPath(path: string): string {
  checkAbsolute('httpSocket', path);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH)
    throw invalid(`httpSocket ${path} is longer than ${MAX_SOCKET_PATH} bytes: choose a shorter data dir`);
  return path;
}

function checkIp(what: string, addr: string): string {
  if (!isIP(addr)) throw invalid(`${what} must be an IP address, got "${addr}"`);
  return addr;
}

function checkInteger(what: string, n: number, min: number, max: number): number {
  if (!Number.isInteger(n) || n < min || n > max)
    throw invalid(`${what} must be an integer from ${min} to ${max}, got ${n}`);
  return n;
}

/** The defaults overlaid with the given ports, checked: each 1..65535, no two alike. */
function checkPorts(given: Partial<ConsulPorts>): ConsulPorts {
  const ports = { ...DEFAULT_PORTS };
  const seen = new Map<number, string>();
  for (const name of Object.keys(ports) as (keyof ConsulPorts)[]) {
    const port = checkInteger(`ports.${name}`, given[name] ?? ports[name], 1, 65535);
    const other = seen.get(port);
    if (other) throw invalid(`ports.${other} and ports.${name} are both ${port}: give each its own port`);
    seen.set(port, name);
    ports[name] = port;
  }
  return ports;
}

/** An IP literal, optionally with a port (IPv6 in brackets then): never a name to look up. */
function checkJoinAddress(entry: string): string {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(entry) ?? /^([^:]+):(\d+)$/.exec(entry);
  const [host, port] = m ? [m[1]!, Number(m[2])] : [entry, undefined];
  const portOk = port === undefined || (port >= 1 && port <= 65535);
  if (!isIP(host) || !portOk)
    throw invalid(
      `retryJoin entry "${entry}" is not an IP address with an optional port: agents join by address only`,
    );
  return entry;
}

function checkLogLevel(level: ConsulLogLevel): ConsulLogLevel {
  if (!LOG_LEVELS.includes(level))
    throw invalid(`bad Consul log level "${level}": use one of ${LOG_LEVELS.join(', ')}`);
  return level;
}
