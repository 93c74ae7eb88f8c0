import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Logger } from 'pino';
import { guardConnections, type ConnectionBudget, type ConnectionEvents } from '../connection-guard';

/** A certificate and key that may be renewed while the server runs (TlsFiles). */
export interface RenewingPair {
  current(): { cert: Buffer; key: Buffer };
  /** `listener` hears each renewal; the returned function stops that. */
  onRenewed(listener: (next: { cert: Buffer; key: Buffer }) => void): () => void;
}

export interface HttpRoute {
  /** Returns true when it handled the request. */
  (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): Promise<boolean> | boolean;
}

/**
 * Requests one HTTP/1.1 connection may send ahead of their answers (browsers
 * send none ahead): past it, the connection is closed. Node parses what a
 * connection sent all at once and answers in order, holding every answer that
 * waits for the one before: one connection that sent 50,000 `GET /metrics`
 * and read nothing took the server to 1.6 GB.
 */
export const MAX_PIPELINED = 16;

/** `/healthz`, `/metrics`, and whatever routes the roles add (signed media URLs). */
export async function startHttpServer(opts: {
  addr: string;
  registry: { contentType: string; metrics(): Promise<string> };
  health: () => { ok: boolean; detail: Record<string, unknown> };
  routes: HttpRoute[];
  logger: Logger;
  /** Serve https instead of http: the certificate and key current at start, then each renewal (to new connections). */
  tls?: RenewingPair;
  /** The bound on TCP connections it shares with the process's other listener; a request's first byte is its opening (src/connection-guard.ts). */
  connections?: { budget: ConnectionBudget; events: ConnectionEvents };
  /** A request (a gRPC-Web upload, the largest) must have arrived whole within this (Node's requestTimeout, checked every 30 s); default Node's, 300 s. */
  requestTimeoutMs?: number;
}): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  // `/metrics` is computed once for the requests that ask while it is computed, its body one Buffer that each of
  // their responses sends (the figures stay fresh: one that asks after gets a computation of its own). Computed for
  // each request, 300 connections pipelining 16 requests each (no token needed) and never reading took a server
  // from 162 MB to 1.4 GB.
  let computing: Promise<Buffer> | undefined;
  const metricsBody = (): Promise<Buffer> => {
    if (!computing) {
      const mine = opts.registry.metrics().then((text) => Buffer.from(text));
      computing = mine;
      const done = () => {
        if (computing === mine) computing = undefined;
      };
      mine.then(done, done);
    }
    return computing;
  };
  // Requests each connection sent that are not answered yet (HTTP/1.1 pipelining queues them in order).
  const unanswered = new WeakMap<import('node:net').Socket, number>();
  const handle = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const socket = req.socket;
    if (socket.destroyed) return; // the rest of a flood already parsed
    const ahead = (unanswered.get(socket) ?? 0) + 1;
    if (ahead > MAX_PIPELINED) {
      opts.connections?.events.flooded();
      socket.destroy();
      return;
    }
    unanswered.set(socket, ahead);
    res.once('close', () => unanswered.set(socket, unanswered.get(socket)! - 1));
    void (async () => {
      try {
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/healthz') {
          const h = opts.health();
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ status: h.ok ? 'ok' : 'unavailable', ...h.detail }));
          return;
        }
        if (path === '/metrics') {
          const body = await metricsBody();
          res.writeHead(200, { 'content-type': opts.registry.contentType });
          res.end(body);
          return;
        }
        for (const route of opts.routes) if (await route(req, res)) return;
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found\n');
      } catch (err) {
        opts.logger.error({ err, url: req.url }, 'http request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      }
    })();
  };
  let server: Server;
  let stopFollowing = () => {};
  if (opts.tls) {
    const { cert, key } = opts.tls.current();
    // A TLS handshake gets as long as a connection may stay silent (Node's default: 120 s).
    const https = createTlsServer({ cert, key, ...(opts.connections ? { handshakeTimeout: opts.connections.budget.limits.silentMs } : {}) }, handle);
    stopFollowing = opts.tls.onRenewed((next) => https.setSecureContext({ cert: next.cert, key: next.key }));
    server = https;
  } else {
    server = createServer(handle);
  }
  if (opts.requestTimeoutMs !== undefined) server.requestTimeout = opts.requestTimeoutMs;
  const guarded = opts.connections && guardConnections(server, opts.connections.budget, 1, opts.connections.events);
  const actual = await listenOn(server, opts.addr).catch((err: unknown) => {
    stopFollowing();
    throw err;
  });
  return {
    server,
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        stopFollowing();
        server.close(() => resolve());
        server.closeAllConnections();
        guarded?.destroyAll(); // connections that never sent a request
      }),
  };
}

/** `server` listening on `addr` (host:port); resolves with the port it got (port 0: any free one). */
export function listenOn(server: import('node:net').Server, addr: string): Promise<number> {
  const { host, port } = splitAddr(addr);
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as import('node:net').AddressInfo).port);
    });
  });
}

export function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}
