import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Command, Option } from 'commander';
import type { Client } from '../api/client.js';
import { invalid } from '../api/errors.js';
import { encodeAuthHeader } from '../engine/registry/auth.js';
import { credentialsForImage } from './credentials.js';
import { followProgress } from './progress.js';
import { ago, humanBytes, table } from './render.js';

/** The X-Registry-Auth header for an image's registry, from `tsswarm login`'s store. */
export async function authHeaders(ref: string): Promise<Record<string, string>> {
  const creds = await credentialsForImage(ref);
  return creds ? { 'x-registry-auth': encodeAuthHeader(creds) } : {};
}

interface ImageView {
  id: string;
  repoTags: string[];
  created?: string;
  size: number;
}

export function imageCommands(getClient: () => Client): Command {
  const c = new Command('image').description('Manage images on this host');

  c.command('load')
    .description('Load images from an OCI image layout or `docker save` tar archive')
    .option('-i, --input <file>', 'read from this file instead of STDIN')
    .option('-q, --quiet', 'print only the image ids')
    .action(async (o: { input?: string; quiet?: boolean }) => {
      if (!o.input && process.stdin.isTTY)
        throw invalid('image load needs an archive: use -i FILE or pipe one to STDIN');
      if (o.input) {
        const st = await fs.stat(o.input).catch(() => undefined);
        if (!st?.isFile()) throw invalid(`cannot read ${o.input}: no such file`);
      }
      const upload = o.input ? createReadStream(o.input) : process.stdin;
      const loaded = await getClient().request<Array<{ Id: string; RepoTags: string[] }>>(
        'POST',
        '/images/load',
        { upload },
      );
      for (const img of loaded) {
        if (o.quiet) process.stdout.write(`${img.Id}\n`);
        else if (img.RepoTags.length)
          for (const t of img.RepoTags) process.stdout.write(`Loaded image: ${t}\n`);
        else process.stdout.write(`Loaded image ID: ${img.Id}\n`);
      }
    });

  c.command('ls')
    .description('List images')
    .option('-a, --all', "also the intermediate images of builds (each step's)")
    .option('-q, --quiet', 'only display ids')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { all?: boolean; quiet?: boolean; format: string }) => {
      const list = await getClient().request<ImageView[]>('GET', '/images/json', {
        query: { all: o.all ? 'true' : undefined },
      });
      if (o.quiet) return void process.stdout.write(list.map((i) => `${i.id.slice(7, 19)}\n`).join(''));
      if (o.format === 'json') return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      const rows: string[][] = [];
      for (const i of list) {
        const tags = i.repoTags.length ? i.repoTags : ['<none>:<none>'];
        for (const t of tags) {
          const at = t.lastIndexOf(':');
          rows.push([
            t.slice(0, at),
            t.slice(at + 1),
            i.id.slice(7, 19),
            i.created ? ago(i.created) : '',
            humanBytes(i.size),
          ]);
        }
      }
      process.stdout.write(table(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], rows));
    });

  c.command('inspect')
    .description('Show low-level information on images (JSON)')
    .argument('<image...>')
    .action(async (refs: string[]) => {
      const out = [];
      for (const ref of refs)
        out.push(await getClient().request('GET', '/images/inspect', { query: { ref } }));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    });

  c.command('rm')
    .description('Remove images (refused while a container uses them)')
    .argument('<image...>')
    .action(async (refs: string[]) => {
      for (const ref of refs) {
        const r = await getClient().request<{ untagged: string[]; deleted: string[] }>('DELETE', '/images', {
          query: { ref },
        });
        for (const u of r.untagged) process.stdout.write(`Untagged: ${u}\n`);
        for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
      }
    });

  c.command('tag')
    .description('Create a tag TARGET that refers to SOURCE')
    .argument('<source>')
    .argument('<target>')
    .action(async (source: string, target: string) => {
      await getClient().request('POST', '/images/tag', { query: { ref: source, to: target } });
    });

  c.command('pull')
    .description('Pull an image from a registry (credentials from `tsswarm login`)')
    .argument('<name>', 'NAME[:TAG|@DIGEST]')
    .option('--platform <os/arch[/variant]>', 'the platform to pick from a multi-platform image')
    .option('-q, --quiet', 'print only the image reference')
    .action(async (ref: string, o: { platform?: string; quiet?: boolean }) => {
      const res = await getClient().stream('POST', '/images/pull', {
        query: { ref, platform: o.platform },
        headers: await authHeaders(ref),
      });
      await followProgress(res, process.stdout, o.quiet);
      if (o.quiet) process.stdout.write(`${ref}\n`);
    });

  c.command('push')
    .description('Push an image to the registry its name names')
    .argument('<name>', 'NAME[:TAG]')
    .option('-q, --quiet', 'print only the pushed digest')
    .action(async (ref: string, o: { quiet?: boolean }) => {
      const res = await getClient().stream('POST', '/images/push', {
        query: { ref },
        headers: await authHeaders(ref),
      });
      const r = await followProgress<{ digest: string }>(res, process.stdout, o.quiet);
      if (o.quiet) process.stdout.write(`${r.digest}\n`);
    });

  c.command('prune')
    .description(
      "Remove dangling images (untagged, not a built image's parent), then unused layers and blobs",
    )
    .option('-a, --all', 'remove every image no container uses')
    .action(async (o: { all?: boolean }) => {
      const r = await getClient().request<{ deleted: string[]; reclaimed: number }>('POST', '/images/prune', {
        query: { all: o.all ? 'true' : undefined },
      });
      for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
      process.stdout.write(`Total reclaimed space: ${humanBytes(r.reclaimed)}\n`);
    });

  c.command('save')
    .description('Save images to a tar archive (OCI image layout, readable by docker load too)')
    .argument('<image...>')
    .option('-o, --output <file>', 'write to this file instead of STDOUT')
    .action(async (refs: string[], o: { output?: string }) => {
      if (!o.output && process.stdout.isTTY)
        throw invalid('refusing to write an archive to a terminal: use -o FILE or redirect');
      const res = await getClient().stream('GET', '/images/save', { query: { ref: refs } });
      if (o.output) {
        const tmp = `${o.output}.partial`;
        await pipeline(res, createWriteStream(tmp));
        await fs.rename(tmp, o.output);
      } else await pipeline(res, process.stdout);
    });

  return c;
}
