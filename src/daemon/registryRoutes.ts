/**
 * Registry routes: pull, push, login (`POST /auth` checks credentials), each with the client's
 * credentials in `X-Registry-Auth` (never logged, never stored by the daemon).
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance } from 'fastify';
import { invalid } from '../api/errors.js';
import type { Engine } from '../engine/engine.js';
import { parseReference } from '../engine/images/reference.js';
import { decodeAuthHeader, decodeRegistryConfig } from '../engine/registry/auth.js';
import { parsePlatform } from '../engine/registry/pull.js';
import { pushImage } from '../engine/registry/push.js';
import { checkLogin } from '../engine/registry/transport.js';
import { ndjson } from './ndjson.js';

type RefQuery = { Querystring: { ref?: string; platform?: string } };

const authOf = (headers: Record<string, unknown>) =>
  decodeAuthHeader(headers['x-registry-auth'] as string | undefined);

export function registerRegistryRoutes(app: FastifyInstance, engine: Engine): void {
  app.post<RefQuery>('/images/pull', async (req, reply) => {
    const ref = req.query.ref?.trim();
    if (!ref) throw invalid('image pull needs an image reference');
    const creds = authOf(req.headers);
    const platform = req.query.platform ? parsePlatform(req.query.platform) : undefined;
    await ndjson(reply, async (emit, signal) => {
      const r = await engine.puller.pull(ref, {
        creds,
        ...(platform ? { platform } : {}),
        onProgress: emit,
        signal, // the pull stops once no client waits for it
      });
      return { id: r.image.id, digest: r.digest, tag: r.tag };
    });
  });

  app.post<RefQuery>('/images/push', async (req, reply) => {
    const ref = req.query.ref?.trim();
    if (!ref) throw invalid('image push needs an image reference');
    engine.images.resolve(ref); // a missing image is an ordinary 404
    const creds = authOf(req.headers);
    await ndjson(reply, (emit) =>
      pushImage(engine.images, ref, engine.registry, { creds, onProgress: emit }),
    );
  });

  app.post<{
    Querystring: {
      dockerfile?: string;
      dockerfileoutside?: string;
      t?: string | string[];
      buildargs?: string;
      nocache?: string;
      target?: string;
    };
  }>('/build', async (req, reply) => {
    const q = req.query;
    const tags = (Array.isArray(q.t) ? q.t : q.t ? [q.t] : []).map((t) => {
      parseReference(t); // a bad name is refused before the context is read
      return t;
    });
    let buildArgs: Record<string, string> = {};
    if (q.buildargs) {
      try {
        buildArgs = JSON.parse(q.buildargs) as Record<string, string>;
      } catch {
        throw invalid('buildargs must be a JSON object');
      }
      if (
        typeof buildArgs !== 'object' ||
        buildArgs === null ||
        Object.values(buildArgs).some((v) => typeof v !== 'string')
      )
        throw invalid('buildargs must map names to strings');
    }
    const registryAuth = decodeRegistryConfig(req.headers['x-registry-config'] as string | undefined);
    const root = join(engine.opts.dataRoot, 'build');
    await fs.mkdir(root, { recursive: true });
    const ctx = await fs.mkdtemp(join(root, 'ctx-'));
    try {
      await unpackContext(req.body as Readable, ctx);
      await ndjson(reply, async (emit, signal) => {
        const r = await engine.builder.build({
          signal,
          context: ctx,
          dockerfile: q.dockerfile || 'Dockerfile',
          ...(q.dockerfileoutside === '1' && { dockerfileOutside: true }),
          tags,
          buildArgs,
          noCache: q.nocache === '1' || q.nocache === 'true',
          ...(q.target ? { target: q.target } : {}),
          registryAuth,
          out: (text) => emit({ stream: text }),
        });
        return r;
      });
    } finally {
      await fs.rm(ctx, { recursive: true, force: true });
    }
  });

  app.post<{ Body: { serveraddress?: string; username?: string; password?: string } }>(
    '/auth',
    async (req) => {
      const b = req.body ?? {};
      if (!b.serveraddress) throw invalid('login needs a registry address');
      if (!b.username || !b.password) throw invalid('login needs a username and a password');
      await checkLogin(b.serveraddress, { username: b.username, password: b.password }, engine.registry);
      return { Status: 'Login Succeeded' };
    },
  );
}

/** Unpacks the build context a client sent (a tar stream) with GNU tar: no owners kept, nothing outside `dir`. */
async function unpackContext(body: Readable, dir: string): Promise<void> {
  const child = spawn('tar', ['-x', '--no-same-owner', '-f', '-', '-C', dir], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
  try {
    await pipeline(body, child.stdin);
  } catch (e) {
    // tar stopped reading (a bad archive) or the client went away: tar must not outlive the upload
    child.kill('SIGKILL');
    const code = await exited.catch(() => 1);
    if (code !== 0 && err.trim())
      throw invalid(`the build context is not a valid tar stream: ${err.trim().split('\n')[0]}`);
    throw invalid(`the build context upload failed: ${(e as Error).message}`);
  }
  const code = await exited;
  if (code !== 0) throw invalid(`the build context is not a valid tar stream: ${err.trim().split('\n')[0]}`);
}
