/**
 * HTTPS servers that nodes of the cluster talk to (the managers' dispatcher, every node's node
 * API): mutual TLS with the cluster CA. A client certificate is asked for but not required in
 * the handshake, so each route decides who it serves and answers 403 with a reason.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { TsswarmError } from '../../api/errors.js';
import type { NodeCredentials } from './tls.js';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A server whose route's errors become `{code, message}` answers (or end the stream once begun). */
export function createNodeServer(
  c: NodeCredentials,
  route: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
): Server {
  return createServer(
    {
      ca: [c.caCertPem],
      cert: c.certPem,
      key: c.keyPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    },
    (req, res) => {
      route(req, res).catch((e: unknown) => {
        const err = e instanceof TsswarmError ? e : new TsswarmError('internal', (e as Error).message);
        if (!res.headersSent) sendJson(res, err.httpStatus, err.toJSON());
        else res.destroy();
      });
    },
  );
}
