import { Server, ServerCredentials, type ServerInterceptor, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { createServer } from 'node:net';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { TokenAuthority } from '../auth/tokens';
import type { Config } from '../config/config';
import { guardConnections, HTTP2_PREFACE_BYTES, reportedEvents, type ConnectionBudget, type ConnectionEvents } from '../connection-guard';
import type { ConnectionRegistry } from '../connections/port';
import type { EventLog } from '../eventlog/port';
import { ChatGateway, getter } from '../gateway/chat-service';
import type { EarlyStart } from '../gateway/deps';
import { historyService } from '../gateway/history-service';
import { requestGuard } from '../gateway/request-guard';
import { callPlaces, sendPlaces } from '../resilience/request-places';
import { toStatus } from '../gateway/status';
import { checkedChatService, checkedHistoryService } from '../gateway/wire-check';
import { DisconnectReason } from '../gen/chatflow/v1/events';
import type { Health } from '../health';
import { listenOn, splitAddr } from '../http/server';
import { listenError } from '../listen-error';
import { routeGrpcJsLogs } from '../logging';
import type { Metrics } from '../metrics';
import { addReflection } from '../reflection';
import { RenewingServerCredentials, type TlsFiles } from '../tls';
import { HEALTH_SERVICE_NAMES, isPublicPath, MEDIA_METHOD_PATHS, PUBLIC_SERVICES, type PublicServiceKey } from '../services';
import { readModelsSettled, type ProjectionRunner } from '../../projections/runner';
import type { Lifecycle, Part } from './lifecycle';
import type { Messaging, ReadModels } from './wiring';

export interface GatewayRole extends Part {
  gateway: ChatGateway;
  /** Set by start. */
  grpcPort: number;
  grpcAddress: string;
  /**
   * Where this process's own gRPC-Web endpoint forwards to: the public address,
   * or with TLS a plain-text listener on an ephemeral loopback port (the
   * public one's certificate names the server's public host, not 127.0.0.1).
   */
  localGrpcAddress: string;
}

/** Holds the clients' streams: the chat and history services on the gRPC server, with health and reflection. */
export function gatewayRole(deps: {
  config: Config;
  logger: Logger;
  lifecycle: Lifecycle;
  log: EventLog;
  registry: ConnectionRegistry;
  messaging: Messaging;
  readModels: ReadModels;
  /** This process's projector, when it runs one: read-your-writes waits for it. */
  projections?: ProjectionRunner;
  auth: TokenAuthority;
  metrics: Metrics;
  /** Serve gRPC over TLS only (CHATFLOW_TLS_CERT_FILE, CHATFLOW_TLS_KEY_FILE), renewed certificates included. */
  tls?: TlsFiles;
  /** The bound on TCP connections this process's listeners share (src/connection-guard.ts). */
  connections: ConnectionBudget;
  health: Health;
  instance: string;
  clock: () => number;
  steady: () => number;
  newId: () => string;
  /** Why new messages and connections are refused now (the heap guard), or undefined. */
  heapFull?: () => string | undefined;
  /** This process's worker, on the embedded log (see GatewayDeps.early). */
  early?: EarlyStart;
}): GatewayRole {
  const { config, logger, auth, readModels: { conversations, messages, sessions } } = deps;
  const { bus, media, frames } = deps.messaging;
  const parts = deps.lifecycle.child();
  const gatewayId = config.gatewayId ?? `gw-${deps.instance}`;
  // Read your writes (conversation ownership, resends): wait for the read models to reach the log's end.
  const settled = readModelsSettled(deps.log, deps.projections);
  const gateway = new ChatGateway(
    { config, gatewayId, log: deps.log, registry: deps.registry, bus, media, auth, conversations, messages, sessions, frames, metrics: deps.metrics, clock: deps.clock, steady: deps.steady,
      // Leases only this process reads are timed on the steady clock; a registry gateways share, on the wall clock.
      leaseClock: deps.registry.leasesOutliveProcess ? deps.clock : deps.steady,
      newId: deps.newId, readModelsSettled: settled, heapFull: deps.heapFull, early: deps.early },
    logger.child({ component: 'gateway', gatewayId }),
  );
  const history = historyService({ auth, conversations, messages, sessions, frames, readModelsSettled: settled, readYourWritesMs: config.readYourWritesMs }, logger.child({ component: 'history' }));
  const role: GatewayRole = {
    gateway,
    grpcPort: 0,
    grpcAddress: '',
    localGrpcAddress: '',
    start: () =>
      parts.all(async () => {
        gateway.start();
        routeGrpcJsLogs(logger);
        const implementations: Record<PublicServiceKey, [ServiceDefinition, UntypedServiceImplementation]> = {
          chat: [checkedChatService(), gateway.service],
          history: [checkedHistoryService(), history],
        };
        const grpc = await startGrpc(config, Object.values(implementations), parts, deps.health, guardOf(config, auth, deps.metrics, logger), {
          budget: deps.connections,
          events: reportedEvents('grpc', deps.connections.limits, deps.metrics, logger),
        }, deps.tls);
        role.grpcPort = grpc.port;
        const host = splitAddr(config.grpcAddr).host;
        role.grpcAddress = `${host.includes(':') ? `[${host}]` : host}:${role.grpcPort}`;
        role.localGrpcAddress = grpc.localPort ? `127.0.0.1:${grpc.localPort}` : role.grpcAddress;
      }),
    stop: () => parts.stopAll(),
  };
  return role;
}

/**
 * With an in-process registry, the leases of the previous process died with
 * it: the sessions the read model still shows open are recorded as expired.
 */
export async function recordLeftoverSessions(deps: { registry: ConnectionRegistry; log: EventLog; readModels: ReadModels; clock: () => number; newId: () => string }): Promise<void> {
  if (deps.registry.leasesOutliveProcess) return;
  const open = await deps.readModels.sessions.find({ where: { open: true } });
  // Appended together: the log writes them in one group commit, not one durable write after another (10,000 sessions
  // left at CHATFLOW_MAX_CLIENTS=10000 took 2.4 s of start-up one by one on this VM's disk).
  await Promise.all(open.map((s) => deps.log.append({
    eventId: deps.newId(), time: new Date(deps.clock()), clientId: s.clientId, conversationId: s.conversationId, sessionId: s._id,
    payload: { $case: 'clientDisconnected', clientDisconnected: { reason: DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED, gatewayId: s.gatewayId, detail: 'the process holding it stopped' } },
  })));
}

/**
 * Before a request is read (src/gateway/request-guard.ts): callers of the
 * public services are identified, only Chat and Send may send an upload's
 * worth, Sends are read a few at a time (RequestPlaces; a Chat stream's
 * frames are read one at a time, and only once it is admitted), and every
 * other call holds a place until answered and must send its request in time. A refused
 * Chat or Connect counts as a refused admission, as it did when the handler
 * refused it.
 */
function guardOf(config: Config, auth: TokenAuthority, metrics: Metrics, logger: Logger) {
  const { chat, connect, send } = PUBLIC_SERVICES.chat.definition;
  const sends = sendPlaces(config, () => metrics.sendsBusy.inc({ transport: 'grpc' }));
  const calls = callPlaces(config, () => metrics.callsRefused.inc({ reason: 'busy' }));
  // A session's streams are bounded by its admission (the client cap, one per client, the connect rate), a Send by its own places.
  const isCall = (path: string) => path !== chat.path && path !== connect.path && path !== send.path;
  // A Send that says it carries no upload (a text, a ping) is read as a call: it does not wait behind uploads.
  const asCall = (path: string, small: boolean) => isCall(path) || (path === send.path && small);
  return requestGuard({
    authenticated: isPublicPath,
    carriesMedia: (path) => MEDIA_METHOD_PATHS.has(path),
    placesFor: (path, small) => (asCall(path, small) ? calls : path === send.path ? sends : undefined),
    // A call's request is small and comes at once; an upload may take a slow link minutes, not for ever.
    requestWithinMs: (path, small) => (asCall(path, small) ? config.connections.silentMs : path === send.path ? config.sends.uploadTimeoutMs : undefined),
    onLate: (path, small) => metrics.callsRefused.inc({ reason: asCall(path, small) ? 'request_late' : 'upload_late' }),
    identify: (md) => auth.identify(getter(md)),
    refused: (path, err) => {
      if (path === chat.path || path === connect.path) metrics.admissionsRefused.inc({ reason: 'unauthenticated' });
      return toStatus(err, logger);
    },
  });
}

/**
 * Serves the public services (with health and reflection); returns the bound
 * port, and with TLS the port of a plain-text listener on loopback for this
 * process's own gRPC-Web endpoint (GatewayRole.localGrpcAddress).
 */
async function startGrpc(
  config: Config,
  services: [ServiceDefinition, UntypedServiceImplementation][],
  parts: Lifecycle,
  health: Health,
  guard: ServerInterceptor,
  connections: { budget: ConnectionBudget; events: ConnectionEvents },
  tls?: TlsFiles,
): Promise<{ port: number; localPort?: number }> {
  const server = new Server({ ...grpcServerOptions(config), interceptors: [guard] });
  for (const [definition, implementation] of services) server.addService(definition, implementation);
  const grpcHealth = new HealthImplementation(Object.fromEntries(HEALTH_SERVICE_NAMES.map((s) => [s, 'NOT_SERVING'])));
  grpcHealth.addToServer(server);
  health.onChange((serving) => {
    for (const s of HEALTH_SERVICE_NAMES) grpcHealth.setStatus(s, serving ? 'SERVING' : 'NOT_SERVING');
  });
  addReflection(server);
  const bind = (addr: string, credentials: ServerCredentials) =>
    new Promise<number>((res, rej) => server.bindAsync(addr, credentials, (err, p) => (err ? rej(listenError(err, 'CHATFLOW_GRPC_ADDR', addr)) : res(p))));
  const secure = tls && new RenewingServerCredentials(tls, connections.budget.limits.silentMs);
  if (secure) parts.onStop('grpc tls renewals', async () => secure.close());
  // The public address is this process's own TCP listener, its connections handed to grpc-js (its connection
  // injector): grpc-js's own listener has no bound on connections and keeps one that never speaks for ever.
  const injector = server.createConnectionInjector(secure ?? ServerCredentials.createInsecure());
  const tcp = createServer((socket) => {
    if (!socket.destroyed) injector.injectConnection(socket); // destroyed: over the bound (guardConnections)
  });
  const guarded = guardConnections(tcp, connections.budget, HTTP2_PREFACE_BYTES, connections.events);
  const port = await listenOn(tcp, config.grpcAddr).catch((err: unknown) => {
    throw listenError(err, 'CHATFLOW_GRPC_ADDR', config.grpcAddr);
  });
  // The embedded gRPC-Web endpoint's way in when the public one speaks TLS: loopback, this process only.
  const localPort = tls ? await bind('127.0.0.1:0', ServerCredentials.createInsecure()) : undefined;
  parts.onStop('grpc', async () => {
    const closed = new Promise<void>((res) => tcp.close(() => res()));
    // The sessions were drained before (App.stop); what is left are unary calls and tools' streams.
    await new Promise<void>((res) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        res();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(force);
        res();
      });
    });
    injector.destroy();
    guarded.destroyAll(); // connections that never became sessions
    await closed;
  });
  return { port, localPort };
}

/** Message sizes and connection management of the gRPC server (README: Run in production → keepalive). */
export function grpcServerOptions(config: Config): Record<string, number> {
  const maxMessage = config.maxMediaBytes * 2 + 1024 * 1024;
  const { keepaliveMs, keepaliveTimeoutMs, maxIdleMs, maxConnectionAgeMs, maxConnectionAgeGraceMs, windowBytes } = config.grpc;
  return {
    'grpc.max_receive_message_length': maxMessage,
    'grpc.max_send_message_length': maxMessage,
    // Server pings find dead peers and keep proxies' idle timers from cutting quiet streams.
    'grpc.keepalive_time_ms': keepaliveMs,
    'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
    // Clients may ping as often as every 5 s (grpc-js clients default to no pings; grpc-go's minimum is 10 s).
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    // Per stream and per connection (patches/@grpc+grpc-js: the server side of the option, grpc-node PR #3058).
    'grpc-node.flow_control_window': windowBytes,
    // A connection with no call open is closed after a while, as the HTTP listener's keep-alive timeout does (5 s there).
    ...(maxIdleMs > 0 ? { 'grpc.max_connection_idle_ms': maxIdleMs } : {}),
    ...(maxConnectionAgeMs > 0 ? { 'grpc.max_connection_age_ms': maxConnectionAgeMs, 'grpc.max_connection_age_grace_ms': maxConnectionAgeGraceMs } : {}),
  };
}
