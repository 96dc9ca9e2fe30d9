import { existsSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import type { Client } from '../api/client.js';
import { invalid } from '../api/errors.js';
import { parseDockerignore } from '../engine/build/dockerignore.js';
import { allCredentials } from './credentials.js';
import { followProgress } from './progress.js';

export interface BuildRequest {
  context: string;
  dockerfile?: string;
  tags: string[];
  buildArgs: Record<string, string>;
  noCache?: boolean;
  target?: string;
  quiet?: boolean;
}

/**
 * Sends a build to the daemon: the context as a tar stream (.dockerignore applied here, the
 * Dockerfile and .dockerignore always sent), the credentials of `tsswarm login` for FROM images.
 * Prints the daemon's output; returns the image ID.
 */
export async function sendBuild(client: Client, r: BuildRequest): Promise<{ id: string }> {
  const ctx = path.resolve(r.context);
  if (!existsSync(ctx) || !statSync(ctx).isDirectory())
    throw invalid(`the build context ${r.context} is not a directory`);
  const dfAbs = path.resolve(r.dockerfile ? path.resolve(r.dockerfile) : path.join(ctx, 'Dockerfile'));
  const dfRel = path.relative(ctx, dfAbs);
  if (dfRel.startsWith('..') || path.isAbsolute(dfRel))
    throw invalid(`the Dockerfile ${r.dockerfile} must be inside the build context ${r.context}`);
  if (!existsSync(dfAbs))
    throw invalid(`cannot find the Dockerfile ${path.relative(process.cwd(), dfAbs) || dfAbs}`);
  const ignoreText = await fs.readFile(path.join(ctx, '.dockerignore'), 'utf8').catch(() => '');
  const matcher = parseDockerignore(ignoreText);
  const always = new Set([dfRel.split(path.sep).join('/'), '.dockerignore']);
  const { create } = await import('tar'); // loaded for builds only: the CLI starts faster without it
  const upload = create(
    {
      cwd: ctx,
      portable: true,
      filter: (p: string, st: import('node:fs').Stats | import('tar').ReadEntry) => {
        const rel = p.replace(/^\.\/?/, '');
        if (rel === '' || always.has(rel)) return true;
        if (!matcher.ignored(rel)) return true;
        const dir = 'isDirectory' in st ? st.isDirectory() : st.type === 'Directory';
        return dir && matcher.mayIncludeUnder(rel);
      },
    },
    ['.'],
  );
  const creds = await allCredentials();
  const res = await client.stream('POST', '/build', {
    query: {
      dockerfile: dfRel.split(path.sep).join('/'),
      t: r.tags,
      buildargs: JSON.stringify(r.buildArgs),
      nocache: r.noCache ? '1' : undefined,
      target: r.target,
    },
    upload: upload as unknown as import('node:stream').Readable,
    headers: Object.keys(creds).length
      ? { 'x-registry-config': Buffer.from(JSON.stringify(creds)).toString('base64url') }
      : {},
  });
  return followProgress<{ id: string }>(res, process.stdout, r.quiet);
}

export function buildCommand(getClient: () => Client): Command {
  return new Command('build')
    .description('Build an image from a Dockerfile (RUN steps run in containers of this engine)')
    .argument('<context>', 'the build context directory')
    .option('-f, --file <path>', 'the Dockerfile (default CONTEXT/Dockerfile; must be inside the context)')
    .option(
      '-t, --tag <name>',
      'name[:tag] for the image (repeatable)',
      (v: string, p: string[]) => [...p, v],
      [] as string[],
    )
    .option(
      '--build-arg <k=v>',
      'a build argument (repeatable; K alone takes $K from the environment)',
      (v: string, p: string[]) => [...p, v],
      [] as string[],
    )
    .option('--no-cache', 'run every step, using no cached image')
    .option('--target <stage>', 'build up to this stage')
    .option('-q, --quiet', 'print only the image ID')
    .action(
      async (
        context: string,
        o: {
          file?: string;
          tag: string[];
          buildArg: string[];
          cache: boolean;
          target?: string;
          quiet?: boolean;
        },
      ) => {
        const buildArgs: Record<string, string> = {};
        for (const a of o.buildArg) {
          const i = a.indexOf('=');
          if (i === 0) throw invalid(`invalid --build-arg "${a}": use KEY=VALUE`);
          if (i < 0) {
            if (process.env[a] !== undefined) buildArgs[a] = process.env[a]!;
          } else buildArgs[a.slice(0, i)] = a.slice(i + 1);
        }
        const r = await sendBuild(getClient(), {
          context,
          ...(o.file ? { dockerfile: o.file } : {}),
          tags: o.tag,
          buildArgs,
          noCache: !o.cache,
          ...(o.target ? { target: o.target } : {}),
          ...(o.quiet ? { quiet: true } : {}),
        });
        if (o.quiet) process.stdout.write(`${r.id}\n`);
      },
    );
}
