/**
 * Registry routes: pull, push, login (`POST /auth` checks credentials), each with the client's
 * credentials in `X-Registry-Auth` (never logged, never stored by the daemon).
 */
import type { FastifyInstance } from 'fastify';
import { invalid } from '../api/errors.js';
import type { Engine } from '../engine/engine.js';
import { decodeAuthHeader } from '../engine/registry/auth.js';
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
    await ndjson(reply, async (emit) => {
      const r = await engine.puller.pull(ref, { creds, ...(platform ? { platform } : {}), onProgress: emit });
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
