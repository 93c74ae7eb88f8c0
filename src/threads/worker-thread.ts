// The worker role in a thread of its own (src/threads/worker-host.ts starts it).
import { randomUUID } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../config/config';
import { Event } from '../gen/chatflow/v1/events';
import { createLogger } from '../logging';
import { createMetrics } from '../metrics';
import { openMedia, openStorage } from '../composition/engines';
import { timedMediaStore } from '../composition/instrument';
import { Lifecycle } from '../composition/lifecycle';
import { workerRole } from '../composition/worker-role';
import type { FindQuery } from '../readstore/port';
import type { MessageDoc } from '../../projections/models';
import { Channel, toWire, type Port } from './channel';
import { RemoteEventLog, type LogShape } from './remote-log';
import { steadyClock } from '../clock';

export interface WorkerThreadData {
  config: Config;
  instance: string;
  pretty: boolean;
  log: LogShape;
  media: { baseUrl: string; secret: Uint8Array };
  /** Int32 [processing, peak], written here as they change, read by the event loop without a message. */
  stats: SharedArrayBuffer;
}

/** What the thread says once its worker runs. */
export interface WorkerThreadReady {
  llmName: string;
  speechSummary: unknown;
}

async function run(ch: Channel, data: WorkerThreadData): Promise<void> {
  const { config } = data;
  const logger = createLogger(config.logLevel, { pretty: data.pretty }).child({ thread: 'worker' });
  const lifecycle = new Lifecycle(logger);
  ch.on('thread.stop', () => lifecycle.stopAll());
  try {
    const metrics = createMetrics({ defaults: false });
    ch.on('metrics', () => metrics.registry.getMetricsAsJSON());
    const media = await openMedia(config, logger, { baseUrl: data.media.baseUrl, secret: Buffer.from(data.media.secret), now: Date.now });
    lifecycle.onStop('media', () => media.store.close());
    // The reply claims are this thread's: it is the process's one worker.
    const storage = await openStorage(config, logger, metrics);
    lifecycle.onStop('read store', () => storage.store.close());
    const claims = await storage.openReplyClaims();
    lifecycle.onStop('reply claims', () => claims.close());
    const log = new RemoteEventLog(ch, data.log);
    const stats = new Int32Array(data.stats);
    const role = await lifecycle.start('worker', workerRole({
      config, logger, lifecycle, metrics, claims, instance: data.instance, clock: Date.now, steady: steadyClock(), newId: randomUUID,
      log,
      appendAndTell: log.tellsOutcomes ? (outcome, bytes, tell) => log.appendOutcome(outcome, bytes, tell) : undefined,
      // A note, not a call: the in-process bus takes every publish, and an answer per reply update cost the link two messages per reply.
      bus: { publish: async (subject, payload) => ch.note('bus.publish', subject, payload) },
      media: timedMediaStore(media.store, metrics.mediaPutSeconds),
      messages: {
        get: (id) => ch.call<MessageDoc | null>('messages.get', id),
        find: (query: FindQuery<MessageDoc>) => ch.call<MessageDoc[]>('messages.find', query),
      },
      settled: (timeoutMs) => ch.call<boolean>('settled', timeoutMs),
      health: { report: (name, problem) => ch.note('health.report', name, problem) },
      // Stored as they change (two stores per message), not polled: a timer every 50 ms woke this thread 20 times a second when idle.
      onBudget: (inProcessing, peak) => {
        Atomics.store(stats, 0, inProcessing);
        Atomics.store(stats, 1, peak);
      },
    }));
    // The grace ends when the host says so (see workerThreadRole's stop).
    let endGrace!: () => void;
    const graceOver = new Promise<void>((r) => (endGrace = r));
    ch.on('worker.graceOver', () => endGrace());
    ch.on('worker.stop', (graceMs?: number) => role.worker.stop(graceMs, graceOver));
    ch.on('worker.begin', (bytes: Uint8Array, upload?: Uint8Array) => role.worker.begin(Event.decode(bytes), upload && Buffer.from(upload.buffer, upload.byteOffset, upload.byteLength)));
    ch.on('worker.callOff', (messageId: string) => role.worker.callOff(messageId));
    ch.note('ready', { llmName: role.llmName, speechSummary: role.speechSummary } satisfies WorkerThreadReady);
  } catch (err) {
    await lifecycle.stopAll();
    ch.note('failed', toWire(err));
  }
}

if (parentPort) void run(new Channel(parentPort as Port), workerData as WorkerThreadData);
