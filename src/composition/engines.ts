import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { EmbeddedEventLog } from '../eventlog/embedded';
import { KafkaEventLog } from '../eventlog/kafka';
import type { EventLog } from '../eventlog/port';
import { MemoryReadStore } from '../readstore/memory';
import { MongoReadStore } from '../readstore/mongo';
import type { ReadStore } from '../readstore/port';
import { MemoryBus } from '../bus/memory';
import { NatsBus } from '../bus/nats';
import type { Bus } from '../bus/port';
import { MemoryConnectionRegistry } from '../connections/memory';
import { MongoConnectionRegistry } from '../connections/mongo';
import type { ConnectionRegistry } from '../connections/port';
import { MemoryReplyClaims } from '../replies/memory';
import { MongoReplyClaims } from '../replies/mongo';
import { WORKER_DEAD_AFTER_MS, type ReplyClaims } from '../replies/port';
import { LocalMediaStore } from '../media/local';
import { S3MediaStore } from '../media/s3';
import type { MediaStore } from '../media/port';
import { downloadPlaces, handleMediaRequest } from '../media/local-http';
import type { HttpRoute } from '../http/server';
import type { Metrics } from '../metrics';
import { retryWithBackoff } from '../resilience/retry';

/**
 * The only place that names adapters. One function per port: the real adapter
 * when its engine is configured, the embedded one otherwise. Each waits for its engine at start (saying which one
 * it waits for) rather than failing the process.
 */

/** `onWritable`: the reason appends fail (disk full), then undefined once they work again (embedded log). */
/** What the event log tells the process (the embedded log's writability, its append timings) and how its start is called off (Kafka). */
export interface EventLogHooks {
  onWritable?: (problem: string | undefined) => void;
  metrics?: Metrics;
  signal?: AbortSignal;
}

export function openEventLog(config: Config, logger: Logger, clientId: string, { onWritable, metrics, signal }: EventLogHooks = {}): Promise<EventLog> {
  if (config.kafka) return KafkaEventLog.open({ ...config.kafka, clientId, logger, signal });
  return EmbeddedEventLog.open({
    dir: join(config.dataDir, 'log'),
    fsync: config.logFsync,
    logger: logger.child({ component: 'eventlog' }),
    repairCommand: `npm run client -- log repair --data-dir ${resolve(config.dataDir)}`,
    onWritable,
    onAppendTiming: metrics && appendStages(metrics),
  });
}

/** The embedded log's per-append stages, each into its series (three observations an append: no label lookup). */
function appendStages(metrics: Metrics): (t: { queue: number; write: number; settle: number }) => void {
  const h = metrics.logAppendStageSeconds;
  const queue = h.child({ stage: 'queue' });
  const write = h.child({ stage: 'write' });
  const settle = h.child({ stage: 'settle' });
  return (t) => {
    queue.observe(t.queue);
    write.observe(t.write);
    settle.observe(t.settle);
  };
}

/** The registry's own pool: a renewal, a sweep and a few admissions at a time. */
const REGISTRY_POOL_SIZE = 8;

/**
 * The read models' store and, on a gateway, admission's registry. On MongoDB
 * the registry has a connection pool of its own (it closes it): its lease
 * renewals must not queue behind a burst of read-model lookups (Kafka back
 * after an outage: a gateway's shared pool went from 13 to 97 connections in
 * 5 s, renewals took 4–9 s while each command took about 1 s, and both
 * gateways closed every session for lack of a good renewal).
 */
export interface Storage {
  store: ReadStore;
  openRegistry(): Promise<ConnectionRegistry>;
  /** Who answers each message: shared by every worker through MongoDB, in memory for the embedded default (one worker). */
  openReplyClaims(): Promise<ReplyClaims>;
}

export async function openStorage(config: Config, logger: Logger, metrics?: Pick<Metrics, 'mongoCommandSeconds' | 'mongoUpdateWaitSeconds'>, signal?: AbortSignal): Promise<Storage> {
  const uri = config.mongodbUri;
  if (!uri) {
    return { store: new MemoryReadStore(), openRegistry: async () => new MemoryConnectionRegistry(), openReplyClaims: async () => new MemoryReplyClaims({ deadAfterMs: WORKER_DEAD_AFTER_MS }) };
  }
  const log = logger.child({ engine: 'mongodb' });
  const timeoutMs = config.mongoTimeoutMs;
  const onCommand = metrics && ((command: string, seconds: number) => metrics.mongoCommandSeconds.observe({ command }, seconds));
  const onUpdateWait = metrics && ((method: string, seconds: number) => metrics.mongoUpdateWaitSeconds.observe({ method }, seconds));
  const store = await retryWithBackoff('MongoDB', log, () => MongoReadStore.connect({ uri, logger, timeoutMs, poolSize: config.mongoPoolSize, updateConcurrency: config.mongoUpdateConcurrency, replaceBatch: config.mongoReplaceBatch, onCommand, onUpdateWait }), { signal, discard: (late) => late.close() });
  return {
    store,
    openRegistry: () => retryWithBackoff('MongoDB', log, () => MongoConnectionRegistry.connect({ uri, logger, timeoutMs, poolSize: REGISTRY_POOL_SIZE, updateConcurrency: config.mongoUpdateConcurrency, onCommand, onUpdateWait }), { signal, discard: (late) => late.close() }),
    openReplyClaims: () => retryWithBackoff('MongoDB', log, () => MongoReplyClaims.on(store.db, { logger, deadAfterMs: WORKER_DEAD_AFTER_MS }), { signal }),
  };
}

export function openBus(config: Config, logger: Logger, name: string, signal?: AbortSignal): Promise<Bus> {
  if (!config.natsUrl) return Promise.resolve(new MemoryBus(logger.child({ engine: 'memory-bus' })));
  return NatsBus.connect({ url: config.natsUrl, name, logger, signal });
}

/** How often the local media folder is swept of temp files left by killed processes, and how old such a file must be. */
const MEDIA_SWEEP_EVERY_MS = 60 * 60_000;
const MEDIA_SWEEP_MIN_AGE_MS = 15 * 60_000;

export interface Media {
  store: MediaStore;
  /** Serves the store's signed URLs on our HTTP server, when it has no server of its own (the local store). */
  route?: HttpRoute;
}

/** Without S3: files under the data folder, their signed URLs served by our HTTP server at `baseUrl`. */
export async function openMedia(config: Config, logger: Logger, local: { baseUrl: string; secret: Buffer; now: () => number; sweep?: boolean }, signal?: AbortSignal): Promise<Media> {
  const s3 = config.s3;
  if (s3) return { store: await retryWithBackoff(`S3 at ${s3.endpoint}`, logger.child({ engine: 's3' }), () => S3MediaStore.open({ ...s3, logger }), { signal, discard: (late) => late.close() }) };
  const { sweep, ...signing } = local;
  const store = new LocalMediaStore({ dir: join(config.dataDir, 'media'), ...signing });
  if (sweep) {
    store.startSweeping({
      everyMs: MEDIA_SWEEP_EVERY_MS,
      minAgeMs: MEDIA_SWEEP_MIN_AGE_MS,
      onSwept: (result) => {
        if (result instanceof Error) logger.warn({ err: result }, 'could not sweep the temp files of interrupted media writes; trying again later');
        else if (result.removed > 0) logger.info(result, 'removed the temp files of media writes a stopped process left behind');
      },
    });
  }
  const places = downloadPlaces(config.retryAfterMs);
  return { store, route: (req, res) => handleMediaRequest(req, res, { store, secret: local.secret, now: local.now, logger, stallMs: config.slowClientTimeoutMs, places }) };
}
