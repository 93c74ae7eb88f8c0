import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Logger } from 'pino';

export interface HttpRoute {
  /** Returns true when it handled the request. */
  (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): Promise<boolean> | boolean;
}

/** `/healthz`, `/metrics`, and whatever routes the roles add (signed media URLs). */
export async function startHttpServer(opts: {
  addr: string;
  registry: { contentType: string; metrics(): Promise<string> };
  health: () => { ok: boolean; detail: Record<string, unknown> };
  routes: HttpRoute[];
  logger: Logger;
  /** Serve https with this certificate and key instead of http. */
  tls?: { cert: Buffer; key: Buffer };
}): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const handle = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
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
          const body = await opts.registry.metrics();
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
  const server: Server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, handle) : createServer(handle);
  const { host, port } = splitAddr(opts.addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as import('node:net').AddressInfo).port;
  return {
    server,
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}
