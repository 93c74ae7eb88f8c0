import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { Config } from './config/config';
import { ChatServiceService } from './gen/chatflow/v1/chat';
import { HistoryServiceService } from './gen/chatflow/v1/history';
import { DisconnectReason } from './gen/chatflow/v1/events';
import { TokenAuthority, loadOrCreateSecret } from './auth/tokens';
import { EmbeddedEventLog } from './eventlog/embedded';
import { MemoryReadStore } from './readstore/memory';
import { MemoryBus } from './bus/memory';
import { MemoryConnectionRegistry } from './connections/memory';
import { LocalMediaStore } from './media/local';
import { handleMediaRequest } from './media/local-http';
import { createLlmProvider } from './llm/factory';
import type { LlmProvider } from './llm/port';
import { createMetrics, type Metrics } from './metrics';
import { startHttpServer, splitAddr } from './http/server';
import { ChatGateway } from './gateway/chat-service';
import { historyService } from './gateway/history-service';
import { FrameFactory } from './gateway/frames';
import { Worker } from './worker/worker';
import { ProjectionRunner } from '../projections/runner';
import { COLLECTIONS, type ConversationDoc, type MessageDoc, type SessionDoc } from '../projections/models';
import { conversationsProjection, messagesProjection, sessionsProjection } from '../projections/definitions';
import { ChatFlowError } from './domain/errors';

export interface App {
  config: Config;
  grpcPort: number;
  httpPort: number;
  grpcAddress: string;
  httpUrl: string;
  auth: TokenAuthority;
  metrics: Metrics;
  worker: Worker;
  gateway: ChatGateway;
  projections: ProjectionRunner;
  stop(): Promise<void>;
}

export interface AppOverrides {
  llm?: LlmProvider;
  clock?: () => number;
}

export const PROTO_DIR = resolve(__dirname, '..', 'proto');

/** The composition root: picks adapters from the configuration and wires the roles. */
export async function startApp(config: Config, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
  const { kafkaBrokers, mongodbUri, natsUrl, s3Endpoint } = config.engines;
  const real = Object.entries({ KAFKA_BROKERS: kafkaBrokers, MONGODB_URI: mongodbUri, NATS_URL: natsUrl, S3_ENDPOINT: s3Endpoint }).filter(([, v]) => v);
  if (real.length > 0) {
    throw new ChatFlowError('FAILED_PRECONDITION', `${real.map(([k]) => k).join(', ')} set, but the real-engine adapters are not built yet: unset them to run on the embedded default`);
  }
  if (config.role !== 'all') {
    throw new ChatFlowError('FAILED_PRECONDITION', `CHATFLOW_ROLE=${config.role} needs the real engines (not built yet); the embedded default runs role "all"`);
  }

  const clock = overrides.clock ?? Date.now;
  const newId = () => randomUUID();
  const stops: { name: string; run: () => Promise<unknown> }[] = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) {
      await s.run().catch((err) => logger.error({ err, step: s.name }, 'shutdown step failed'));
    }
  };

  try {
    await mkdir(config.dataDir, { recursive: true });
    const secret = await loadOrCreateSecret(config.dataDir, config.authSecret);
    const auth = new TokenAuthority(secret, config.insecureClientId);
    const metrics = createMetrics();

    const log = await EmbeddedEventLog.open({ dir: join(config.dataDir, 'log'), fsync: config.logFsync, logger: logger.child({ component: 'eventlog' }) });
    stops.push({ name: 'event log', run: () => log.close() });

    // Read models: in memory, rebuilt from the whole log before serving.
    const store = new MemoryReadStore();
    const projections = new ProjectionRunner(log, store, { fromBeginning: true });
    const replayStart = Date.now();
    await projections.start();
    stops.push({ name: 'projections', run: () => projections.stop() });
    await projections.caughtUp();
    logger.info({ ms: Date.now() - replayStart }, 'read models rebuilt from the event log');

    const conversations = store.collection<ConversationDoc>(COLLECTIONS.conversations, conversationsProjection.indexes);
    const messages = store.collection<MessageDoc>(COLLECTIONS.messages, messagesProjection.indexes);
    const sessions = store.collection<SessionDoc>(COLLECTIONS.sessions, sessionsProjection.indexes);

    // Media behind signed URLs served by our own HTTP server.
    let media: LocalMediaStore | undefined;
    const mediaSecret = Buffer.concat([Buffer.from('media:'), Buffer.from(secret)]);
    let healthy = false;
    let gateway: ChatGateway | undefined;
    let worker: Worker | undefined;
    const http = await startHttpServer({
      addr: config.httpAddr,
      registry: metrics.registry,
      logger,
      health: () => ({
        ok: healthy,
        detail: { role: config.role, clients: gateway?.connected ?? 0, processing: worker?.processing ?? 0, waiting: worker?.stats().waiting ?? 0 },
      }),
      routes: [(req, res) => (media ? handleMediaRequest(req, res, { store: media, secret: mediaSecret, now: clock }) : false)],
    });
    stops.push({ name: 'http', run: () => http.close() });
    const httpHost = splitAddr(config.httpAddr).host;
    const httpUrl = config.publicHttpUrl ?? `http://${httpHost.includes(':') ? `[${httpHost}]` : httpHost}:${http.port}`;
    media = new LocalMediaStore({ dir: join(config.dataDir, 'media'), baseUrl: httpUrl, secret: mediaSecret, now: clock });
    const frames = new FrameFactory(media, config.mediaUrlTtlMs);
    const bus = new MemoryBus();
    const registry = new MemoryConnectionRegistry();

    // Sessions the log shows open belong to a process that is gone: record them as expired.
    for (const s of await sessions.find({ where: { open: true } })) {
      await log.append({
        eventId: newId(), time: new Date(clock()), clientId: s.clientId, conversationId: s.conversationId, sessionId: s._id,
        payload: { $case: 'clientDisconnected', clientDisconnected: { reason: DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED, gatewayId: s.gatewayId, detail: 'the process holding it stopped' } },
      });
    }

    const llm = overrides.llm ?? createLlmProvider({ ...config.llm, delayScale: config.simDelayScale });
    const gatewayId = `gw-${newId().slice(0, 8)}`;
    worker = new Worker({
      workerId: `wk-${newId().slice(0, 8)}`, log, bus, media, llm, messages, frames, metrics, maxProcessing: config.maxProcessing, clock, newId,
      logger: logger.child({ component: 'worker' }),
    });
    await worker.start();
    const w = worker;
    stops.push({ name: 'worker', run: () => w.stop(config.shutdownGraceMs) });

    gateway = new ChatGateway(
      { config, gatewayId, log, registry, bus, media, auth, conversations, messages, sessions, frames, metrics, clock, newId },
      logger.child({ component: 'gateway', gatewayId }),
    );
    gateway.start();

    const maxMessage = config.maxMediaBytes * 2 + 1024 * 1024;
    const server = new Server({
      'grpc.max_receive_message_length': maxMessage,
      'grpc.max_send_message_length': maxMessage,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    });
    server.addService(ChatServiceService, gateway.service);
    server.addService(HistoryServiceService, historyService({ auth, conversations, messages, frames }, logger.child({ component: 'history' })));
    const health = new HealthImplementation({ '': 'NOT_SERVING', 'chatflow.v1.ChatService': 'NOT_SERVING', 'chatflow.v1.HistoryService': 'NOT_SERVING' });
    health.addToServer(server);
    const packageDefinition = loadSync(['chatflow/v1/chat.proto', 'chatflow/v1/history.proto'], { includeDirs: [PROTO_DIR] });
    new ReflectionService(packageDefinition).addToServer(server);
    const grpcPort = await new Promise<number>((res, rej) =>
      server.bindAsync(config.grpcAddr, ServerCredentials.createInsecure(), (err, port) => (err ? rej(err) : res(port))),
    );
    const g = gateway;
    stops.push({
      name: 'grpc',
      run: async () => {
        healthy = false;
        for (const s of ['', 'chatflow.v1.ChatService', 'chatflow.v1.HistoryService']) health.setStatus(s, 'NOT_SERVING');
        await g.shutdown();
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
    for (const s of ['', 'chatflow.v1.ChatService', 'chatflow.v1.HistoryService']) health.setStatus(s, 'SERVING');
    healthy = true;
    const grpcHost = splitAddr(config.grpcAddr).host;
    const grpcAddress = `${grpcHost.includes(':') ? `[${grpcHost}]` : grpcHost}:${grpcPort}`;
    logger.info({ grpc: grpcAddress, http: httpUrl, llm: llm.name, dataDir: resolve(config.dataDir) }, 'ChatFlow ready');

    let stopped: Promise<void> | undefined;
    return {
      config, grpcPort, httpPort: http.port, grpcAddress, httpUrl, auth, metrics, worker, gateway, projections,
      stop: () => (stopped ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
