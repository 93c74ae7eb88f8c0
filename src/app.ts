import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { Health } from './health';
import type { Logger } from 'pino';
import type { Config } from './config/config';
import { HistoryServiceService, type HistoryServiceServer } from './gen/chatflow/v1/history';
import { DisconnectReason } from './gen/chatflow/v1/events';
import { TokenAuthority, loadOrCreateSecret } from './auth/tokens';
import { MemoryReadStore } from './readstore/memory';
import { MongoReadStore } from './readstore/mongo';
import type { Bus } from './bus/port';
import { MemoryConnectionRegistry } from './connections/memory';
import type { ConnectionRegistry } from './connections/port';
import { LocalMediaStore } from './media/local';
import type { MediaStore } from './media/port';
import { openBus, openEventLog, openMedia, openReadStore, openRegistry } from './engines/open';
import { handleMediaRequest } from './media/local-http';
import { createLlmProvider } from './llm/factory';
import type { LlmProvider } from './llm/port';
import { createMetrics, type Metrics } from './metrics';
import { reflectionService } from './reflection';
import { listenError } from './listen-error';
import { routeGrpcJsLogs } from './logging';
import { readyLines } from './ready-line';
import { startHttpServer, splitAddr } from './http/server';
import { webRoutes } from './http/web';
import { ChatGateway } from './gateway/chat-service';
import { historyService } from './gateway/history-service';
import { FrameFactory } from './gateway/frames';
import { checkedChatService } from './gateway/wire-check';
import { Worker } from './worker/worker';
import { createRenderer } from './media/renderer';
import { createSpeech, type Speech } from './speech/factory';
import { timeAppends, timeMediaPuts } from './engines/instrument';
import { PROJECTOR_GROUP, ProjectionRunner, readModelsSettled } from '../projections/runner';
import { COLLECTIONS, type ConversationDoc, type MessageDoc, type SessionDoc } from '../projections/models';
import { ALL_PROJECTIONS, conversationsProjection, messagesProjection, sessionsProjection } from '../projections/definitions';

export interface App {
  config: Config;
  grpcPort: number;
  httpPort: number;
  grpcAddress: string;
  httpUrl: string;
  auth: TokenAuthority;
  metrics: Metrics;
  /** Present when this process runs the role. */
  worker?: Worker;
  gateway?: ChatGateway;
  projections?: ProjectionRunner;
  health: Health;
  /**
   * The graceful drain (once, however often called): health NOT_SERVING, no
   * new sessions or messages, replies in processing delivered on their
   * streams (up to the shutdown grace), every stream ended with UNAVAILABLE +
   * retry-after-ms, then the engines closed in reverse order.
   */
  stop(): Promise<void>;
  /** What a stop still waits for: its current step and the work in flight (for the hard-deadline log). */
  stopProgress(): Record<string, unknown>;
}

export interface AppOverrides {
  llm?: LlmProvider;
  clock?: () => number;
}

/** The composition root: picks adapters from the configuration and wires the roles this process runs. */
export async function startApp(config: Config, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
  const runs = (role: 'gateway' | 'worker' | 'projector') => config.role === 'all' || config.role === role;
  const clock = overrides.clock ?? Date.now;
  const newId = () => randomUUID();
  const instance = newId().slice(0, 8);
  const stops: { name: string; run: () => Promise<unknown> }[] = [];
  let stopStep = 'not stopping';
  const stopAll = async () => {
    for (const s of stops.reverse()) {
      stopStep = s.name;
      await s.run().catch((err) => logger.error({ err, step: s.name }, 'shutdown step failed'));
    }
    stopStep = 'stopped';
  };
  const health = new Health({ starting: 'connecting to the engines' });

  try {
    await mkdir(config.dataDir, { recursive: true });
    const secret = await loadOrCreateSecret(config.dataDir, config.authSecret);
    const auth = new TokenAuthority(secret, config.insecureClientId);
    const metrics = createMetrics();

    // HTTP first: /healthz answers "not ready" while the engines are awaited.
    let localMedia: LocalMediaStore | undefined;
    const mediaSecret = Buffer.concat([Buffer.from('media:'), Buffer.from(secret)]);
    let gateway: ChatGateway | undefined;
    let worker: Worker | undefined;
    let projections: ProjectionRunner | undefined;
    // Bound further down (gateways only); the gRPC-Web endpoint reads it per call.
    let grpcPort = 0;
    let grpcAddress = '';
    const web = runs('gateway') ? webRoutes({ upstream: () => grpcAddress, auth, maxMediaBytes: config.maxMediaBytes, logger, settings: config.web }) : undefined;
    if (web) stops.push({ name: 'grpc-web upstream', run: async () => web.close() });
    const http = await startHttpServer({
      addr: config.httpAddr,
      registry: metrics.registry,
      logger,
      health: () => ({
        ok: health.serving,
        detail: {
          ...(health.serving ? {} : { unavailable: health.unavailable }),
          role: config.role, clients: gateway?.connected ?? 0, processing: worker?.processing ?? 0, waiting: worker?.stats().waiting ?? 0,
          projectionLag: projections?.lag() ?? 0,
        },
      }),
      routes: [
        (req, res) => (localMedia ? handleMediaRequest(req, res, { store: localMedia, secret: mediaSecret, now: clock }) : false),
        // On gateways: the chat page, the embedded gRPC-Web endpoint (forwarding to the gRPC server below once bound)
        // and POST /dev/token when enabled.
        ...(web?.routes ?? []),
      ],
    }).catch((err: unknown) => {
      throw listenError(err, 'CHATFLOW_HTTP_ADDR', config.httpAddr);
    });
    stops.push({ name: 'http', run: () => http.close() });
    const httpHost = splitAddr(config.httpAddr).host;
    const httpUrl = config.publicHttpUrl ?? `http://${httpHost.includes(':') ? `[${httpHost}]` : httpHost}:${http.port}`;

    const log = await openEventLog(config, logger, `chatflow-${config.role}-${instance}`, (problem) => health.report('event-log', problem));
    timeAppends(log, metrics.logAppendSeconds);
    stops.push({ name: 'event log', run: () => log.close() });
    const store = await openReadStore(config, logger);
    stops.push({ name: 'read store', run: () => store.close() });
    const conversations = store.collection<ConversationDoc>(COLLECTIONS.conversations, conversationsProjection.indexes);
    const messages = store.collection<MessageDoc>(COLLECTIONS.messages, messagesProjection.indexes);
    const sessions = store.collection<SessionDoc>(COLLECTIONS.sessions, sessionsProjection.indexes);

    if (runs('projector')) {
      // A memory store starts empty: rebuild it from the whole log. A MongoDB store resumes where it stopped.
      const memory = store instanceof MemoryReadStore;
      if (store instanceof MongoReadStore && config.rebuildReadModels) {
        await store.drop(ALL_PROJECTIONS.map((p) => p.collection));
        logger.warn('read models dropped: rebuilding them from the start of the log');
      }
      projections = new ProjectionRunner(log, store, {
        fromBeginning: memory || config.rebuildReadModels,
        batch: config.projectionBatch,
        onApplied: (lagMs) => metrics.projectionLagSeconds.observe(lagMs / 1000),
      });
      const replayStart = Date.now();
      await projections.start();
      const p = projections;
      const lagTimer = setInterval(() => metrics.projectionLag.set(p.lag()), 1000).unref();
      stops.push({ name: 'projections', run: () => (clearInterval(lagTimer), p.stop()) });
      await projections.caughtUp();
      logger.info({ ms: Date.now() - replayStart }, 'read models caught up with the event log');
    }

    let bus: Bus | undefined;
    let media: MediaStore | undefined;
    let frames: FrameFactory | undefined;
    if (runs('gateway') || runs('worker')) {
      bus = await openBus(config, logger, `chatflow-${config.role}-${instance}`);
      const b = bus;
      stops.push({ name: 'bus', run: () => b.close() });
      media = await openMedia(config, logger, () => (localMedia = new LocalMediaStore({ dir: join(config.dataDir, 'media'), baseUrl: httpUrl, secret: mediaSecret, now: clock })));
      timeMediaPuts(media, metrics.mediaPutSeconds);
      const m = media;
      stops.push({ name: 'media', run: () => m.close() });
      frames = new FrameFactory(media, config.mediaUrlTtlMs);
    }

    let registry: ConnectionRegistry | undefined;
    if (runs('gateway')) {
      registry = await openRegistry(store, logger);
      const r = registry;
      stops.push({ name: 'connection registry', run: () => r.close() });
      if (registry instanceof MemoryConnectionRegistry) {
        // In-process leases died with the previous process: record its open sessions as expired.
        for (const s of await sessions.find({ where: { open: true } })) {
          await log.append({
            eventId: newId(), time: new Date(clock()), clientId: s.clientId, conversationId: s.conversationId, sessionId: s._id,
            payload: { $case: 'clientDisconnected', clientDisconnected: { reason: DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED, gatewayId: s.gatewayId, detail: 'the process holding it stopped' } },
          });
        }
      }
    }

    let llmName: string | undefined;
    let speechSummary: Speech['summary'] | undefined;
    if (runs('worker')) {
      const llm = overrides.llm ?? createLlmProvider({ ...config.llm, delayScale: config.simDelayScale });
      llmName = llm.name;
      const speech = createSpeech(config.speech, logger.child({ component: 'speech' }));
      speechSummary = speech.summary;
      stops.push({ name: 'speech engines', run: () => speech.close() });
      const renderer = createRenderer(config.mediaThreads, logger.child({ component: 'media-render' }));
      stops.push({ name: 'media renderer', run: () => renderer.close() });
      worker = new Worker({
        workerId: `wk-${instance}`, log, bus: bus!, media: media!, renderer, llm, messages, frames: frames!, metrics, maxProcessing: config.maxProcessing, clock, newId,
        settledBy: PROJECTOR_GROUP, // only the Kafka log has partitions to take over; the embedded one ignores it
        onProblem: (problem) => health.report('consumer-group', problem),
        logger: logger.child({ component: 'worker' }),
        speech, vision: config.llm.vision, engineRetryDeadlineMs: config.engineRetryDeadlineMs, retryAfterMs: config.retryAfterMs,
      });
      await worker.start();
      const w = worker;
      stops.push({ name: 'worker', run: () => w.stop(config.shutdownGraceMs) });
    }

    if (runs('gateway')) {
      const gatewayId = config.gatewayId ?? `gw-${instance}`;
      // Read your writes (conversation ownership, resends): wait for the read models to reach the log's end.
      const settled = readModelsSettled(log, projections);
      gateway = new ChatGateway(
        { config, gatewayId, log, registry: registry!, bus: bus!, media: media!, auth, conversations, messages, sessions, frames: frames!, metrics, clock, newId, readModelsSettled: settled },
        logger.child({ component: 'gateway', gatewayId }),
      );
      gateway.start();
      const g = gateway;
      routeGrpcJsLogs(logger);
      ({ grpcPort, grpcAddress } = await startGrpc(config, g, historyService({ auth, conversations, messages, frames: frames!, readModelsSettled: settled, readYourWritesMs: config.readYourWritesMs }, logger.child({ component: 'history' })), stops, health));
    }
    health.clear('starting');
    const next = readyLines(config, { grpcAddress, httpUrl });
    logger.info({ role: config.role, grpc: grpcAddress || undefined, http: httpUrl, llm: llmName, speech: speechSummary, engines: engineNames(config), dataDir: resolve(config.dataDir), next: next.next }, 'ChatFlow ready');
    if (next.next) logger.info(next.next);
    for (const warning of next.warnings) logger.warn(warning);

    const drainAndStop = async () => {
      stopStep = 'drain';
      health.set('draining', 'shutting down: finishing the replies in processing');
      gateway?.beginDrain();
      const workerStopped = worker?.stop(config.shutdownGraceMs);
      await Promise.all([
        // Replies of this process's own worker arrive over the bus right after it stops; other workers' within the grace.
        gateway?.drain({ graceMs: config.shutdownGraceMs, settled: workerStopped, settleMs: 250 }),
        workerStopped,
      ]);
      await stopAll();
    };
    let stopped: Promise<void> | undefined;
    return {
      config, grpcPort, httpPort: http.port, grpcAddress, httpUrl, auth, metrics, worker, gateway, projections, health,
      stop: () => (stopped ??= drainAndStop()),
      stopProgress: () => ({
        step: stopStep,
        streams: gateway?.connected ?? 0,
        repliesAwaited: gateway?.pendingReplies() ?? 0,
        processing: worker?.processing ?? 0,
      }),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Serves ChatService and HistoryService (with health and reflection) for a gateway. */
async function startGrpc(
  config: Config,
  gateway: ChatGateway,
  history: HistoryServiceServer,
  stops: { name: string; run: () => Promise<unknown> }[],
  health: Health,
): Promise<{ grpcPort: number; grpcAddress: string }> {
  const server = new Server(grpcServerOptions(config));
  server.addService(checkedChatService(), gateway.service);
  server.addService(HistoryServiceService, history);
  const services = ['', 'chatflow.v1.ChatService', 'chatflow.v1.HistoryService'];
  const grpcHealth = new HealthImplementation(Object.fromEntries(services.map((s) => [s, 'NOT_SERVING'])));
  grpcHealth.addToServer(server);
  health.onChange((serving) => {
    for (const s of services) grpcHealth.setStatus(s, serving ? 'SERVING' : 'NOT_SERVING');
  });
  reflectionService().addToServer(server);
  const grpcPort = await new Promise<number>((res, rej) =>
    server.bindAsync(config.grpcAddr, ServerCredentials.createInsecure(), (err, port) => (err ? rej(listenError(err, 'CHATFLOW_GRPC_ADDR', config.grpcAddr)) : res(port))),
  );
  stops.push({
    name: 'grpc',
    run: async () => {
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
    },
  });
  const grpcHost = splitAddr(config.grpcAddr).host;
  return { grpcPort, grpcAddress: `${grpcHost.includes(':') ? `[${grpcHost}]` : grpcHost}:${grpcPort}` };
}

/** Message sizes and connection management of the gRPC server (README: Run in production → keepalive). */
export function grpcServerOptions(config: Config): Record<string, number> {
  const maxMessage = config.maxMediaBytes * 2 + 1024 * 1024;
  const { keepaliveMs, keepaliveTimeoutMs, maxConnectionAgeMs, maxConnectionAgeGraceMs } = config.grpc;
  return {
    'grpc.max_receive_message_length': maxMessage,
    'grpc.max_send_message_length': maxMessage,
    // Server pings find dead peers and keep proxies' idle timers from cutting quiet streams.
    'grpc.keepalive_time_ms': keepaliveMs,
    'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
    // Clients may ping as often as every 5 s (grpc-js clients default to no pings; grpc-go's minimum is 10 s).
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    ...(maxConnectionAgeMs > 0 ? { 'grpc.max_connection_age_ms': maxConnectionAgeMs, 'grpc.max_connection_age_grace_ms': maxConnectionAgeGraceMs } : {}),
  };
}

/** Which engine backs each port, for the start-up log line. */
function engineNames(config: Config): Record<string, string> {
  return {
    log: config.kafka ? 'kafka' : 'embedded',
    readModels: config.mongodbUri ? 'mongodb' : 'memory',
    bus: config.natsUrl ? 'nats' : 'memory',
    media: config.s3 ? 's3' : 'local',
  };
}
