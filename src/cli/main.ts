import { Command, CommanderError } from 'commander';
import { Client, DEFAULT_SOCKET, parseTarget } from '../api/client.js';
import { TsswarmError } from '../api/errors.js';
import { cleanupPrefix, TEST_PREFIX } from '../engine/cleanup.js';
import { DEFAULT_DATA_ROOT } from '../engine/defaults.js';
import { VERSION } from '../version.js';
import { buildCommand } from './build.js';
import { nodeCommands, serviceCommands, swarmCommands } from './cluster.js';
import { containerCommands } from './containers.js';
import { imageCommands } from './images.js';
import { jobCommands } from './jobs.js';
import { loginCommands } from './login.js';
import { lookupCommand } from './lookup.js';
import { networkCommands } from './networks.js';
import { deployCommand, stackCommands } from './stack.js';

let keepRunning = false;

function buildProgram(done: (code: number) => void): Command {
  const program = new Command('tsswarm')
    .description('tsswarm: a declarative multi-container orchestrator with its own container engine')
    .version(VERSION, '-v, --version')
    .option(
      '-H, --host <url>',
      `daemon to talk to: unix:///path or tcp://HOST:PORT (env TSSWARM_HOST; default unix://${DEFAULT_SOCKET})`,
    )
    .option(
      '--tls-dir <dir>',
      'directory with ca.pem, cert.pem, key.pem for a TLS daemon (env TSSWARM_CERT_PATH)',
    )
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)');

  let client: Client | undefined;
  const getClient = () => {
    const o = program.opts<{ host?: string; tlsDir?: string }>();
    client ??= new Client(parseTarget(o.host, o.tlsDir));
    return client;
  };

  program.addCommand(containerCommands(getClient, done));
  program.addCommand(imageCommands(getClient));
  for (const cmd of loginCommands(getClient)) program.addCommand(cmd);
  program.addCommand(buildCommand(getClient));
  program.addCommand(swarmCommands(getClient));
  program.addCommand(nodeCommands(getClient));
  program.addCommand(serviceCommands(getClient));
  program.addCommand(jobCommands(getClient));
  program.addCommand(networkCommands(getClient));
  program.addCommand(lookupCommand(getClient));
  program.addCommand(stackCommands(getClient));
  program.addCommand(deployCommand(getClient));

  program
    .command('daemon')
    .description("Run this host's tsswarm daemon in the foreground (engine API on a unix socket)")
    .option('--data-root <dir>', 'where images, containers and state live', DEFAULT_DATA_ROOT)
    .option('--socket <path>', 'unix socket to serve the API on', DEFAULT_SOCKET)
    .option('--cgroup-parent <name>', 'parent cgroup of every container', 'tsswarm')
    .option(
      '--listen <tcp://ADDR:PORT>',
      'also serve remote clients (TLS with client certificates required unless loopback)',
    )
    .option('--tlscert <file>', 'server certificate for --listen')
    .option('--tlskey <file>', 'server key for --listen')
    .option('--tlscacert <file>', 'CA that client certificates must be signed by')
    .option(
      '--no-datapath',
      "give swarm tasks loopback only and leave the host's network alone (no bridges, VXLAN, rules or DNS)",
    )
    .option(
      '--dns-upstream <addrs>',
      "resolvers (comma-separated IPs) for names outside the swarm asked of the containers' DNS; none: answer NXDOMAIN (default: this host's /etc/resolv.conf)",
    )
    .option(
      '--registry-certs <dir>',
      "CA certificates of registries: DIR/HOST[:PORT]/*.crt, as Docker's certs.d",
      '/etc/tsswarm/certs.d',
    )
    .option(
      '--insecure-registry <host[:port]>',
      'a registry reached over plain HTTP when HTTPS fails (repeatable; loopback registries always are)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(
      async (o: {
        dataRoot: string;
        socket: string;
        cgroupParent: string;
        registryCerts: string;
        insecureRegistry: string[];
        datapath: boolean;
        dnsUpstream?: string;
        listen?: string;
        tlscert?: string;
        tlskey?: string;
        tlscacert?: string;
      }) => {
        keepRunning = true;
        const log = (m: string) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
        // loaded here only: the daemon's modules (fastify, etcd3, x509, …) would slow every CLI call
        const { startDaemon } = await import('../daemon/server.js');
        const d = await startDaemon({
          dataRoot: o.dataRoot,
          socket: o.socket,
          cgroupParent: o.cgroupParent,
          listen: o.listen,
          tlsCert: o.tlscert,
          tlsKey: o.tlskey,
          tlsCaCert: o.tlscacert,
          network: { datapath: o.datapath, dnsUpstream: o.dnsUpstream },
          registry: { certsDir: o.registryCerts, insecure: o.insecureRegistry },
          log,
        });
        const stop = async (sig: string) => {
          log(`${sig}: shutting down; containers keep running and are re-adopted at the next start`);
          await d.close();
          process.exit(0);
        };
        process.on('SIGTERM', () => void stop('SIGTERM'));
        process.on('SIGINT', () => void stop('SIGINT'));
      },
    );

  program
    .command('cleanup')
    .description(
      'Remove leftovers (processes, mounts, cgroups, namespaces, links, directories) of crashed runs',
    )
    .option('--all-test-runs', `everything named ${TEST_PREFIX}*`)
    .option('--prefix <prefix>', 'everything named with this prefix')
    .action(async (o: { allTestRuns?: boolean; prefix?: string }) => {
      const prefix = o.prefix ?? (o.allTestRuns ? TEST_PREFIX : undefined);
      if (!prefix)
        throw new TsswarmError(
          'invalid_argument',
          'say what to clean up: --all-test-runs or --prefix PREFIX',
        );
      const r = await cleanupPrefix(prefix, { linkPrefix: o.allTestRuns ? 'tst' : undefined });
      const n = Object.values(r).reduce((a, v) => a + v.length, 0);
      process.stdout.write(n ? `removed: ${JSON.stringify(r)}\n` : 'nothing to clean up\n');
    });

  program
    .command('version')
    .description('Show the client and daemon versions')
    .action(async () => {
      process.stdout.write(`Client: ${VERSION}\n`);
      const v = await getClient().request<{ Version: string; CgroupVersion: number }>('GET', '/version');
      process.stdout.write(`Daemon: ${v.Version} (cgroup v${v.CgroupVersion})\n`);
    });

  return program;
}

/** Runs the CLI; every error is printed as one line and mapped to an exit code. */
export async function main(argv: string[]): Promise<void> {
  let exitCode: number | undefined;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  program.exitOverride();
  for (const sub of program.commands) {
    sub.exitOverride();
    for (const s of sub.commands) s.exitOverride();
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    if (!keepRunning) process.exit(exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 125);
    }
    if (err instanceof TsswarmError) {
      process.stderr.write(`tsswarm: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`tsswarm: ${e.message}\n`);
    if (process.env.TSSWARM_DEBUG) process.stderr.write(`${e.stack}\n`);
    process.exit(125);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main(process.argv.slice(2));
