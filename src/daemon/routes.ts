import { createWriteStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance } from 'fastify';
import { invalid } from '../api/errors.js';
import type { ContainerCreateRequest, ContainerRecord } from '../engine/containers/types.js';
import type { Engine } from '../engine/engine.js';
import { VERSION } from '../version.js';
import { containerLogStream, logFrame } from './logStream.js';
import { registerRegistryRoutes } from './registryRoutes.js';

type IdParams = { Params: { id: string } };

/** Wire view of a container (what `inspect` prints). */
export function containerView(c: ContainerRecord) {
  return {
    Id: c.id,
    Name: c.name,
    Created: c.created,
    Image: c.config.image,
    ImageId: c.config.imageId,
    Path: c.config.path,
    Args: c.config.args,
    State: {
      Status: c.state.status,
      Running: c.state.status === 'running',
      Pid: c.state.pid,
      ExitCode: c.state.exitCode ?? 0,
      OOMKilled: c.state.oomKilled,
      Error: c.state.error ?? '',
      StartedAt: c.state.startedAt ?? '',
      FinishedAt: c.state.finishedAt ?? '',
      RestartCount: c.state.restartCount,
      ...(c.state.health && c.state.status === 'running'
        ? {
            Health: {
              Status: c.state.health.status,
              FailingStreak: c.state.health.failingStreak,
              Log: c.state.health.log.map((p) => ({
                Start: p.start,
                End: p.end,
                ExitCode: p.exitCode,
                Output: p.output,
              })),
            },
          }
        : {}),
    },
    Config: c.config,
  };
}

function intQuery(v: string | undefined, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw invalid(`${name} must be a whole number, not "${v}"`);
  return Number(v);
}

const truthy = (v: string | undefined) => v === '1' || v === 'true';

/** The engine's HTTP API. */
export function registerEngineRoutes(app: FastifyInstance, engine: Engine): void {
  const { images, containers } = engine;

  app.addContentTypeParser('application/x-tar', (_req, payload, done) => done(null, payload));

  app.get('/_ping', async () => 'OK');
  app.get('/version', async () => ({
    Version: VERSION,
    Os: process.platform,
    Arch: process.arch,
    CgroupVersion: engine.cgroups.version,
    NodeVersion: process.version,
  }));
  app.get('/info', async () => {
    const all = containers.list(true);
    return {
      Containers: all.length,
      ContainersRunning: all.filter((c) => c.state.status === 'running').length,
      Images: images.list().length,
      DataRoot: engine.opts.dataRoot,
      CgroupVersion: engine.cgroups.version,
      CgroupParent: engine.opts.cgroupParent,
      Shim: engine.shimPath,
    };
  });

  // ---- images ----
  app.post('/images/load', async (req) => {
    const tmpDir = join(engine.opts.dataRoot, 'tmp');
    await fs.mkdir(tmpDir, { recursive: true });
    const file = join(tmpDir, `load-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.tar`);
    try {
      await pipeline(req.body as Readable, createWriteStream(file));
      const loaded = await images.load(file);
      return loaded.map((i) => ({ Id: i.id, RepoTags: i.repoTags }));
    } finally {
      await fs.rm(file, { force: true });
    }
  });
  registerRegistryRoutes(app, engine);
  app.get<{ Querystring: { all?: string } }>('/images/json', async (req) =>
    images.list(truthy(req.query.all)),
  );
  app.post<{ Querystring: { all?: string } }>('/images/prune', async (req) =>
    images.prune((id) => containers.imageUser(id), truthy(req.query.all)),
  );
  app.get<{ Querystring: { ref: string } }>('/images/inspect', async (req) =>
    images.resolve(req.query.ref ?? ''),
  );
  app.post<{ Querystring: { ref: string; to: string } }>('/images/tag', async (req) => {
    await images.tag(req.query.ref ?? '', req.query.to ?? '');
    return {};
  });
  app.delete<{ Querystring: { ref: string } }>('/images', async (req) =>
    images.remove(req.query.ref ?? '', (id) => containers.imageUser(id)),
  );
  app.get<{ Querystring: { ref: string | string[] } }>('/images/save', async (req, reply) => {
    const refs = ([] as string[]).concat(req.query.ref ?? []);
    if (refs.length === 0) throw invalid('image save needs at least one image');
    for (const r of refs) images.resolve(r); // fail before streaming
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/x-tar' });
    await images.save(refs, reply.raw);
    reply.raw.end();
  });

  // ---- containers ----
  app.post<{ Body: ContainerCreateRequest }>('/containers/create', async (req, reply) => {
    const { record, warnings } = await containers.create(req.body ?? ({} as ContainerCreateRequest));
    reply.code(201);
    return { Id: record.id, Name: record.name, Warnings: warnings };
  });
  app.get<{ Querystring: { all?: string } }>('/containers/json', async (req) =>
    containers.list(truthy(req.query.all)).map(containerView),
  );
  app.get<IdParams>('/containers/:id/json', async (req) => containerView(containers.get(req.params.id)));
  app.post<IdParams>('/containers/:id/start', async (req) => {
    const { record, warnings } = await containers.start(req.params.id);
    return { Id: record.id, Warnings: warnings };
  });
  app.post<IdParams & { Querystring: { t?: string } }>('/containers/:id/stop', async (req) => {
    const rec = await containers.stop(req.params.id, intQuery(req.query.t, 't'));
    return containerView(rec);
  });
  app.post<IdParams & { Querystring: { t?: string } }>('/containers/:id/restart', async (req) => {
    const rec = await containers.restart(req.params.id, intQuery(req.query.t, 't'));
    return containerView(rec);
  });
  app.post<IdParams & { Querystring: { signal?: string } }>('/containers/:id/kill', async (req) => {
    const rec = await containers.kill(req.params.id, req.query.signal || 'SIGKILL');
    return containerView(rec);
  });
  app.post<IdParams>('/containers/:id/wait', async (req) => {
    const state = await containers.wait(req.params.id);
    return { StatusCode: state.exitCode ?? 0, OOMKilled: state.oomKilled, Error: state.error ?? '' };
  });
  app.delete<IdParams & { Querystring: { force?: string } }>('/containers/:id', async (req, reply) => {
    await containers.remove(req.params.id, { force: truthy(req.query.force) });
    reply.code(204);
  });

  app.get<
    IdParams & { Querystring: { follow?: string; tail?: string; since?: string; timestamps?: string } }
  >('/containers/:id/logs', async (req, reply) => {
    const stream = containerLogStream(containers, req.params.id, {
      follow: truthy(req.query.follow),
      tail: intQuery(req.query.tail, 'tail'),
      since: req.query.since || undefined,
    });
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/vnd.tsswarm.frames' });
    raw.flushHeaders();
    const ac = new AbortController();
    raw.on('close', () => ac.abort());
    const ts = truthy(req.query.timestamps);
    await stream.pump((e) => raw.write(logFrame(e, ts)), ac.signal);
    raw.end();
  });

  app.get<IdParams & { Querystring: { stream?: string } }>('/containers/:id/stats', async (req, reply) => {
    const rec = containers.get(req.params.id);
    const stream = req.query.stream === undefined ? true : truthy(req.query.stream);
    const sample = async () => ({ at: Date.now(), stats: await containers.stats(rec.id) });
    let prev = await sample();
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/x-ndjson' });
    let closed = false;
    raw.on('close', () => {
      closed = true;
    });
    do {
      await new Promise((r) => setTimeout(r, stream ? 1000 : 500));
      if (closed || rec.state.status !== 'running') break;
      const cur = await sample().catch(() => undefined);
      if (!cur) break;
      const cpuPercent =
        ((cur.stats.cpuUsageNs - prev.stats.cpuUsageNs) / 1e6 / Math.max(1, cur.at - prev.at)) * 100;
      raw.write(
        `${JSON.stringify({ id: rec.id, name: rec.name, read: new Date(cur.at).toISOString(), cpuPercent, ...cur.stats })}\n`,
      );
      prev = cur;
    } while (stream && !closed);
    raw.end();
  });
}
