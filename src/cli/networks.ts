/** `tsswarm network`: networks of the swarm (create, ls, inspect, rm). */
import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import type { NetworkRecord } from '../api/cluster.js';
import { invalid } from '../api/errors.js';
import { table } from './render.js';

type GetClient = () => Client;
const enc = encodeURIComponent;
const collect = (v: string, prev: string[] = []) => [...prev, v];

function labels(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list ?? []) {
    const eq = l.indexOf('=');
    const [k, v] = eq < 0 ? [l, ''] : [l.slice(0, eq), l.slice(eq + 1)];
    if (!k) throw invalid(`invalid label "${l}": expected KEY or KEY=VALUE`);
    out[k] = v;
  }
  return out;
}

export function networkCommands(getClient: GetClient): Command {
  const c = new Command('network').description('Manage swarm networks').enablePositionalOptions();
  c.command('create')
    .description('Create a network (its subnet is allocated from the address pools unless --subnet)')
    .argument('<name>')
    .addOption(
      new Option('-d, --driver <driver>', 'overlay (across the hosts) or bridge (one per host)')
        .choices(['overlay', 'bridge'])
        .default('overlay'),
    )
    .option('--subnet <cidr>', 'subnet, e.g. 10.0.9.0/24')
    .option('--gateway <ip>', 'gateway address in the subnet (default: its first address)')
    .option('--attachable', 'standalone containers may attach too')
    .option('--internal', 'no way out of the network')
    .option('-l, --label <key=value>', 'set a label', collect)
    .action(async (name: string, o: Record<string, unknown>) => {
      const rec = await getClient().request<NetworkRecord>('POST', '/networks', {
        body: {
          name,
          driver: o.driver,
          subnet: o.subnet,
          gateway: o.gateway,
          attachable: !!o.attachable,
          internal: !!o.internal,
          labels: labels(o.label as string[] | undefined),
        },
      });
      process.stdout.write(`${rec.id}\n`);
    });
  c.command('ls')
    .alias('list')
    .description('List networks')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { format: string }) => {
      const nets = await getClient().request<NetworkRecord[]>('GET', '/networks');
      if (o.format === 'json') return void process.stdout.write(`${JSON.stringify(nets, null, 2)}\n`);
      process.stdout.write(
        table(
          ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE', 'SUBNET', 'GATEWAY'],
          nets.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.scope, n.subnet, n.gateway]),
        ),
      );
    });
  c.command('inspect')
    .description('Show networks with their services (VIPs) and tasks (addresses), as JSON')
    .argument('<network...>')
    .action(async (refs: string[]) => {
      const out = [];
      for (const r of refs) out.push(await getClient().request('GET', `/networks/${enc(r)}`));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    });
  c.command('rm')
    .alias('remove')
    .description('Remove networks (refused while a service is attached)')
    .argument('<network...>')
    .action(async (refs: string[]) => {
      for (const r of refs) {
        await getClient().request('DELETE', `/networks/${enc(r)}`);
        process.stdout.write(`${r}\n`);
      }
    });
  return c;
}
