import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { invalid, precondition, TsswarmError } from '../api/errors.js';
import { DEFAULT_REGISTRY_CERTS, Engine } from '../engine/engine.js';
import { parseUpstreams } from '../network/dns.js';
import { registerClusterRoutes, SwarmHolder } from './clusterRoutes.js';
import { registerEngineRoutes } from './routes.js';
import { handleUpgrade } from './streams.js';

export interface DaemonOptions {
  dataRoot: string;
  socket: string;
  cgroupParent: string;
  /** tcp://ADDR:PORT for remote clients. */
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCaCert?: string;
  /** --no-datapath, --dns-upstream (parseUpstreams). */
  network?: { datapath: boolean; dnsUpstream?: string };
  /** --registry-certs DIR, --insecure-registry HOST[:PORT] (repeatable). */
  registry?: { certsDir?: string; insecure?: string[] };
  log?: (msg: string) => void;
}

export interface RunningDaemon {
  engine: Engine;
  close(): Promise<void>;
}

/** Parses tcp://ADDR:PORT and says whether ADDR is loopback. */
export function parseListen(listen: string): { host: string; port: number; loopback: boolean } {
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(listen);
  if (!m) throw invalid(`invalid --listen "${listen}": expected tcp://ADDR:PORT`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw invalid(`invalid --listen "${listen}": port out of range`);
  const loopback = host === 'localhost' || host === '::1' || /^127\./.test(host);
  return { host, port, loopback };
}

function buildApp(
  engine: Engine,
  swarm: SwarmHolder,
  tls?: { cert: Buffer; key: Buffer; ca: Buffer },
): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: 4 * 1024 * 1024,
    ...(tls
      ? { https: { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true } }
      : {}),
  }) as unknown as FastifyInstance;
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof TsswarmError) return reply.code(err.httpStatus).send(err.toJSON());
    const e = err as { validation?: unknown; statusCode?: number; message: string };
    if (e.validation || (e.statusCode && e.statusCode < 500)) {
      return reply.code(e.statusCode ?? 400).send({ code: 'invalid_argument', message: e.message });
    }
    return reply.code(500).send({ code: 'internal', message: e.message });
  });
  registerEngineRoutes(app, engine);
  registerClusterRoutes(app, swarm, (m) => engine.opts.log?.(m));
  app.server.on('upgrade', (req, socket, head) => void handleUpgrade(engine, req, socket, head));
  return app;
}

async function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Starts the engine and serves its API on the unix socket (and optionally TCP with TLS). */
export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  let tls: { cert: Buffer; key: Buffer; ca: Buffer } | undefined;
  let tcp: ReturnType<typeof parseListen> | undefined;
  if (opts.listen) {
    tcp = parseListen(opts.listen);
    if (opts.tlsCert || opts.tlsKey || opts.tlsCaCert) {
      if (!opts.tlsCert || !opts.tlsKey || !opts.tlsCaCert) {
        throw invalid('TLS needs all of --tlscert, --tlskey and --tlscacert');
      }
      tls = {
        cert: readFileSync(opts.tlsCert),
        key: readFileSync(opts.tlsKey),
        ca: readFileSync(opts.tlsCaCert),
      };
    } else if (!tcp.loopback) {
      throw invalid(
        `refusing to listen on ${opts.listen} without TLS: anyone who can reach it would control this host. ` +
          'Give --tlscert, --tlskey and --tlscacert (clients then need a certificate signed by that CA), or listen on 127.0.0.1',
      );
    }
  }
  if (existsSync(opts.socket)) {
    if (await socketInUse(opts.socket))
      throw precondition(`another daemon is already serving ${opts.socket}`);
    await fs.rm(opts.socket, { force: true });
  }
  await fs.mkdir(dirname(opts.socket), { recursive: true });
  const engine = new Engine({
    dataRoot: opts.dataRoot,
    cgroupParent: opts.cgroupParent,
    log: opts.log,
    network: {
      datapath: opts.network?.datapath ?? true,
      dnsUpstreams: parseUpstreams(opts.network?.dnsUpstream),
    },
    registry: {
      certsDir: opts.registry?.certsDir ?? DEFAULT_REGISTRY_CERTS,
      insecure: opts.registry?.insecure ?? [],
    },
  });
  // relative unix socket paths to the shims are resolved from here (see ContainerManager.ctlPath)
  await fs.mkdir(opts.dataRoot, { recursive: true, mode: 0o711 });
  process.chdir(opts.dataRoot);
  await engine.init();
  const swarm = new SwarmHolder(engine, (m) => opts.log?.(m));
  await swarm.restore();
  const local = buildApp(engine, swarm);
  await local.listen({ path: opts.socket });
  await fs.chmod(opts.socket, 0o660);
  let remote: FastifyInstance | undefined;
  if (tcp) {
    remote = buildApp(engine, swarm, tls);
    await remote.listen({ host: tcp.host, port: tcp.port });
  }
  opts.log?.(
    `tsswarm daemon serving unix://${opts.socket}${opts.listen ? ` and ${opts.listen}${tls ? ' (TLS)' : ''}` : ''}`,
  );
  return {
    engine,
    async close() {
      await swarm.close();
      engine.close();
      await local.close();
      await remote?.close();
    },
  };
}
