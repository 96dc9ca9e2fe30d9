/**
 * The node API: a small HTTPS server every node of a swarm (worker or manager) runs on its
 * advertise address, port NODE_API_PORT, so that managers can read what only the node has —
 * the logs of its task containers (`tsswarm service logs`).
 *
 * Mutual TLS with the node's certificate; only a client presenting a certificate of this
 * cluster's CA with the manager role is served. Workers and strangers get 403.
 *
 *   GET /tasks/:taskId/logs?follow=1&tail=N&since=T&timestamps=1
 *       the frames of the engine's `GET /containers/:id/logs` (one stdout or stderr frame per
 *       log record) of the container labelled with that task id; 404 if there is none.
 */

import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { invalid, notFound } from '../api/errors.js';
import { containerLogStream, logFrame } from '../daemon/logStream.js';
import type { ContainerRecord } from '../engine/containers/types.js';
import type { Engine } from '../engine/engine.js';
import { identityFromCertificate } from '../manager/ca/ca.js';
import { createNodeServer, sendJson } from '../manager/ca/https.js';
import type { NodeCredentials } from '../manager/ca/tls.js';
import { TASK_LABEL } from './agent.js';

export const NODE_API_PORT = 2378;

export interface NodeApiOptions {
  /** The node's advertise address; '' when it has none (then nothing is served). */
  address: string;
  port?: number;
  creds: NodeCredentials;
  clusterId: string;
  log?: (m: string) => void;
}

/** The container of a task on this node, if it still exists. */
export function taskContainer(engine: Engine, taskId: string): ContainerRecord | undefined {
  return engine.containers.list(true).find((c) => c.config.labels[TASK_LABEL] === taskId);
}

/**
 * The address a node certificate was issued for: its first IP SAN. Node certificates carry the
 * node's advertise address first (none when it joined without one), so a worker, which keeps
 * no address of its own, learns it here.
 */
export function certificateAddress(certPem: string): string {
  const san = new X509Certificate(certPem).subjectAltName ?? '';
  const m = /IP Address:([^,\s]+)/.exec(san);
  return m?.[1] ?? '';
}

const json = sendJson;

const truthy = (v: string | null) => v === '1' || v === 'true';

export class NodeApi {
  private server?: Server;

  constructor(
    private readonly engine: Engine,
    private readonly opts: NodeApiOptions,
  ) {}

  private log(m: string): void {
    this.opts.log?.(`node API: ${m}`);
  }

  /** Listens; a failure to bind is logged, never fatal (only `service logs` needs this server). */
  async start(): Promise<void> {
    const port = this.opts.port ?? NODE_API_PORT;
    if (!this.opts.address) {
      this.log(
        'this node has no advertise address: no node API is served, so `service logs` cannot reach its tasks',
      );
      return;
    }
    const c = this.opts.creds;
    const server = createNodeServer(c, (req, res) => this.route(req, res));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, this.opts.address, () => resolve());
      });
    } catch (e) {
      this.log(
        `cannot listen on ${this.opts.address}:${port} (${(e as Error).message}): \`service logs\` cannot reach this node's tasks`,
      );
      return;
    }
    server.on('error', (e) => this.log(e.message));
    this.server = server;
    this.log(`listening on ${this.opts.address}:${port}`);
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Only managers of this cluster: a verified certificate with the manager role. */
  private allowed(req: IncomingMessage): string | undefined {
    const sock = req.socket as TLSSocket;
    if (!sock.authorized) return 'a manager certificate of this cluster is required';
    try {
      const id = identityFromCertificate(sock.getPeerCertificate());
      if (id.clusterId !== undefined && id.clusterId !== this.opts.clusterId)
        return 'the certificate is of another cluster';
      if (id.role !== 'manager') return `only managers are served (the caller is a ${id.role})`;
      return undefined;
    } catch (e) {
      return (e as Error).message;
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refused = this.allowed(req);
    if (refused) return json(res, 403, { code: 'precondition', message: refused });
    const url = new URL(req.url ?? '/', 'https://x');
    const m = /^\/tasks\/([^/]+)\/logs$/.exec(url.pathname);
    if (req.method !== 'GET' || !m)
      return json(res, 404, {
        code: 'not_found',
        message: `no such endpoint: ${req.method} ${url.pathname}`,
      });
    const taskId = decodeURIComponent(m[1]!);
    const c = taskContainer(this.engine, taskId);
    if (!c) throw notFound(`no container of task ${taskId} on this node`);
    const tail = url.searchParams.get('tail');
    if (tail && !/^-?\d+$/.test(tail)) throw invalid(`tail must be a whole number, not "${tail}"`);
    const stream = containerLogStream(this.engine.containers, c.id, {
      follow: truthy(url.searchParams.get('follow')),
      tail: tail ? Number(tail) : undefined,
      since: url.searchParams.get('since') || undefined,
    });
    res.writeHead(200, { 'content-type': 'application/vnd.tsswarm.frames' });
    res.flushHeaders();
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    const ts = truthy(url.searchParams.get('timestamps'));
    await stream.pump((e) => res.write(logFrame(e, ts)), ac.signal);
    res.end();
  }
}
