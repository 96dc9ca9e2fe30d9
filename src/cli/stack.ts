import { join } from 'node:path';
import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import type { ServiceRecord, TaskRecord } from '../api/cluster.js';
import { invalid, TsswarmError } from '../api/errors.js';
import { registryOf } from '../engine/images/reference.js';
import { encodeAuthHeader } from '../engine/registry/auth.js';
import { isJob } from '../manager/serviceSpec.js';
import type { StackFormat } from '../manager/stack/render.js';
import type { NormalizedStack } from '../manager/stack/types.js';
import { sendBuild } from './build.js';
import { replicaCounts, replicasText } from './cluster.js';
import { credentialsFor } from './credentials.js';
import { authHeaders } from './images.js';
import { followProgress } from './progress.js';
import { table } from './render.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const STACK_LABEL = 'org.tsswarm.stack.namespace';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The stack file reader (yaml, the JSON schema), loaded by the commands that read files only. */
async function stackFiles() {
  const [{ loadStack }, { renderStack }] = await Promise.all([
    import('../manager/stack/load.js'),
    import('../manager/stack/render.js'),
  ]);
  return { loadStack, renderStack };
}

interface DeployResult {
  stack: string;
  networks: string[];
  created: string[];
  updated: string[];
  unchanged: string[];
  removed: string[];
}

/**
 * Waits until every service of the stack runs its desired tasks (jobs: until every wanted run
 * has completed; a scheduled job waits for nothing), printing progress; false on timeout.
 */
async function converge(client: Client, stack: string, timeoutMs: number, quiet: boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let lastLine = '';
  for (;;) {
    const [services, tasks] = await Promise.all([
      client.request<ServiceRecord[]>('GET', '/services'),
      client.request<TaskRecord[]>('GET', '/tasks'),
    ]);
    const mine = services.filter((s) => s.spec.labels[STACK_LABEL] === stack);
    let done = true;
    const parts: string[] = [];
    const problems: string[] = [];
    for (const s of mine) {
      const ts = tasks.filter((t) => t.serviceId === s.id && t.desiredState === 'running');
      if (s.spec.schedule) {
        // a scheduled job runs at its firings: nothing to wait for
        parts.push(`${s.spec.name} scheduled (${s.spec.schedule.cron})`);
        continue;
      }
      if (isJob(s.spec.mode)) {
        const c = replicaCounts(s, tasks);
        if (c.completed! < c.total! || (s.spec.mode === 'global-job' && c.total === 0)) done = false;
        parts.push(`${s.spec.name} ${c.completed}/${c.total} completed`);
        for (const t of ts) {
          const why = t.status.err ?? (t.status.state === 'pending' ? t.status.message : undefined);
          if (why && t.specVersion === s.version) problems.push(`${s.spec.name}: ${why}`);
        }
        continue;
      }
      const running = ts.filter((t) => t.status.state === 'running' && t.specVersion === s.version).length;
      const want = s.spec.mode === 'global' ? ts.length : s.spec.replicas;
      if (running < want || (s.spec.mode === 'global' && ts.length === 0)) done = false;
      parts.push(`${s.spec.name} ${running}/${want}`);
      for (const t of ts) {
        const why = t.status.err ?? (t.status.state === 'pending' ? t.status.message : undefined);
        if (why) problems.push(`${s.spec.name}: ${why}`);
      }
    }
    const line = parts.join('  ');
    if (!quiet && line !== lastLine) process.stderr.write(`${line}\n`);
    lastLine = line;
    if (done) return true;
    if (Date.now() > deadline) {
      for (const p of [...new Set(problems)]) process.stderr.write(`  ${p}\n`);
      return false;
    }
    await sleep(300);
  }
}

/** `tsswarm stack …` and `tsswarm deploy`. `config` reads stack files without any daemon. */
export function stackCommands(getClient: () => Client): Command {
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
      const { loadStack, renderStack } = await stackFiles();
      const { stack: loaded, warnings } = await loadStack(o.composeFile, { name });
      for (const w of warnings) process.stderr.write(`WARNING: ${w}\n`);
      process.stdout.write(renderStack(loaded, o.format));
    });

  stack.addCommand(deployCommand(getClient, 'deploy'));

  stack
    .command('ls')
    .description('List stacks')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { format: string }) => {
      const list = await getClient().request<Array<{ name: string; services: number }>>('GET', '/stacks');
      if (o.format === 'json') return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      process.stdout.write(
        table(
          ['NAME', 'SERVICES'],
          list.map((s) => [s.name, String(s.services)]),
        ),
      );
    });

  stack
    .command('services')
    .description("List a stack's services")
    .argument('<stack>')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (name: string, o: { format: string }) => {
      const client = getClient();
      const [all, tasks] = await Promise.all([
        client.request<ServiceRecord[]>('GET', '/services'),
        client.request<TaskRecord[]>('GET', '/tasks'),
      ]);
      const services = all.filter((s) => s.spec.labels[STACK_LABEL] === name);
      if (services.length === 0) throw new TsswarmError('not_found', `no such stack: ${name}`);
      if (o.format === 'json') {
        const out = services.map((s) => ({ ...s, ...replicaCounts(s, tasks) }));
        return void process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      }
      process.stdout.write(
        table(
          ['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE'],
          services.map((s) => [
            s.id.slice(0, 12),
            s.spec.name,
            s.spec.mode,
            replicasText(s, replicaCounts(s, tasks)),
            s.spec.container.image,
          ]),
        ),
      );
    });

  stack
    .command('ps')
    .description("List a stack's tasks")
    .argument('<stack>')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (name: string, o: { format: string }) => {
      const client = getClient();
      const services = (await client.request<ServiceRecord[]>('GET', '/services')).filter(
        (s) => s.spec.labels[STACK_LABEL] === name,
      );
      if (services.length === 0) throw new TsswarmError('not_found', `no such stack: ${name}`);
      const ids = new Set(services.map((s) => s.id));
      const tasks = (await client.request<TaskRecord[]>('GET', '/tasks')).filter((t) => ids.has(t.serviceId));
      if (o.format === 'json') return void process.stdout.write(`${JSON.stringify(tasks, null, 2)}\n`);
      process.stdout.write(
        table(
          ['ID', 'NAME', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'],
          tasks.map((t) => [
            t.id.slice(0, 12),
            `${t.serviceName}.${t.slot ?? t.nodeId?.slice(0, 12)}`,
            t.nodeId?.slice(0, 12) ?? '',
            t.desiredState,
            t.status.state,
            t.status.err ?? '',
          ]),
        ),
      );
    });

  stack
    .command('rm')
    .description('Remove stacks (their services and tasks)')
    .argument('<stack...>')
    .action(async (names: string[]) => {
      for (const n of names) {
        const r = await getClient().request<{ removed: string[] }>(
          'DELETE',
          `/stacks/${encodeURIComponent(n)}`,
        );
        for (const s of r.removed) process.stdout.write(`Removing service ${s}\n`);
      }
    });

  return stack;
}

/** `tsswarm deploy` (also `tsswarm stack deploy`). */
/**
 * `build:` services: each is built on the daemon, pushed to its `image`, and deployed pinned to
 * the pushed digest (`name:tag@sha256:…`), so every node runs exactly what was built.
 */
async function buildServices(client: Client, stack: NormalizedStack, quiet: boolean): Promise<void> {
  for (const [key, svc] of Object.entries(stack.services)) {
    if (!svc.build) continue;
    if (!quiet) process.stdout.write(`Building ${key} (${svc.image})\n`);
    await sendBuild(client, {
      context: svc.build.context,
      dockerfile: join(svc.build.context, svc.build.dockerfile),
      tags: [svc.image],
      buildArgs: svc.build.args,
      ...(svc.build.target ? { target: svc.build.target } : {}),
      quiet,
    });
    if (!quiet) process.stdout.write(`Pushing ${svc.image}\n`);
    const res = await client.stream('POST', '/images/push', {
      query: { ref: svc.image },
      headers: await authHeaders(svc.image),
    });
    const pushed = await followProgress<{ digest: string }>(res, process.stdout, quiet);
    svc.image = `${svc.image.replace(/@sha256:[a-f0-9]{64}$/, '')}@${pushed.digest}`;
    delete svc.build;
  }
}

export function deployCommand(getClient: () => Client, name = 'deploy'): Command {
  return new Command(name)
    .description('Deploy a stack file: create, update and (with --prune) remove services to match it')
    .argument('[file]', 'stack file (or use -c)')
    .argument('[name]', "stack name (default: the file's top-level name, else its directory's name)")
    .option('-c, --compose-file <file>', 'stack file; repeat to merge several', collect)
    .option('--prune', "remove the stack's services that are no longer in the file")
    .option('-d, --detach', 'return at once instead of waiting for the services to converge')
    .option('--timeout <seconds>', 'how long to wait for convergence', '120')
    .option('-q, --quiet', 'no progress lines')
    .option(
      '--with-registry-auth',
      'send your registry logins with the services, for the nodes to pull their images',
    )
    .option('--no-build', 'do not build services with build: (their images must be in the registry already)')
    .action(
      async (
        file: string | undefined,
        nameArg: string | undefined,
        o: {
          composeFile?: string[];
          prune?: boolean;
          detach?: boolean;
          timeout: string;
          quiet?: boolean;
          withRegistryAuth?: boolean;
          build: boolean;
        },
      ) => {
        const files = o.composeFile?.length ? o.composeFile : file ? [file] : [];
        let stackName = nameArg;
        if (o.composeFile?.length && file && !nameArg) stackName = file; // `deploy -c f.yml NAME`
        if (files.length === 0)
          throw invalid('deploy needs a stack file: tsswarm deploy stack.yml [NAME] or -c FILE');
        const timeout = Number(o.timeout);
        if (!Number.isFinite(timeout) || timeout <= 0) throw invalid(`invalid --timeout "${o.timeout}"`);
        const { loadStack } = await stackFiles();
        const { stack, warnings } = await loadStack(files, { name: stackName });
        for (const w of warnings) process.stderr.write(`WARNING: ${w}\n`);
        const client = getClient();
        if (o.build) await buildServices(client, stack, !!o.quiet);
        const registryAuth: Record<string, string> = {};
        if (o.withRegistryAuth) {
          for (const svc of Object.values(stack.services)) {
            const host = registryOf(svc.image);
            const creds = host ? await credentialsFor(host) : undefined;
            if (creds) registryAuth[host] = encodeAuthHeader(creds);
          }
        }
        const r = await client.request<DeployResult>('POST', '/stacks/deploy', {
          body: { stack, prune: !!o.prune, ...(o.withRegistryAuth ? { registryAuth } : {}) },
        });
        for (const n of r.networks) process.stdout.write(`Creating network ${n}\n`);
        for (const s of r.created) process.stdout.write(`Creating service ${s}\n`);
        for (const s of r.updated) process.stdout.write(`Updating service ${s}\n`);
        for (const s of r.removed) process.stdout.write(`Removing service ${s}\n`);
        if (o.detach) return;
        if (!(await converge(client, r.stack, timeout * 1000, !!o.quiet))) {
          throw new TsswarmError(
            'precondition',
            `stack ${r.stack} did not converge within ${timeout}s (see above)`,
          );
        }
      },
    );
}
