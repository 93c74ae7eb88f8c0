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
import { retryWithBackoff } from './retry';

/**
 * One function per port: the real adapter when its engine is configured, the
 * embedded one otherwise. Each waits for its engine at start (saying which one
 * it waits for) rather than failing the process.
 */

/** `onWritable`: the reason appends fail (disk full), then undefined once they work again (embedded log). */
export function openEventLog(config: Config, logger: Logger, clientId: string, onWritable?: (problem: string | undefined) => void): Promise<EventLog> {
  if (config.kafka) return KafkaEventLog.open({ ...config.kafka, clientId, logger });
  return EmbeddedEventLog.open({
    dir: join(config.dataDir, 'log'),
    fsync: config.logFsync,
    logger: logger.child({ component: 'eventlog' }),
    repairCommand: `npm run client -- log repair --data-dir ${resolve(config.dataDir)}`,
    onWritable,
  });
}

export async function openReadStore(config: Config, logger: Logger): Promise<ReadStore> {
  const uri = config.mongodbUri;
  if (!uri) return new MemoryReadStore();
  return retryWithBackoff('MongoDB', logger.child({ engine: 'mongodb' }), () => MongoReadStore.connect({ uri, logger }));
}

/** On MongoDB, admission shares the read store's connection (one pool and one handshake per process; the store closes it). */
export async function openRegistry(store: ReadStore, logger: Logger): Promise<ConnectionRegistry> {
  if (!(store instanceof MongoReadStore)) return new MemoryConnectionRegistry();
  return retryWithBackoff('MongoDB', logger.child({ engine: 'mongodb' }), () => MongoConnectionRegistry.on(store.db, { logger }));
}

/**
 * Who answers each message: shared through MongoDB by every worker when the
 * read store is there, in memory for the embedded default (one worker).
 */
export async function openReplyClaims(store: ReadStore, logger: Logger): Promise<ReplyClaims> {
  if (!(store instanceof MongoReadStore)) return new MemoryReplyClaims({ deadAfterMs: WORKER_DEAD_AFTER_MS });
  return retryWithBackoff('MongoDB', logger.child({ engine: 'mongodb' }), () => MongoReplyClaims.on(store.db, { logger, deadAfterMs: WORKER_DEAD_AFTER_MS }));
}

export function openBus(config: Config, logger: Logger, name: string): Promise<Bus> {
  if (!config.natsUrl) return Promise.resolve(new MemoryBus(logger.child({ engine: 'memory-bus' })));
  return NatsBus.connect({ url: config.natsUrl, name, logger });
}

/** `local` is the signed-URL store used when no S3 is configured (served by our HTTP server). */
export async function openMedia(config: Config, logger: Logger, local: () => LocalMediaStore): Promise<MediaStore> {
  const s3 = config.s3;
  if (!s3) return local();
  return retryWithBackoff(`S3 at ${s3.endpoint}`, logger.child({ engine: 's3' }), () => S3MediaStore.open({ ...s3, logger }));
}
