import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { EventLog } from '../eventlog/port';
import type { Event } from '../gen/chatflow/v1/events';
import type { Health } from '../health';
import { createLlmProvider } from '../llm/factory';
import type { LlmProvider } from '../llm/port';
import { createRenderer } from '../media/renderer';
import type { Metrics } from '../metrics';
import { createSpeech, type Speech } from '../speech/factory';
import { Worker, type MessageReader, type WorkerDeps } from '../worker/worker';
import type { ReplyClaims } from '../replies/port';
import type { Bus } from '../bus/port';
import { EarlyNotes } from '../bus/early';
import type { MediaStore } from '../media/port';
import type { Lifecycle, Part } from './lifecycle';

/** What the rest of the process asks of its worker, wherever it runs (this thread or its own, src/threads). */
export interface WorkerControl {
  readonly processing: number;
  readonly peak: number;
  stats(): { processing: number; peak: number; waiting: number };
  /** Stops taking messages and finishes those in processing until `graceOver` (default: graceMs from now). */
  stop(graceMs?: number, graceOver?: Promise<unknown>): Promise<void>;
  /** Begins on a message this process's gateway is about to append, and calls that off (see Worker.begin). */
  begin(event: Event, upload?: Buffer): void;
  callOff(messageId: string): void;
}

export interface WorkerRole extends Part {
  worker: WorkerControl;
  llmName: string;
  speechSummary: Speech['summary'];
}

/** Answers the messages of the log: the model, speech in and out, reply media. */
export function workerRole(deps: {
  config: Config;
  logger: Logger;
  lifecycle: Lifecycle;
  log: EventLog;
  /** `subscribe`: for the gateways' early notes, on Kafka (a worker thread, on the embedded log, has none). */
  bus: Pick<Bus, 'publish'> & Partial<Pick<Bus, 'subscribe'>>;
  /** See WorkerDeps.appendAndTell (a worker in a thread). */
  appendAndTell?: WorkerDeps['appendAndTell'];
  media: MediaStore;
  messages: MessageReader;
  /** Whether the read models have caught up with the log (projections/runner.ts readModelsSettled). */
  settled(timeoutMs: number): Promise<boolean>;
  metrics: Metrics;
  health: Pick<Health, 'report'>;
  instance: string;
  clock: () => number;
  steady: () => number;
  newId: () => string;
  claims: ReplyClaims;
  llm?: LlmProvider;
  onBudget?: WorkerDeps['onBudget'];
}): WorkerRole {
  const { config, logger } = deps;
  const parts = deps.lifecycle.child();
  const llm = deps.llm ?? createLlmProvider({ ...config.llm, delayScale: config.simDelayScale });
  const speech = createSpeech(config.speech, logger.child({ component: 'speech' }));
  parts.onStop('speech engines', () => speech.close());
  const renderer = createRenderer(config.mediaThreads, logger.child({ component: 'media-render' }));
  parts.onStop('media renderer', () => renderer.close());
  // On Kafka, the gateways' early notes of the partitions this worker holds (src/bus/early.ts).
  let notes: EarlyNotes | undefined;
  const worker = new Worker({
    workerId: `wk-${deps.instance}`, log: deps.log, bus: deps.bus, appendAndTell: deps.appendAndTell, media: deps.media, renderer, llm, messages: deps.messages,
    claims: deps.claims, settled: deps.settled,
    metrics: deps.metrics, maxProcessing: config.maxProcessing, clock: deps.clock, steady: deps.steady, newId: deps.newId,
    // No takeover wait for the projector: the reply claims, not the read models, say whether a message
    // taken over was answered, so a moved partition is handled at once.
    onProblem: (problem) => deps.health.report('consumer-group', problem),
    logger: logger.child({ component: 'worker' }),
    speech, vision: config.llm.vision, engineRetryDeadlineMs: config.engineRetryDeadlineMs, retryAfterMs: config.retryAfterMs,
    claimsKeepMs: config.replyClaimsKeepMs, deltaIntervalMs: config.deltaIntervalMs, onBudget: deps.onBudget,
    onAssigned: (topic, partitions) => topic === 'conversations' && notes?.follow(partitions),
  });
  const subscribe = deps.bus.subscribe?.bind(deps.bus);
  if (config.kafka && subscribe) notes = new EarlyNotes({ subscribe }, config.kafka.prefix, worker, logger.child({ component: 'early' }));
  return {
    worker,
    llmName: llm.name,
    speechSummary: speech.summary,
    start: () =>
      parts.all(async () => {
        await worker.start();
        parts.onStop('worker', async () => {
          notes?.close();
          await worker.stop(config.shutdownGraceMs);
        });
      }),
    stop: () => parts.stopAll(),
  };
}
