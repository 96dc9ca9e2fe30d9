/** `tsswarm lookup SERVICE`: a service's instances, as discovery answers them. */
import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import type { Instance } from '../discovery/instances.js';
import { table } from './render.js';

export function lookupCommand(getClient: () => Client): Command {
  return new Command('lookup')
    .description("A service's healthy instances: address, port, node, task (--all: unhealthy ones too)")
    .argument('<service>')
    .option('-a, --all', 'include instances that are not healthy (starting, waiting for their healthcheck)')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (ref: string, o: { all?: boolean; format: string }) => {
      const list = await getClient().request<Instance[]>(
        'GET',
        `/services/${encodeURIComponent(ref)}/instances`,
        {
          query: { all: o.all ? 1 : undefined },
        },
      );
      if (o.format === 'json') return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      process.stdout.write(
        table(
          ['TASK', 'ADDRESS', 'PORT', 'NETWORK', 'NODE', 'HEALTHY', 'STATE'],
          list.map((i) => [
            i.id.slice(0, 12),
            i.address,
            i.port === undefined ? '' : String(i.port),
            i.network ?? '',
            i.hostname ?? i.node.slice(0, 12),
            i.healthy ? 'yes' : 'no',
            i.state,
          ]),
        ),
      );
    });
}
