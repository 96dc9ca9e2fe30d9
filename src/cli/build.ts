import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Command } from 'commander';
import type { Client } from '../api/client.js';
import { invalid } from '../api/errors.js';
import { parseDockerignore } from '../engine/build/dockerignore.js';
import { encodeEntry } from '../engine/images/tar-writer.js';
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
 * Sends a build to the daemon: the context as a tar stream (the ignore file applied here, the
 * Dockerfile and .dockerignore always sent), the credentials of `tsswarm login` for FROM images.
 * Prints the daemon's output; returns the image ID.
 */
export async function sendBuild(client: Client, r: BuildRequest): Promise<{ id: string }> {
  const ctx = path.resolve(r.context);
  if (!existsSync(ctx) || !statSync(ctx).isDirectory())
    throw invalid(`the build context ${r.context} is not a directory`);
  const outside = await dockerfileOutside(ctx, r.dockerfile);
  const dfRel = outside
    ? outside.path
    : path.relative(ctx, r.dockerfile ? path.resolve(r.dockerfile) : path.join(ctx, 'Dockerfile'));
  if (!outside && !r.dockerfile && !existsSync(path.join(ctx, 'Dockerfile')))
    throw invalid(`cannot find the Dockerfile ${path.join(r.context, 'Dockerfile')}`);
  const ignore = ignoreFile(ctx, r.dockerfile);
  const ignoreName = path.relative(process.cwd(), ignore) || ignore;
  const ignoreText = await fs.readFile(ignore, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return ''; // no ignore file: the whole context is sent
    throw invalid(`cannot read ${ignoreName}: ${e.message}`);
  });
  const matcher = parseDockerignore(ignoreText, ignoreName);
  const always = new Set([dfRel.split(path.sep).join('/'), '.dockerignore']);
  const { create } = await import('tar'); // loaded for builds only: the CLI starts faster without it
  const context = create(
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
  ) as unknown as AsyncIterable<Buffer>;
  // a Dockerfile from outside the context goes first, in a directory of its own
  const upload = Readable.from(
    (async function* () {
      if (outside) yield outside.entries;
      yield* context;
    })(),
  );
  const creds = await allCredentials();
  const res = await client.stream('POST', '/build', {
    query: {
      dockerfile: dfRel.split(path.sep).join('/'),
      t: r.tags,
      buildargs: JSON.stringify(r.buildArgs),
      nocache: r.noCache ? '1' : undefined,
      target: r.target,
      dockerfileoutside: outside ? '1' : undefined,
    },
    upload,
    headers: Object.keys(creds).length
      ? { 'x-registry-config': Buffer.from(JSON.stringify(creds)).toString('base64url') }
      : {},
  });
  return followProgress<{ id: string }>(res, process.stdout, r.quiet);
}

/**
 * The ignore file of a build, as BuildKit picks it: `<Dockerfile>.dockerignore` beside the
 * Dockerfile when there is one (inside the context or not), else the context's `.dockerignore`
 * (always for a Dockerfile from stdin, which has no place of its own).
 */
function ignoreFile(ctx: string, dockerfile: string | undefined): string {
  const fallback = path.join(ctx, '.dockerignore');
  if (dockerfile === '-') return fallback;
  const own = `${dockerfile ? path.resolve(dockerfile) : path.join(ctx, 'Dockerfile')}.dockerignore`;
  return existsSync(own) ? own : fallback;
}

/**
 * A Dockerfile given with `-f -` (stdin) or from outside the context: its tar entries, as
 * `.tsswarm-dockerfile-<hex>/<its name>` (the daemon removes that directory once it has read it,
 * so no COPY sees it). Undefined for a Dockerfile inside the context.
 */
async function dockerfileOutside(
  ctx: string,
  file: string | undefined,
): Promise<{ path: string; entries: Buffer } | undefined> {
  let name = 'Dockerfile';
  let text: Buffer;
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    text = Buffer.concat(chunks);
  } else {
    if (file === undefined) return undefined;
    const abs = path.resolve(file);
    if (!existsSync(abs) || !statSync(abs).isFile())
      throw invalid(`cannot find the Dockerfile ${file}: no such file`);
    const rel = path.relative(ctx, abs);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) return undefined;
    name = path.basename(abs);
    text = await fs.readFile(abs);
  }
  const dir = `.tsswarm-dockerfile-${randomBytes(6).toString('hex')}`;
  return {
    path: `${dir}/${name}`,
    entries: Buffer.concat([
      encodeEntry({ path: dir, type: 'dir', mode: 0o755 }),
      encodeEntry({ path: `${dir}/${name}`, type: 'file', size: text.length, mode: 0o644 }, text),
    ]),
  };
}

export function buildCommand(getClient: () => Client): Command {
  return new Command('build')
    .description('Build an image from a Dockerfile (RUN steps run in containers of this engine)')
    .argument('<context>', 'the build context directory')
    .option(
      '-f, --file <path>',
      'the Dockerfile (default CONTEXT/Dockerfile; may be outside the context; - reads stdin)',
    )
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
