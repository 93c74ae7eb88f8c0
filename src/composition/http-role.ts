import type { Logger } from 'pino';
import type { TokenAuthority } from '../auth/tokens';
import type { Config } from '../config/config';
import { listenError } from '../listen-error';
import type { Metrics } from '../metrics';
import { splitAddr, startHttpServer, type HttpRoute } from '../http/server';
import { webRoutes } from '../http/web';
import { callPlaces, sendPlaces } from '../resilience/request-places';
import type { TlsFiles } from '../tls';
import { reportedEvents, type ConnectionBudget } from '../connection-guard';
import { Lifecycle, type Part } from './lifecycle';

export interface HttpRole extends Part {
  /** Set by start. */
  port: number;
  /** Where clients reach it (CHATFLOW_PUBLIC_HTTP_URL or the bound address). */
  url: string;
}

/**
 * `/healthz`, `/metrics`, the signed media URLs of the local store and, on
 * gateways, the chat page and the embedded gRPC-Web endpoint. Started first:
 * it answers "not ready" while the engines are awaited, so what it serves is
 * read per request from the parts started after it.
 */
export function httpRole(deps: {
  config: Config;
  logger: Logger;
  lifecycle: Lifecycle;
  auth: TokenAuthority;
  metrics: Metrics;
  health: () => { ok: boolean; detail: Record<string, unknown> };
  /** The local media store's route, once it is open. */
  mediaRoute: () => HttpRoute | undefined;
  /** Where the embedded gRPC-Web endpoint forwards to: this process's gRPC server, once bound (empty before, and on processes without a gateway). */
  grpcAddress: () => string;
  /** Serve https (CHATFLOW_TLS_CERT_FILE, CHATFLOW_TLS_KEY_FILE), renewed certificates included. */
  tls?: TlsFiles;
  /** The bound on TCP connections this process's listeners share (src/connection-guard.ts). */
  connections: ConnectionBudget;
  gateway: boolean;
}): HttpRole {
  const { config, logger } = deps;
  const parts = deps.lifecycle.child();
  const role: HttpRole = {
    port: 0,
    url: '',
    start: () =>
      parts.all(async () => {
        const web = deps.gateway ? webRoutes({ upstream: deps.grpcAddress, auth: deps.auth, maxMediaBytes: config.maxMediaBytes, sends: sendPlaces(config, () => deps.metrics.sendsBusy.inc({ transport: 'grpc-web' })), calls: callPlaces(config, () => deps.metrics.callsRefused.inc({ reason: 'busy' })), logger, settings: config.web }) : undefined;
        if (web) parts.onStop('grpc-web upstream', async () => web.close());
        const http = await startHttpServer({
          addr: config.httpAddr,
          registry: deps.metrics.exposition,
          logger,
          health: deps.health,
          routes: [(req, res) => deps.mediaRoute()?.(req, res) ?? false, ...(web?.routes ?? [])],
          tls: deps.tls,
          requestTimeoutMs: config.sends.uploadTimeoutMs,
          connections: { budget: deps.connections, events: reportedEvents('http', deps.connections.limits, deps.metrics, logger) },
        }).catch((err: unknown) => {
          throw listenError(err, 'CHATFLOW_HTTP_ADDR', config.httpAddr);
        });
        parts.onStop('http', () => http.close());
        const host = splitAddr(config.httpAddr).host;
        role.port = http.port;
        role.url = config.publicHttpUrl ?? `${deps.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${http.port}`;
      }),
    stop: () => parts.stopAll(),
  };
  return role;
}
