import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { EventLog } from '../eventlog/port';
import type { Health } from '../health';
import { createLlmProvider } from '../llm/factory';
import type { LlmProvider } from '../llm/port';
import { createRenderer } from '../media/renderer';
import type { Metrics } from '../metrics';
import { createSpeech, type Speech } from '../speech/factory';
import { Worker } from '../worker/worker';
import { readModelsSettled, type ProjectionRunner } from '../../projections/runner';
import type { ReplyClaims } from '../replies/port';
import type { Lifecycle, Part } from './lifecycle';
import type { Messaging, ReadModels } from './wiring';

export interface WorkerRole extends Part {
  worker: Worker;
  llmName: string;
  speechSummary: Speech['summary'];
}

/** Answers the messages of the log: the model, speech in and out, reply media. */
export function workerRole(deps: {
  config: Config;
  logger: Logger;
  lifecycle: Lifecycle;
  log: EventLog;
  messaging: Messaging;
  readModels: ReadModels;
  metrics: Metrics;
  health: Health;
  instance: string;
  clock: () => number;
  newId: () => string;
  claims: ReplyClaims;
  /** The projector of this process, if it runs one (the embedded default). */
  projections?: ProjectionRunner;
  llm?: LlmProvider;
}): WorkerRole {
  const { config, logger } = deps;
  const parts = deps.lifecycle.child();
  const llm = deps.llm ?? createLlmProvider({ ...config.llm, delayScale: config.simDelayScale });
  const speech = createSpeech(config.speech, logger.child({ component: 'speech' }));
  parts.onStop('speech engines', () => speech.close());
  const renderer = createRenderer(config.mediaThreads, logger.child({ component: 'media-render' }));
  parts.onStop('media renderer', () => renderer.close());
  const { bus, media } = deps.messaging;
  const worker = new Worker({
    workerId: `wk-${deps.instance}`, log: deps.log, bus, media, renderer, llm, messages: deps.readModels.messages,
    claims: deps.claims, settled: readModelsSettled(deps.log, deps.projections),
    metrics: deps.metrics, maxProcessing: config.maxProcessing, clock: deps.clock, newId: deps.newId,
    // No takeover wait for the projector: the reply claims, not the read models, say whether a message
    // taken over was answered, so a moved partition is handled at once.
    onProblem: (problem) => deps.health.report('consumer-group', problem),
    logger: logger.child({ component: 'worker' }),
    speech, vision: config.llm.vision, engineRetryDeadlineMs: config.engineRetryDeadlineMs, retryAfterMs: config.retryAfterMs,
    claimsKeepMs: config.replyClaimsKeepMs,
  });
  return {
    worker,
    llmName: llm.name,
    speechSummary: speech.summary,
    start: () =>
      parts.all(async () => {
        await worker.start();
        parts.onStop('worker', () => worker.stop(config.shutdownGraceMs));
      }),
    stop: () => parts.stopAll(),
  };
}
