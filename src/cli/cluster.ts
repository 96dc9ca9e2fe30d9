import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import type { NodeRecord, ServiceRecord, ServiceSpec, TaskRecord } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import { parseBytes, parseCpus } from '../engine/cgroups/limits.js';
import { splitShellWords } from '../manager/stack/shellwords.js';
import { ago, table } from './render.js';

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
      '--dispatcher-port <port>',
      'port nodes join and talk to this manager on',
      int('--dispatcher-port'),
      2377,
    )
    .action(async (o: Record<string, unknown>) => {
      const r = await getClient().request<{ ClusterId: string; NodeId: string }>('POST', '/swarm/init', {
        body: {
          etcdEndpoints: (o.etcdEndpoints as string | undefined)?.split(',').filter(Boolean),
          etcdClientPort: o.etcdClientPort,
          etcdPeerPort: o.etcdPeerPort,
          advertiseAddr: o.advertiseAddr,
          dispatcherPort: o.dispatcherPort,
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
    .description('Join a swarm as a worker, through one of its managers')
    .argument('<manager>', 'HOST:PORT of a manager')
    .requiredOption('--token <token>', 'the join token (tsswarm swarm join-token worker)')
    .option('--advertise-addr <addr>', 'address of this node')
    .action(async (manager: string, o: { token: string; advertiseAddr?: string }) => {
      await getClient().request('POST', '/swarm/join', {
        body: { token: o.token, manager, advertiseAddr: o.advertiseAddr },
      });
      process.stdout.write('This node joined a swarm as a worker.\n');
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
      const nodes = await getClient().request<NodeRecord[]>('GET', '/nodes');
      if (o.format === 'json') return void json(nodes);
      process.stdout.write(
        table(
          ['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'ROLE', 'ENGINE VERSION'],
          nodes.map((n) => [
            n.id.slice(0, 12),
            n.hostname,
            n.status,
            n.availability,
            n.role,
            n.engineVersion,
          ]),
        ),
      );
    });
  return c;
}

function taskRows(tasks: TaskRecord[]): string[][] {
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

export function serviceCommands(getClient: GetClient): Command {
  const c = new Command('service').description('Manage swarm services').enablePositionalOptions();
  c.command('create')
    .description('Create a service')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .requiredOption('--name <name>', 'service name')
    .option('--replicas <n>', 'number of tasks (replicated mode)', int('--replicas'))
    .addOption(
      new Option('--mode <mode>', 'replicated or global')
        .choices(['replicated', 'global'])
        .default('replicated'),
    )
    .option('-e, --env <KEY=VALUE>', 'environment variable', collect)
    .option('--constraint <expr>', 'placement constraint, e.g. node.role==worker', collect)
    .option('--limit-memory <bytes>', 'memory limit')
    .option('--limit-cpu <cpus>', 'CPU limit')
    .option('--reserve-memory <bytes>', 'memory reservation')
    .option('--reserve-cpu <cpus>', 'CPU reservation')
    .addOption(
      new Option('--restart-condition <c>', 'restart when a task exits').choices([
        'none',
        'on-failure',
        'any',
      ]),
    )
    .option('--restart-delay <ms>', 'delay between restart attempts, in ms', int('--restart-delay'))
    .option('--restart-max-attempts <n>', 'maximum restarts before giving up', int('--restart-max-attempts'))
    .action(async (image: string, args: string[], o: Record<string, unknown>) => {
      const cpu = (v: unknown) => (v === undefined ? undefined : parseCpus(String(v)));
      const spec: Partial<ServiceSpec> = {
        name: o.name as string,
        mode: o.mode as ServiceSpec['mode'],
        replicas: o.replicas as number | undefined,
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
        },
        constraints: (o.constraint as string[]) ?? [],
        reservations: {
          memoryBytes: o.reserveMemory ? parseBytes(String(o.reserveMemory)) : 0,
          nanoCpus: cpu(o.reserveCpu) ?? 0,
        },
        ...(o.restartCondition || o.restartDelay !== undefined || o.restartMaxAttempts !== undefined
          ? {
              restartPolicy: {
                condition: (o.restartCondition as 'none' | 'on-failure' | 'any') ?? 'any',
                delayMs: (o.restartDelay as number) ?? 5000,
                maxAttempts: (o.restartMaxAttempts as number) ?? 0,
                windowMs: 0,
              },
            }
          : {}),
      };
      const rec = await getClient().request<ServiceRecord>('POST', '/services', { body: spec });
      process.stdout.write(`${rec.id}\n`);
    });
  c.command('ls')
    .description('List services')
    .addOption(formatOption())
    .action(async (o: { format: string }) => {
      const client = getClient();
      const [services, tasks] = await Promise.all([
        client.request<ServiceRecord[]>('GET', '/services'),
        client.request<TaskRecord[]>('GET', '/tasks'),
      ]);
      const running = (id: string) =>
        tasks.filter(
          (t) => t.serviceId === id && t.status.state === 'running' && t.desiredState === 'running',
        ).length;
      if (o.format === 'json') return void json(services.map((s) => ({ ...s, running: running(s.id) })));
      process.stdout.write(
        table(
          ['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE'],
          services.map((s) => [
            s.id.slice(0, 12),
            s.spec.name,
            s.spec.mode,
            s.spec.mode === 'global' ? `${running(s.id)}` : `${running(s.id)}/${s.spec.replicas}`,
            s.spec.container.image,
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
  c.command('inspect')
    .description('Show a service (JSON)')
    .argument('<service...>')
    .action(async (refs: string[]) => {
      const out = [];
      for (const r of refs) out.push(await getClient().request('GET', `/services/${enc(r)}`));
      json(out);
    });
  c.command('scale')
    .description('Scale replicated services: SERVICE=REPLICAS ...')
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
  c.command('update')
    .description('Update a service: a changed task spec rolls out per its update config')
    .argument('<service>')
    .option('--image <image>', 'new image')
    .option('--args <command>', 'new command arguments, split as a shell would (e.g. "sh -c \'exit 3\'")')
    .option('--env-add <KEY=VALUE>', 'add or replace an environment variable', collect)
    .option('--replicas <n>', 'number of tasks', int('--replicas'))
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
    .action(async (ref: string, o: Record<string, unknown>) => {
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
      const spec: Partial<ServiceSpec> = {
        container: {
          ...cur.spec.container,
          ...(o.image ? { image: String(o.image) } : {}),
          ...(args ? { args } : {}),
          env,
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
