import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import { invalid } from '../api/errors.js';
import type { ContainerCreateRequest } from '../engine/containers/types.js';
import { addHealthOptions, healthFromFlags } from './health.js';
import { ago, humanBytes, table } from './render.js';
import { logQuery, parseDetachKeys, relayInput, relayOutput } from './streams.js';

type GetClient = () => Client;
const collect = (v: string, prev: string[] = []) => [...prev, v];
const int = (name: string) => (v: string) => {
  if (!/^-?\d+$/.test(v)) throw invalid(`${name} must be a whole number, not "${v}"`);
  return Number(v);
};

interface ContainerView {
  Id: string;
  Name: string;
  Created: string;
  Image: string;
  Path: string;
  Args: string[];
  State: {
    Status: string;
    Running: boolean;
    Pid: number;
    ExitCode: number;
    OOMKilled: boolean;
    StartedAt: string;
    FinishedAt: string;
    Health?: { Status: string; FailingStreak: number };
  };
}

/** The create/run flags, with Docker's names. */
function addCreateOptions(cmd: Command): Command {
  return addHealthOptions(cmd)
    .option('--name <name>', 'assign a name to the container')
    .option(
      '-e, --env <KEY=VALUE>',
      'set an environment variable (KEY alone takes it from this shell)',
      collect,
    )
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'user (name or uid) and optional group')
    .option('--entrypoint <cmd>', "override the image's ENTRYPOINT ('' removes it)")
    .option('-h, --hostname <name>', 'container host name')
    .option('-i, --interactive', 'keep STDIN open')
    .option('-t, --tty', 'allocate a pseudo-TTY')
    .option('--rm', 'remove the container when it exits')
    .option('--init', 'run an init as PID 1 that forwards signals and reaps zombies')
    .option(
      '--userns <CID:HOSTID:SIZE>',
      'run in a new user namespace with this uid/gid map, e.g. 0:100000:65536',
    )
    .option('--cap-add <cap>', 'add a Linux capability', collect)
    .option('--cap-drop <cap>', 'drop a Linux capability', collect)
    .option('--device <host[:container]>', 'give the container a host device', collect)
    .option('--stop-signal <signal>', 'signal that stops the container (default SIGTERM)')
    .option(
      '--stop-timeout <seconds>',
      'seconds to wait before killing on stop (default 10)',
      int('--stop-timeout'),
    )
    .option('-l, --label <key=value>', 'set a label', collect)
    .option('--log-opt <key=value>', 'log option: max-size=10m, max-file=3', collect)
    .option('-m, --memory <bytes>', 'memory limit (e.g. 512m)')
    .option('--memory-swap <bytes>', 'memory plus swap limit; -1 for unlimited (default 2× --memory)')
    .option('--memory-reservation <bytes>', 'memory soft limit')
    .option('-c, --cpu-shares <n>', 'relative CPU weight (default 1024)', int('--cpu-shares'))
    .option('--cpus <n>', 'number of CPUs (CFS quota), e.g. 1.5')
    .option('--cpuset-cpus <list>', 'CPUs the container may run on, e.g. 0-1')
    .option('--cpuset-mems <list>', 'memory nodes the container may use')
    .option(
      '--blkio-weight <n>',
      'block I/O relative weight, 10 to 1000 (default 500)',
      int('--blkio-weight'),
    )
    .option('--device-read-bps <dev:rate>', 'limit read rate from a device, e.g. /dev/sda:1mb', collect)
    .option('--device-write-bps <dev:rate>', 'limit write rate to a device', collect)
    .option('--device-read-iops <dev:n>', 'limit read operations per second from a device', collect)
    .option('--device-write-iops <dev:n>', 'limit write operations per second to a device', collect)
    .option('--pids-limit <n>', 'maximum number of processes (-1 unlimited)', int('--pids-limit'));
}

function keyValues(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw invalid(`invalid ${what} "${item}": expected key=value`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

export function createRequest(
  image: string,
  args: string[],
  o: Record<string, unknown>,
): ContainerCreateRequest {
  const env = ((o.env as string[]) ?? []).map((e) => {
    if (e.includes('=')) return e;
    const v = process.env[e];
    return v === undefined ? e : `${e}=${v}`;
  });
  return {
    image,
    cmd: args.length ? args : undefined,
    name: o.name as string | undefined,
    env,
    workingDir: o.workdir as string | undefined,
    user: o.user as string | undefined,
    entrypoint: o.entrypoint as string | undefined,
    hostname: o.hostname as string | undefined,
    openStdin: !!o.interactive,
    tty: !!o.tty,
    autoRemove: !!o.rm,
    init: !!o.init,
    userns: o.userns as string | undefined,
    capAdd: o.capAdd as string[] | undefined,
    capDrop: o.capDrop as string[] | undefined,
    devices: o.device as string[] | undefined,
    stopSignal: o.stopSignal as string | undefined,
    stopTimeout: o.stopTimeout as number | undefined,
    labels: keyValues(o.label as string[] | undefined, 'label'),
    logOpts: keyValues(o.logOpt as string[] | undefined, 'log option'),
    healthcheck: healthFromFlags(o),
    resources: {
      memory: o.memory as string | undefined,
      memorySwap: o.memorySwap as string | undefined,
      memoryReservation: o.memoryReservation as string | undefined,
      cpuShares: o.cpuShares as number | undefined,
      cpus: o.cpus as string | undefined,
      cpusetCpus: o.cpusetCpus as string | undefined,
      cpusetMems: o.cpusetMems as string | undefined,
      blkioWeight: o.blkioWeight as number | undefined,
      deviceReadBps: o.deviceReadBps as string[] | undefined,
      deviceWriteBps: o.deviceWriteBps as string[] | undefined,
      deviceReadIops: o.deviceReadIops as string[] | undefined,
      deviceWriteIops: o.deviceWriteIops as string[] | undefined,
      pidsLimit: o.pidsLimit as number | undefined,
    },
  };
}

const enc = encodeURIComponent;

async function createContainer(client: Client, req: ContainerCreateRequest): Promise<string> {
  const res = await client.request<{ Id: string; Warnings: string[] }>('POST', '/containers/create', {
    body: req,
  });
  for (const w of res.Warnings) process.stderr.write(`WARNING: ${w}\n`);
  return res.Id;
}

async function startContainer(client: Client, id: string): Promise<void> {
  const res = await client.request<{ Warnings: string[] }>('POST', `/containers/${enc(id)}/start`);
  for (const w of res.Warnings ?? []) process.stderr.write(`WARNING: ${w}\n`);
}

/** Streams a container's output until it exits, forwarding stdin when asked; returns the exit code. */
async function runForeground(
  client: Client,
  id: string,
  o: { interactive?: boolean; tty?: boolean },
  start: boolean,
): Promise<number> {
  // the log stream is opened before the start, so no output is missed and an
  // auto-removed container stays until everything is read
  const logs = await client.stream('GET', `/containers/${enc(id)}/logs`, { query: { follow: 1 } });
  const output = relayOutput(logs);
  const exited = client.request<{ StatusCode: number }>('POST', `/containers/${enc(id)}/wait`);
  if (start) await startContainer(client, id);
  let restore: (() => void) | undefined;
  if (o.interactive) {
    const sock = await client.upgrade(`/containers/${enc(id)}/attach`);
    sock.on('error', () => {});
    sock.on('data', () => {}); // output comes from the log stream
    restore = relayInput(sock, { tty: !!o.tty });
  }
  const waited = await exited;
  await output;
  restore?.();
  return waited.StatusCode;
}

export function containerCommands(getClient: GetClient, done: (code: number) => void): Command {
  const c = new Command('container').description('Manage containers on this host').enablePositionalOptions();

  addCreateOptions(
    c
      .command('run')
      .description('Create and start a container from an image')
      .argument('<image>')
      .argument('[command...]')
      .passThroughOptions()
      .option('-d, --detach', 'run in the background and print the container id'),
  ).action(async (image: string, args: string[], o: Record<string, unknown>) => {
    const client = getClient();
    if (o.detach && o.rm) {
      // allowed, as in docker: removed when it exits
    }
    const id = await createContainer(client, createRequest(image, args, o));
    if (o.detach) {
      await startContainer(client, id);
      process.stdout.write(`${id}\n`);
      return done(0);
    }
    done(await runForeground(client, id, o as { interactive?: boolean; tty?: boolean }, true));
  });

  addCreateOptions(
    c
      .command('create')
      .description('Create a container without starting it')
      .argument('<image>')
      .argument('[command...]')
      .passThroughOptions(),
  ).action(async (image: string, args: string[], o: Record<string, unknown>) => {
    process.stdout.write(`${await createContainer(getClient(), createRequest(image, args, o))}\n`);
  });

  c.command('start')
    .description('Start one or more stopped containers')
    .argument('<container...>')
    .option('-a, --attach', 'stream the output and wait for the container to exit')
    .option('-i, --interactive', 'forward STDIN')
    .action(async (refs: string[], o: { attach?: boolean; interactive?: boolean }) => {
      const client = getClient();
      for (const ref of refs) {
        if (o.attach) {
          const view = await client.request<ContainerView & { Config: { tty: boolean } }>(
            'GET',
            `/containers/${enc(ref)}/json`,
          );
          return done(
            await runForeground(client, view.Id, { interactive: o.interactive, tty: view.Config.tty }, true),
          );
        }
        await startContainer(client, ref);
        process.stdout.write(`${ref}\n`);
      }
    });

  c.command('stop')
    .description('Stop containers: the stop signal, then SIGKILL after the grace period')
    .argument('<container...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing', int('--time'))
    .action(async (refs: string[], o: { time?: number }) => {
      for (const ref of refs) {
        await getClient().request('POST', `/containers/${enc(ref)}/stop`, { query: { t: o.time } });
        process.stdout.write(`${ref}\n`);
      }
    });

  c.command('restart')
    .description('Restart containers')
    .argument('<container...>')
    .option('-t, --time <seconds>', 'seconds to wait before killing', int('--time'))
    .action(async (refs: string[], o: { time?: number }) => {
      for (const ref of refs) {
        await getClient().request('POST', `/containers/${enc(ref)}/restart`, { query: { t: o.time } });
        process.stdout.write(`${ref}\n`);
      }
    });

  c.command('kill')
    .description('Send a signal to containers (default SIGKILL)')
    .argument('<container...>')
    .option('-s, --signal <signal>', 'signal to send', 'SIGKILL')
    .action(async (refs: string[], o: { signal: string }) => {
      for (const ref of refs) {
        await getClient().request('POST', `/containers/${enc(ref)}/kill`, { query: { signal: o.signal } });
        process.stdout.write(`${ref}\n`);
      }
    });

  c.command('rm')
    .description('Remove containers')
    .argument('<container...>')
    .option('-f, --force', 'kill a running container first')
    .action(async (refs: string[], o: { force?: boolean }) => {
      for (const ref of refs) {
        await getClient().request('DELETE', `/containers/${enc(ref)}`, {
          query: { force: o.force ? 1 : undefined },
        });
        process.stdout.write(`${ref}\n`);
      }
    });

  c.command('wait')
    .description('Wait for containers to exit and print their exit codes')
    .argument('<container...>')
    .action(async (refs: string[]) => {
      let last = 0;
      for (const ref of refs) {
        const r = await getClient().request<{ StatusCode: number }>('POST', `/containers/${enc(ref)}/wait`);
        process.stdout.write(`${r.StatusCode}\n`);
        last = r.StatusCode;
      }
      done(last);
    });

  c.command('ps')
    .alias('ls')
    .description('List containers')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('-q, --quiet', 'only display ids')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { all?: boolean; quiet?: boolean; format: string }) => {
      const list = await getClient().request<ContainerView[]>('GET', '/containers/json', {
        query: { all: o.all ? 1 : undefined },
      });
      if (o.quiet) return void process.stdout.write(list.map((x) => `${x.Id.slice(0, 12)}\n`).join(''));
      if (o.format === 'json') return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      const health = (x: ContainerView) =>
        !x.State.Health
          ? ''
          : x.State.Health.Status === 'starting'
            ? ' (health: starting)'
            : ` (${x.State.Health.Status})`;
      const status = (x: ContainerView) =>
        x.State.Running
          ? `Up since ${x.State.StartedAt}${health(x)}`
          : x.State.Status === 'exited'
            ? `Exited (${x.State.ExitCode})${x.State.OOMKilled ? ' OOMKilled' : ''} ${ago(x.State.FinishedAt)}`
            : x.State.Status;
      process.stdout.write(
        table(
          ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NAMES'],
          list.map((x) => [
            x.Id.slice(0, 12),
            x.Image,
            JSON.stringify([x.Path, ...x.Args].join(' ').slice(0, 30)),
            ago(x.Created),
            status(x),
            x.Name,
          ]),
        ),
      );
    });

  c.command('inspect')
    .description('Show low-level information on containers (JSON)')
    .argument('<container...>')
    .action(async (refs: string[]) => {
      const out = [];
      for (const ref of refs) out.push(await getClient().request('GET', `/containers/${enc(ref)}/json`));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    });

  c.command('logs')
    .description("Fetch a container's logs")
    .argument('<container>')
    .option('-f, --follow', 'follow log output')
    .option('-n, --tail <n>', 'number of lines to show from the end', int('--tail'))
    .option('--since <time>', 'show logs since a timestamp (RFC 3339, Unix seconds) or a duration (e.g. 10m)')
    .option('-t, --timestamps', 'show timestamps')
    .action(
      async (ref: string, o: { follow?: boolean; tail?: number; since?: string; timestamps?: boolean }) => {
        const client = getClient();
        const res = await client.stream('GET', `/containers/${enc(ref)}/logs`, { query: logQuery(o) });
        await relayOutput(res);
      },
    );

  c.command('attach')
    .description("Attach this terminal to a running container's main process (detach with ctrl-p ctrl-q)")
    .argument('<container>')
    .option('--detach-keys <keys>', 'key sequence for detaching', 'ctrl-p,ctrl-q')
    .option('--no-stdin', 'do not attach STDIN')
    .action(async (ref: string, o: { detachKeys: string; stdin: boolean }) => {
      const client = getClient();
      const view = await client.request<ContainerView & { Config: { tty: boolean; openStdin: boolean } }>(
        'GET',
        `/containers/${enc(ref)}/json`,
      );
      const sock = await client.upgrade(`/containers/${enc(ref)}/attach`);
      let detached = false;
      let restore: (() => void) | undefined;
      if (o.stdin && view.Config.openStdin) {
        restore = relayInput(sock, {
          tty: view.Config.tty,
          detachKeys: parseDetachKeys(o.detachKeys),
          onDetach: () => {
            detached = true;
            sock.end();
          },
        });
      }
      await relayOutput(sock);
      restore?.();
      if (detached) {
        process.stderr.write('read escape sequence\n');
        return done(0);
      }
      const w = await client.request<{ StatusCode: number }>('POST', `/containers/${enc(ref)}/wait`);
      done(w.StatusCode);
    });

  c.command('exec')
    .description('Run a new process in a running container')
    .argument('<container>')
    .argument('<command...>')
    .passThroughOptions()
    .option('-i, --interactive', 'keep STDIN open')
    .option('-t, --tty', 'allocate a pseudo-TTY')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect)
    .option('-w, --workdir <dir>', 'working directory')
    .option('-u, --user <user[:group]>', 'user')
    .action(
      async (
        ref: string,
        cmd: string[],
        o: { interactive?: boolean; tty?: boolean; env?: string[]; workdir?: string; user?: string },
      ) => {
        const request = { cmd, env: o.env, workingDir: o.workdir, user: o.user, tty: !!o.tty };
        const sock = await getClient().upgrade(`/containers/${enc(ref)}/exec`, {
          'x-tsswarm-exec': Buffer.from(JSON.stringify(request)).toString('base64'),
        });
        const restore = o.interactive ? relayInput(sock, { tty: !!o.tty }) : undefined;
        if (!o.interactive) sock.write(Buffer.from([2, 0, 0, 0, 0])); // close stdin
        const code = await relayOutput(sock);
        restore?.();
        done(code ?? 255);
      },
    );

  c.command('stats')
    .description("Show containers' resource usage from their cgroups")
    .argument('[container...]')
    .option('--no-stream', 'print one sample and exit')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (refs: string[], o: { stream: boolean; format: string }) => {
      const client = getClient();
      const ids = refs.length
        ? refs
        : (await client.request<ContainerView[]>('GET', '/containers/json')).map((x) => x.Id);
      const latest = new Map<string, Record<string, number | string>>();
      const print = () => {
        if (o.format === 'json') {
          process.stdout.write(`${JSON.stringify([...latest.values()])}\n`);
          return;
        }
        if (o.stream && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
        process.stdout.write(
          table(
            ['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'BLOCK I/O', 'PIDS'],
            [...latest.values()].map((s) => {
              const n = (k: string) => Number(s[k] ?? 0);
              return [
                String(s.id).slice(0, 12),
                String(s.name),
                `${n('cpuPercent').toFixed(2)}%`,
                `${humanBytes(n('memoryUsage'))} / ${humanBytes(n('memoryLimit'))}`,
                `${((n('memoryUsage') / Math.max(1, n('memoryLimit'))) * 100).toFixed(2)}%`,
                `${humanBytes(n('blkioReadBytes'))} / ${humanBytes(n('blkioWriteBytes'))}`,
                String(n('pidsCurrent')),
              ];
            }),
          ),
        );
      };
      await Promise.all(
        ids.map(async (id) => {
          const res = await client.stream('GET', `/containers/${enc(id)}/stats`, {
            query: { stream: o.stream ? 1 : 0 },
          });
          let buf = '';
          res.setEncoding('utf8');
          for await (const chunk of res) {
            buf += chunk;
            let nl = buf.indexOf('\n');
            while (nl >= 0) {
              const s = JSON.parse(buf.slice(0, nl));
              latest.set(id, s);
              if (o.stream) print();
              buf = buf.slice(nl + 1);
              nl = buf.indexOf('\n');
            }
          }
        }),
      );
      if (!o.stream) print();
    });

  return c;
}
