import { Command, Option } from 'commander';
import { loadStack } from '../manager/stack/load.js';
import { renderStack, type StackFormat } from '../manager/stack/render.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `tsswarm stack …`: stack files (Compose format). `config` reads them without any daemon. */
export function stackCommands(): Command {
  const stack = new Command('stack').description('Stacks: services and networks described by a Compose file');

  stack
    .command('config')
    .description(
      'Print the stack as tsswarm reads it: merged, interpolated, validated, defaults filled (needs no daemon)',
    )
    .requiredOption(
      '-c, --compose-file <file>',
      'stack file; repeat to merge several (later files override earlier ones)',
      collect,
    )
    .addOption(new Option('--format <format>', 'output format').choices(['yaml', 'json']).default('yaml'))
    .argument('[name]', "stack name (default: the file's top-level name, else its directory's name)")
    .action(async (name: string | undefined, o: { composeFile: string[]; format: StackFormat }) => {
      const { stack: loaded, warnings } = await loadStack(o.composeFile, { name });
      for (const w of warnings) process.stderr.write(`WARNING: ${w}\n`);
      process.stdout.write(renderStack(loaded, o.format));
    });

  return stack;
}
