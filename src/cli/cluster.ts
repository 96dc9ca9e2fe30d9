import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import type { JobSchedule, NodeRecord, ServiceRecord, ServiceSpec, TaskRecord } from '../api/cluster.js';
import { invalid, TsswarmError } from '../api/errors.js';
import { parseBytes, parseCpus } from '../engine/cgroups/limits.js';
import type { HealthcheckRequest } from '../engine/containers/health.js';
import { registryOf } from '../engine/images/reference.js';
import { encodeAuthHeader } from '../engine/registry/auth.js';
import { isTerminal } from '../manager/orchestrator/states.js';
import type { RestartPolicy } from '../manager/orchestrator/types.js';
import {
  isJob,
  parsePlacementPref,
  parsePublish,
  type ServiceSpecInput,
  updatePorts,
  updatePreferences,
} from '../manager/serviceSpec.js';
import { splitShellWords } from '../manager/stack/shellwords.js';
import { credentialsFor } from './credentials.js';
import { addHealthOptions, healthFromFlags } from './health.js';
import { ago, table } from './render.js';
import { logQuery, relayOutput } from './streams.js';

type GetClient = () => Client;
const collect = (v: string, prev: string[] = []) => [...prev, v];
const enc = encodeURIComponent;
const int = (name: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw invalid(`${name} must be a whole number, not "${v}"`);
  return Number(v);
};
const formatOption = () =>
  new Option('--format <format>', 'output format').choices(['table', 'json']).default('table');
const json = (v: unknown) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

export function swarmCommands(getClient: GetClient): Command {
  const c = new Command('swarm').description('Manage the swarm this node belongs to');
  c.command('init')
    .description(
      'Create a swarm with this node as its first manager (starts a local etcd unless --etcd-endpoints)',
    )
    .option('--etcd-endpoints <urls>', 'use this etcd cluster (comma-separated URLs) instead of a local one')
    .option('--etcd-client-port <port>', 'client port of the local etcd', int('--etcd-client-port'), 2379)
    .option('--etcd-peer-port <port>', 'peer port of the local etcd', int('--etcd-peer-port'), 2380)
    .option('--advertise-addr <addr>', 'address other nodes reach this one at', '127.0.0.1')
    .option(
      '--default-addr-pool <cidr>',
      'address pool of overlay networks (repeatable; default 10.0.0.0/8)',
      collect,
    )
    .option(
      '--default-addr-pool-mask-length <n>',
      'size of the subnets carved from the pools (default 24)',
      int('--default-addr-pool-mask-length'),
    )
    .option(
      '--dispatcher-port <port>',
      'port nodes join and talk to this manager on',
      int('--dispatcher-port'),
      2377,
    )
    .option(
      '--consul',
      'register every task in Consul: each manager runs a Consul server, each worker a client agent',
    )
    .option(
      '--consul-addr <host:port>',
      "register every task in the existing Consul whose agent's HTTP API is here",
    )
    .option('--consul-datacenter <dc>', 'the Consul datacenter (default dc1)')
    .action(async (o: Record<string, unknown>) => {
      const r = await getClient().request<{ ClusterId: string; NodeId: string }>('POST', '/swarm/init', {
        body: {
          etcdEndpoints: (o.etcdEndpoints as string | undefined)?.split(',').filter(Boolean),
          etcdClientPort: o.etcdClientPort,
          etcdPeerPort: o.etcdPeerPort,
          advertiseAddr: o.advertiseAddr,
          dispatcherPort: o.dispatcherPort,
          defaultAddrPools: o.defaultAddrPool,
          defaultAddrPoolMaskLength: o.defaultAddrPoolMaskLength,
          consul: o.consul,
          consulAddr: o.consulAddr,
          consulDatacenter: o.consulDatacenter,
        },
      });
      process.stdout.write(`Swarm initialized: current node (${r.NodeId}) is now a manager.\n`);
    });
  c.command('join-token')
    .description('Print the command that joins a node as a worker (or manager)')
    .argument('<role>', 'worker or manager')
    .option('--rotate', 'replace the token first (the old one stops working)')
    .option('-q, --quiet', 'print the token only')
    .action(async (role: string, o: { rotate?: boolean; quiet?: boolean }) => {
      if (role !== 'worker' && role !== 'manager') throw invalid(`unknown role "${role}": worker or manager`);
      const r = await getClient().request<{ Token: string; Manager: string }>('GET', '/swarm/join-token', {
        query: { role, rotate: o.rotate ? '1' : undefined },
      });
      if (o.quiet) return void process.stdout.write(`${r.Token}\n`);
      process.stdout.write(
        `To add a ${role} to this swarm, run the following command:\n\n    tsswarm swarm join --token ${r.Token} ${r.Manager}\n\n`,
      );
    });
  c.command('join')
    .description('Join a swarm as a worker or a manager (by the token), through one of its managers')
    .argument('<manager>', 'HOST:PORT of a manager')
    .requiredOption('--token <token>', 'the join token (tsswarm swarm join-token worker|manager)')
    .option('--advertise-addr <addr>', 'address of this node (required to join as a manager)')
    .option(
      '--dispatcher-port <port>',
      'as a manager: port nodes talk to this manager on',
      int('--dispatcher-port'),
    )
    .action(
      async (manager: string, o: { token: string; advertiseAddr?: string; dispatcherPort?: number }) => {
        const r = await getClient().request<{ Role: string }>('POST', '/swarm/join', {
          body: { token: o.token, manager, advertiseAddr: o.advertiseAddr, dispatcherPort: o.dispatcherPort },
        });
        process.stdout.write(`This node joined a swarm as a ${r.Role}.\n`);
      },
    );
  c.command('inspect')
    .description(
      'Show the swarm as this manager sees it (JSON): cluster and node ids, etcd endpoints, discovery',
    )
    .action(async () => {
      json(await getClient().request('GET', '/swarm'));
    });
  c.command('leave')
    .description(
      'Leave the swarm: task containers are removed and the node forgets the swarm (a manager needs --force)',
    )
    .option(
      '-f, --force',
      'leave even as a manager (its etcd member leaves too; the last one ends the swarm)',
    )
    .action(async (o: { force?: boolean }) => {
      await getClient().request('POST', '/swarm/leave', { query: { force: o.force ? '1' : undefined } });
      process.stdout.write('Node left the swarm.\n');
    });
  return c;
}

export function nodeCommands(getClient: GetClient): Command {
  const c = new Command('node').description('Manage swarm nodes');
  c.command('inspect')
    .description('Show nodes (JSON)')
    .argument('<node...>')
    .action(async (refs: string[]) => {
      const out = [];
      for (const r of refs) out.push(await getClient().request('GET', `/nodes/${enc(r)}`));
      json(out);
    });
  c.command('update')
    .description(
      'Change a node: availability (drain moves its tasks away, pause takes no new ones) and labels',
    )
    .argument('<node>')
    .addOption(
      new Option('--availability <a>', 'active, pause or drain').choices(['active', 'pause', 'drain']),
    )
    .option('--label-add <key=value>', 'add or change a label', collect)
    .option('--label-rm <key>', 'remove a label', collect)
    .action(async (ref: string, o: { availability?: string; labelAdd?: string[]; labelRm?: string[] }) => {
      await getClient().request('POST', `/nodes/${enc(ref)}/update`, { body: o });
      process.stdout.write(`${ref}\n`);
    });
  for (const [verb, role] of [
    ['promote', 'manager'],
    ['demote', 'worker'],
  ] as const) {
    c.command(verb)
      .description(
        verb === 'promote'
          ? "Make workers managers (each gets a manager certificate and, with the swarm's own etcd, a member)"
          : 'Make managers workers (their etcd members leave; the last manager cannot be demoted)',
      )
      .argument('<node...>')
      .action(async (refs: string[]) => {
        for (const r of refs) {
          await getClient().request('POST', `/nodes/${enc(r)}/${verb}`);
          process.stdout.write(`Node ${r} ${verb}d to a ${role} in the swarm.\n`);
        }
      });
  }
  c.command('rm')
    .description('Remove a node that is down from the swarm')
    .argument('<node...>')
    .option('-f, --force', 'remove it even if it is not down')
    .action(async (refs: string[], o: { force?: boolean }) => {
      for (const r of refs) {
        await getClient().request('DELETE', `/nodes/${enc(r)}`, {
          query: { force: o.force ? '1' : undefined },
        });
        process.stdout.write(`${r}\n`);
      }
    });
  c.command('ls')
    .description('List the nodes of the swarm')
    .addOption(formatOption())
    .action(async (o: { format: string }) => {
      const nodes = await getClient().request<Array<NodeRecord & { managerStatus?: string }>>(
        'GET',
        '/nodes',
      );
      if (o.format === 'json') return void json(nodes);
      process.stdout.write(
        table(
          ['ID', 'HOSTNAME', 'ADDRESS', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS', 'ENGINE VERSION'],
          nodes.map((n) => [
            n.id.slice(0, 12),
            n.hostname,
            n.address,
            n.status,
            n.availability,
            n.managerStatus ?? '',
            n.engineVersion,
          ]),
        ),
      );
    });
  return c;
}

/** How many of a service's tasks run, are wanted, and (jobs) have completed. */
export interface ReplicaCounts {
  running: number;
  desired: number;
  /** Jobs: successful tasks of the current run, and how many are wanted in all. */
  completed?: number;
  total?: number;
}

export function replicaCounts(s: ServiceRecord, tasks: readonly TaskRecord[]): ReplicaCounts {
  const mine = tasks.filter((t) => t.serviceId === s.id);
  const isRunning = (t: TaskRecord) => t.status.state === 'running' && t.desiredState === 'running';
  const live = (t: TaskRecord) => t.desiredState === 'running' && !isTerminal(t.status.state);
  if (!isJob(s.spec.mode)) {
    const running = mine.filter(isRunning).length;
    return { running, desired: s.spec.mode === 'global' ? mine.filter(live).length : s.spec.replicas };
  }
  // a job's current run (its iteration, or else its version): older tasks are history
  const cur = mine.filter((t) => (s.job ? t.jobIteration === s.job.iteration : t.specVersion === s.version));
  const done = new Set<string>();
  for (const t of cur) {
    if (t.status.state !== 'complete' || (t.status.exitCode ?? 0) !== 0) continue;
    if (s.spec.mode === 'global-job') done.add(t.nodeId ?? t.id);
    else if (t.slot !== undefined && t.slot <= s.spec.replicas) done.add(String(t.slot));
  }
  const completed = done.size;
  const running = cur.filter(isRunning).length;
  if (s.spec.mode === 'global-job') {
    // every node the job was started on, those where the restart policy gave up included
    const nodes = new Set(cur.filter((t) => t.desiredState === 'running').map((t) => t.nodeId ?? t.id));
    return { running, desired: cur.filter(live).length, completed, total: Math.max(nodes.size, completed) };
  }
  // desired: the tasks wanted up now (at most max-concurrent; none for a slot given up on)
  return { running, desired: cur.filter(live).length, completed, total: s.spec.replicas };
}

/** The REPLICAS column as docker shows it: `2/3`, `1/1 (max 1 per node)`, jobs `1/2 (3/5 completed)`. */
export function replicasText(s: ServiceRecord, c: ReplicaCounts): string {
  const base = `${c.running}/${c.desired}`;
  if (c.completed !== undefined) return `${base} (${c.completed}/${c.total} completed)`;
  return s.spec.maxReplicasPerNode ? `${base} (max ${s.spec.maxReplicasPerNode} per node)` : base;
}

/** `--network NAME` or `--network name=NAME,alias=A,alias=B`. */
export function parseNetworkFlag(v: string): { target: string; aliases?: string[] } {
  if (!v.includes('=')) return { target: v };
  let target = '';
  const aliases: string[] = [];
  for (const part of v.split(',')) {
    const eq = part.indexOf('=');
    const [k, val] = [part.slice(0, eq), part.slice(eq + 1)];
    if (k === 'name' || k === 'target') target = val;
    else if (k === 'alias') aliases.push(val);
    else throw invalid(`invalid --network "${v}": NAME or name=NAME[,alias=ALIAS...]`);
  }
  if (!target) throw invalid(`invalid --network "${v}": the network's name is missing`);
  return { target, ...(aliases.length ? { aliases } : {}) };
}

/** `service update --health-*`: the given parts over the current healthcheck; `--no-healthcheck` disables it. */
function healthUpdate(
  current: HealthcheckRequest | undefined,
  given: HealthcheckRequest | undefined,
): { healthcheck?: HealthcheckRequest } {
  if (!given) return {};
  if (given.test?.[0] === 'NONE') return { healthcheck: given };
  const base = current?.test?.[0] === 'NONE' ? {} : current;
  return { healthcheck: { ...base, ...given } };
}

/** The `--schedule-*` options of `service create` and `service update` (`--schedule` is the command's own). */
function scheduleOptionsOf(cmd: Command): Command {
  return cmd
    .option('--schedule-timezone <tz>', 'time zone of the schedule (default UTC)')
    .addOption(
      new Option(
        '--schedule-concurrency <c>',
        'a firing while the previous run goes: forbid (skip it; default), allow (run both) or replace',
      ).choices(['forbid', 'allow', 'replace']),
    )
    .option('--schedule-history <n>', 'runs kept by job history (default 5)', int('--schedule-history'))
    .addOption(
      new Option(
        '--schedule-missed <policy>',
        'scheduled times missed while no leader fired: run-once (one run for all; default) or skip',
      ).choices(['run-once', 'skip']),
    );
}

/** `--schedule*` options as a spec's schedule, over the current one (checked by the manager). */
function scheduleOptions(
  o: Record<string, unknown>,
  current: JobSchedule | undefined,
): Pick<ServiceSpecInput, 'schedule'> {
  const rest = ['scheduleTimezone', 'scheduleConcurrency', 'scheduleHistory', 'scheduleMissed'];
  const stray = rest.find((k) => o[k] !== undefined);
  const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (o.schedule === false) {
    if (stray) throw invalid(`--no-schedule cannot be used with ${flag(stray)}`);
    return { schedule: null };
  }
  if (o.schedule === undefined && !stray) return {};
  if (o.schedule === undefined && !current) throw invalid(`${flag(stray!)} needs --schedule`);
  return {
    schedule: {
      ...current,
      cron: String(o.schedule ?? current?.cron),
      ...(o.scheduleTimezone !== undefined ? { timezone: String(o.scheduleTimezone) } : {}),
      ...(o.scheduleConcurrency !== undefined
        ? { concurrency: o.scheduleConcurrency as 'forbid' | 'allow' | 'replace' }
        : {}),
      ...(o.scheduleHistory !== undefined ? { history: o.scheduleHistory as number } : {}),
      ...(o.scheduleMissed !== undefined ? { missed: o.scheduleMissed as 'run-once' | 'skip' } : {}),
    },
  };
}

export interface LogsOptions {
  follow?: boolean;
  tail?: number;
  since?: string;
  timestamps?: boolean;
  taskIds: boolean;
  raw?: boolean;
}

/** The options of `service logs` (and `job logs`). */
export function logsOptions(cmd: Command): Command {
  return cmd
    .option(
      '-f, --follow',
      'follow log output (of the tasks running now: tasks started later are not picked up)',
    )
    .option('-n, --tail <n>', 'number of lines to show from the end of each task', int('--tail'))
    .option('--since <time>', 'show logs since a timestamp (RFC 3339, Unix seconds) or a duration (e.g. 10m)')
    .option('-t, --timestamps', 'show timestamps')
    .option('--no-task-ids', 'do not include task ids in the prefix (web.1@host)')
    .option('--raw', 'no prefix: only the lines');
}

/** Prints the logs of a service's tasks (of one job run with `run`), merged from their nodes. */
export async function printServiceLogs(
  client: Client,
  ref: string,
  o: LogsOptions,
  run?: number,
): Promise<void> {
  const res = await client.stream('GET', `/services/${enc(ref)}/logs`, {
    query: {
      ...logQuery(o),
      raw: o.raw ? 1 : undefined,
      noTaskIds: o.taskIds ? undefined : 1,
      run,
    },
  });
  // the daemon ends with an exit frame: non-zero when no task's logs could be read
  if (await relayOutput(res))
    throw new TsswarmError('daemon_unreachable', `the logs of ${ref} could not be read from any node`);
}

export function taskRows(tasks: TaskRecord[]): string[][] {
  return [...tasks]
    .sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || b.createdAt - a.createdAt)
    .map((t) => [
      t.id.slice(0, 12),
      `${t.serviceName}.${t.slot ?? t.nodeId?.slice(0, 12)}`,
      t.container.image,
      t.nodeId?.slice(0, 12) ?? '',
      t.desiredState,
      `${t.status.state} ${ago(new Date(t.status.timestamp).toISOString())}`,
      t.status.err ?? (t.status.state === 'pending' ? (t.status.message ?? '') : ''),
    ]);
}

/** `{registryAuth}` from `tsswarm login`'s store for the image's registry (none stored: a clear error). */
async function registryAuthFor(image: string): Promise<{ registryAuth: string }> {
  const host = registryOf(image);
  const creds = host ? await credentialsFor(host) : undefined;
  if (!creds)
    throw invalid(`--with-registry-auth: not logged in to ${host || image}: run \`tsswarm login ${host}\``);
  return { registryAuth: encodeAuthHeader(creds) };
}

export function serviceCommands(getClient: GetClient): Command {
  const c = new Command('service').description('Manage swarm services').enablePositionalOptions();
  const create = c
    .command('create')
    .description('Create a service')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .requiredOption('--name <name>', 'service name')
    .option(
      '--replicas <n>',
      'number of tasks (replicated), or of successful completions wanted (replicated-job; default 1)',
      int('--replicas'),
    )
    .addOption(
      new Option(
        '--mode <mode>',
        'replicated, global (one task per node), replicated-job or global-job (tasks run to completion)',
      ).choices(['replicated', 'global', 'replicated-job', 'global-job']),
    )
    .option(
      '--max-concurrent <n>',
      'replicated-job: tasks run at once (default: --replicas)',
      int('--max-concurrent'),
    )
    .option('-e, --env <KEY=VALUE>', 'environment variable', collect)
    .option(
      '--with-registry-auth',
      'send your registry login for the image with the service, for the nodes to pull it',
    )
    .option(
      '--network <network>',
      'attach to a network: NAME or name=NAME[,alias=ALIAS...] (repeatable)',
      collect,
    )
    .option(
      '--schedule <cron>',
      'run the job at each firing of a cron expression (node-cron: 5 fields, or 6 with seconds first); the mode defaults to replicated-job',
    )
    .option('--constraint <expr>', 'placement constraint, e.g. node.role==worker', collect)
    .option(
      '--placement-pref <pref>',
      'placement preference, e.g. spread=node.labels.zone (repeatable: spread within spread)',
      collect,
    )
    .option(
      '-p, --publish <port>',
      'publish a port: [PUBLISHED:]TARGET[/PROTOCOL] or published=8080,target=80[,protocol=tcp|udp|sctp][,mode=ingress|host] (repeatable)',
      collect,
    )
    .option('--limit-memory <bytes>', 'memory limit')
    .option('--limit-cpu <cpus>', 'CPU limit')
    .option('--reserve-memory <bytes>', 'memory reservation')
    .option('--reserve-cpu <cpus>', 'CPU reservation')
    .addOption(
      new Option(
        '--restart-condition <c>',
        'restart when a task exits (default any; on-failure for jobs, which never rerun a success)',
      ).choices(['none', 'on-failure', 'any']),
    )
    .option('--restart-delay <ms>', 'delay between restart attempts, in ms', int('--restart-delay'))
    .option('--restart-max-attempts <n>', 'maximum restarts before giving up', int('--restart-max-attempts'));
  scheduleOptionsOf(addHealthOptions(create)).action(
    async (image: string, args: string[], o: Record<string, unknown>) => {
      const cpu = (v: unknown) => (v === undefined ? undefined : parseCpus(String(v)));
      const restart: Partial<RestartPolicy> = {
        ...(o.restartCondition ? { condition: o.restartCondition as RestartPolicy['condition'] } : {}),
        ...(o.restartDelay !== undefined ? { delayMs: o.restartDelay as number } : {}),
        ...(o.restartMaxAttempts !== undefined ? { maxAttempts: o.restartMaxAttempts as number } : {}),
      };
      const ports = ((o.publish as string[]) ?? []).flatMap(parsePublish);
      const health = healthFromFlags(o);
      const spec: ServiceSpecInput = {
        name: o.name as string,
        mode: o.mode as ServiceSpec['mode'],
        replicas: o.replicas as number | undefined,
        ...(o.maxConcurrent !== undefined ? { maxConcurrent: o.maxConcurrent as number } : {}),
        container: {
          image,
          args: args.length ? args : undefined,
          env: (o.env as string[]) ?? [],
          labels: {},
          stopGracePeriodMs: 10_000,
          limits: {
            memoryBytes: o.limitMemory ? parseBytes(String(o.limitMemory)) : undefined,
            nanoCpus: cpu(o.limitCpu),
          },
          ...(health ? { healthcheck: health } : {}),
          ...(o.withRegistryAuth ? await registryAuthFor(image) : {}),
        },
        constraints: (o.constraint as string[]) ?? [],
        preferences: ((o.placementPref as string[]) ?? []).map(parsePlacementPref),
        reservations: {
          memoryBytes: o.reserveMemory ? parseBytes(String(o.reserveMemory)) : 0,
          nanoCpus: cpu(o.reserveCpu) ?? 0,
        },
        ...(Object.keys(restart).length > 0 ? { restartPolicy: restart } : {}),
        ...(ports.length > 0 ? { endpoint: { ports } } : {}),
        ...scheduleOptions(o, undefined),
        ...(o.network ? { networks: (o.network as string[]).map(parseNetworkFlag) } : {}),
      };
      const rec = await getClient().request<ServiceRecord>('POST', '/services', { body: spec });
      process.stdout.write(`${rec.id}\n`);
    },
  );
  c.command('ls')
    .description('List services')
    .addOption(formatOption())
    .action(async (o: { format: string }) => {
      const client = getClient();
      const [services, tasks] = await Promise.all([
        client.request<ServiceRecord[]>('GET', '/services'),
        client.request<TaskRecord[]>('GET', '/tasks'),
      ]);
      if (o.format === 'json') return void json(services.map((s) => ({ ...s, ...replicaCounts(s, tasks) })));
      process.stdout.write(
        table(
          ['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE', 'PORTS'],
          services.map((s) => [
            s.id.slice(0, 12),
            s.spec.name,
            s.spec.mode,
            replicasText(s, replicaCounts(s, tasks)),
            s.spec.container.image,
            portsText(s),
          ]),
        ),
      );
    });
  c.command('ps')
    .description("List a service's tasks")
    .argument('<service>')
    .addOption(formatOption())
    .action(async (ref: string, o: { format: string }) => {
      const tasks = await getClient().request<TaskRecord[]>('GET', '/tasks', { query: { service: ref } });
      if (o.format === 'json') return void json(tasks);
      process.stdout.write(
        table(['ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'], taskRows(tasks)),
      );
    });
  logsOptions(
    c
      .command('logs')
      .description(
        "Fetch the logs of a service's tasks (or of one task) from every node that ran them; stderr lines go to stderr",
      )
      .argument('<service|task>', 'a service name or id, or a task id'),
  ).action((ref: string, o: LogsOptions) => printServiceLogs(getClient(), ref, o));
  c.command('inspect')
    .description('Show a service (JSON)')
    .argument('<service...>')
    .action(async (refs: string[]) => {
      const out = [];
      for (const r of refs) out.push(await getClient().request('GET', `/services/${enc(r)}`));
      json(out);
    });
  c.command('scale')
    .description('Scale replicated services: SERVICE=REPLICAS ... (not global services, not jobs)')
    .argument('<service=replicas...>')
    .action(async (pairs: string[]) => {
      for (const p of pairs) {
        const m = /^([^=]+)=(\d+)$/.exec(p);
        if (!m) throw invalid(`invalid scale "${p}": expected SERVICE=REPLICAS, e.g. web=3`);
        await getClient().request('POST', `/services/${enc(m[1]!)}/scale`, {
          body: { replicas: Number(m[2]) },
        });
        process.stdout.write(`${m[1]} scaled to ${m[2]}\n`);
      }
    });
  const update = c
    .command('update')
    .description('Update a service: a changed task spec rolls out per its update config')
    .argument('<service>')
    .option('--image <image>', 'new image')
    .option(
      '--with-registry-auth',
      'send your registry login for the image with the service, for the nodes to pull it',
    )
    .option('--args <command>', 'new command arguments, split as a shell would (e.g. "sh -c \'exit 3\'")')
    .option('--env-add <KEY=VALUE>', 'add or replace an environment variable', collect)
    .option('--replicas <n>', 'number of tasks (replicated-job: completions wanted)', int('--replicas'))
    .option('--max-concurrent <n>', 'replicated-job: tasks run at once', int('--max-concurrent'))
    .option(
      '--placement-pref-add <pref>',
      'add a placement preference, e.g. spread=node.labels.zone',
      collect,
    )
    .option('--placement-pref-rm <pref>', 'remove a placement preference', collect)
    .option(
      '--publish-add <port>',
      'publish a port (as create --publish): [PUBLISHED:]TARGET[/PROTOCOL] or published=P,target=T,…',
      collect,
    )
    .option('-p, --publish <port>', 'same as --publish-add', collect)
    .option(
      '--publish-rm <port>',
      'stop publishing a port, named by its target port: TARGET[/PROTOCOL]',
      collect,
    )
    .option('--update-parallelism <n>', 'tasks updated at once (0: all)', int('--update-parallelism'))
    .option('--update-delay <ms>', 'delay between batches, in ms', int('--update-delay'))
    .option(
      '--update-monitor <ms>',
      'how long a new task is watched for failure, in ms',
      int('--update-monitor'),
    )
    .addOption(
      new Option('--update-failure-action <a>', 'when an update fails').choices([
        'pause',
        'continue',
        'rollback',
      ]),
    )
    .addOption(
      new Option('--update-order <o>', 'stop old tasks first, or start new ones first').choices([
        'stop-first',
        'start-first',
      ]),
    )
    .option('--force', 'replace the tasks even if nothing changed')
    .option('--schedule <cron>', 'a new cron schedule (the service must be a job)')
    .option('--no-schedule', 'remove the schedule: no more firings (job rerun still starts a run)');
  scheduleOptionsOf(addHealthOptions(update)).action(async (ref: string, o: Record<string, unknown>) => {
    const client = getClient();
    const cur = await client.request<ServiceRecord>('GET', `/services/${enc(ref)}`);
    const env = [...cur.spec.container.env];
    for (const kv of (o.envAdd as string[]) ?? []) {
      const key = kv.split('=')[0];
      const i = env.findIndex((e) => e.split('=')[0] === key);
      if (i >= 0) env[i] = kv;
      else env.push(kv);
    }
    let args: string[] | undefined;
    if (o.args !== undefined) {
      const split = splitShellWords(String(o.args));
      if (!split.ok) throw invalid(`invalid --args: ${split.error}`);
      args = split.value;
    }
    const prefAdd = (o.placementPrefAdd as string[]) ?? [];
    const prefRm = (o.placementPrefRm as string[]) ?? [];
    const portAdd = [...((o.publishAdd as string[]) ?? []), ...((o.publish as string[]) ?? [])];
    const portRm = (o.publishRm as string[]) ?? [];
    const spec: ServiceSpecInput = {
      ...(prefAdd.length + prefRm.length > 0
        ? { preferences: updatePreferences(cur.spec.preferences, prefAdd, prefRm) }
        : {}),
      ...(portAdd.length + portRm.length > 0
        ? {
            endpoint: {
              ...(cur.spec.endpoint?.mode ? { mode: cur.spec.endpoint.mode } : {}),
              ports: updatePorts(cur.spec.endpoint?.ports ?? [], portAdd, portRm),
            },
          }
        : {}),
      ...(o.maxConcurrent !== undefined ? { maxConcurrent: o.maxConcurrent as number } : {}),
      container: {
        ...cur.spec.container,
        ...(o.image ? { image: String(o.image) } : {}),
        ...(args ? { args } : {}),
        env,
        ...healthUpdate(cur.spec.container.healthcheck, healthFromFlags(o)),
        ...(o.withRegistryAuth ? await registryAuthFor(String(o.image ?? cur.spec.container.image)) : {}),
      },
      update: {
        ...cur.spec.update,
        ...(o.updateParallelism !== undefined ? { parallelism: o.updateParallelism as number } : {}),
        ...(o.updateDelay !== undefined ? { delayMs: o.updateDelay as number } : {}),
        ...(o.updateMonitor !== undefined ? { monitorMs: o.updateMonitor as number } : {}),
        ...(o.updateFailureAction ? { failureAction: o.updateFailureAction as 'pause' } : {}),
        ...(o.updateOrder ? { order: o.updateOrder as 'stop-first' } : {}),
      },
      ...(o.replicas !== undefined ? { replicas: o.replicas as number } : {}),
      ...scheduleOptions(o, cur.spec.schedule),
    };
    await client.request('POST', `/services/${enc(ref)}/update`, { body: { spec, force: !!o.force } });
    process.stdout.write(`${ref}\n`);
  });
  c.command('rollback')
    .description('Roll a service back to its previous spec')
    .argument('<service>')
    .action(async (ref: string) => {
      await getClient().request('POST', `/services/${enc(ref)}/rollback`);
      process.stdout.write(`${ref}\n`);
    });
  c.command('rm')
    .description('Remove services (their tasks are stopped)')
    .argument('<service...>')
    .action(async (refs: string[]) => {
      for (const r of refs) {
        await getClient().request('DELETE', `/services/${enc(r)}`);
        process.stdout.write(`${r}\n`);
      }
    });
  return c;
}

/** The PORTS column as docker shows it: `*:8080->80/tcp`, host mode `8080->80/tcp (host)`. */
function portsText(s: ServiceRecord): string {
  return (s.spec.endpoint?.ports ?? [])
    .map(
      (p) =>
        `${p.mode === 'ingress' ? '*:' : ''}${p.published ?? ''}->${p.target}/${p.protocol}${p.mode === 'host' ? ' (host)' : ''}`,
    )
    .join(', ');
}
