import { setMaxListeners } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ServerFrame } from '../gen/chatflow/v1/chat';
import { MediaKind, type Event, type MediaRef, type MessageReceived } from '../gen/chatflow/v1/events';
import { decideBudget, evolveBudget, initialBudget, type BudgetCommand, type BudgetState } from '../domain/budget';
import { responseIdFor } from '../domain/ids';
import { mediaKindName } from '../domain/media-kind';
import { clientSubject, type Bus } from '../bus/port';
import { LogUnavailableError, type Consumer, type EventLog, type LoggedEvent } from '../eventlog/port';
import { LlmError, type InputKind, type LlmProvider, type LlmRequest } from '../llm/port';
import type { MediaStore } from '../media/port';
import type { ReplyMediaRenderer } from '../media/renderer';
import { formatLocalTime } from '../llm/local-time';
import type { Collection } from '../readstore/port';
import type { Metrics } from '../metrics';
import type { MessageDoc } from '../../projections/models';
import { mediaDoc } from '../../projections/definitions';
import type { FrameFactory } from '../gateway/frames';

export interface WorkerDeps {
  workerId: string;
  log: EventLog;
  bus: Bus;
  media: MediaStore;
  /** Makes reply voice and images (off the event loop unless configured otherwise). */
  renderer: ReplyMediaRenderer;
  llm: LlmProvider;
  messages: Collection<MessageDoc>;
  frames: FrameFactory;
  metrics: Metrics;
  maxProcessing: number;
  clock: () => number;
  newId: () => string;
  logger: Logger;
  /**
   * Consumer group (the projector's) whose progress makes the messages read model
   * trustworthy for the "already answered?" check after a partition changes hands.
   */
  settledBy?: string;
  /** Told why the worker cannot be trusted with its partitions (undefined: it can again); health reads it. */
  onProblem?: (reason: string | undefined) => void;
  /** Retries of a retryable provider error before the message fails. */
  maxAttempts?: number;
}

/**
 * Consumes MessageReceived under a bounded budget: the log consumer hands out
 * at most `maxProcessing` messages at once, so the rest wait in the log. The
 * budget decider is checked again here and its peak is what /metrics reports.
 * Processing is idempotent by message id. Messages of one conversation are
 * taken in log order but processed concurrently (a text reply need not wait
 * for a video's); every reply names the message it answers.
 */
export class Worker {
  private consumer?: Consumer;
  private budget: BudgetState = initialBudget();
  private readonly waiters: (() => void)[] = [];
  private readonly inFlight = new Set<string>();
  /** Messages this worker answered lately, oldest first (dedupe by message id). */
  private readonly recentlyDone = new Set<string>();
  private readonly abort = new AbortController();
  private lagTimer?: NodeJS.Timeout;

  constructor(private readonly deps: WorkerDeps) {
    // Every call in processing listens on this one signal.
    setMaxListeners(0, this.abort.signal);
  }

  get peak(): number {
    return this.budget.peak;
  }

  get processing(): number {
    return this.budget.inProcessing;
  }

  async start(): Promise<void> {
    this.consumer = await this.deps.log.consume({
      group: 'workers',
      topics: ['conversations'],
      // The budget is structural: partitions × per-partition concurrency, whatever the number of workers.
      concurrencyPerPartition: concurrencyPerPartition(this.deps.maxProcessing, this.deps.log.partitions('conversations')),
      settledBy: this.deps.settledBy,
      handle: (e, signal) => this.handle(e, signal),
      onProblem: this.deps.onProblem,
    });
    this.lagTimer = setInterval(() => this.deps.metrics.messagesWaiting.set(this.consumer?.lag() ?? 0), 500);
    this.lagTimer.unref();
  }

  private step(command: BudgetCommand): boolean {
    const events = decideBudget(command, this.budget);
    this.budget = events.reduce(evolveBudget, this.budget);
    this.deps.metrics.messagesProcessing.set(this.budget.inProcessing);
    this.deps.metrics.messagesProcessingPeak.set(this.budget.peak);
    return events[0].type !== 'MustWait';
  }

  private async acquire(): Promise<void> {
    while (!this.step({ type: 'Start', max: this.deps.maxProcessing })) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  private release(): void {
    this.step({ type: 'Finish' });
    this.waiters.shift()?.();
  }

  private async handle(e: LoggedEvent, taken: AbortSignal): Promise<void> {
    const p = e.event.payload;
    if (p?.$case !== 'messageReceived') return;
    const id = p.messageReceived.messageId;
    // The same message appended twice (a resend racing its original): one processing is enough, also when
    // the first is already answered but the read model the check below reads has not caught up yet.
    if (this.inFlight.has(id) || this.recentlyDone.has(id)) return;
    this.inFlight.add(id);
    try {
      await this.process(e.event, p.messageReceived, AbortSignal.any([this.abort.signal, taken]));
      this.recentlyDone.add(id);
      if (this.recentlyDone.size > RECENTLY_DONE) this.recentlyDone.delete(this.recentlyDone.values().next().value!);
    } finally {
      this.inFlight.delete(id);
    }
  }

  private async process(event: Event, m: MessageReceived, signal: AbortSignal): Promise<void> {
    const done = await this.deps.messages.get(m.messageId);
    if (done && done.status !== 'pending') return; // answered before a restart: never twice
    await this.acquire();
    const started = this.deps.clock();
    const kind = inputKind(m);
    try {
      const outcome = await this.produce(event, m, kind, started, signal);
      this.deps.metrics.responses.inc({ outcome });
    } finally {
      this.release();
    }
  }

  private async produce(event: Event, m: MessageReceived, kind: InputKind, started: number, signal: AbortSignal): Promise<'answered' | 'failed'> {
    const subject = clientSubject(event.clientId);
    const request: LlmRequest = {
      messageId: m.messageId,
      kind,
      text: m.content?.$case === 'text' ? m.content.text : undefined,
      media: m.content?.$case === 'media' ? { mimeType: m.content.media.mimeType, sizeBytes: m.content.media.sizeBytes, durationMs: m.content.media.durationMs || undefined } : undefined,
      timeZone: m.timeZone || 'UTC',
      now: new Date(started),
      history: this.deps.llm.usesHistory ? await this.history(event.conversationId, m.messageId) : [],
    };
    const attempts = this.deps.maxAttempts ?? 3;
    const deltas = this.deltaBatcher(subject, m.messageId);
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await this.deps.llm.generate(request, {
          signal,
          onDelta: deltas.push,
        });
        deltas.flush();
        const responseId = responseIdFor(m.messageId);
        const voice = kind === 'audio' || kind === 'video' ? await this.voice(event, responseId, reply.text) : undefined;
        const image = kind === 'video' ? await this.image(event, responseId, reply.text, request) : undefined;
        const processingMs = this.deps.clock() - started;
        // Taken away (shutdown, or the partition moved to another worker): whoever redoes it answers.
        signal.throwIfAborted();
        const logged = await this.appendOutcome(this.event(event, {
          $case: 'responseProduced',
          responseProduced: { messageId: responseId, inReplyTo: m.messageId, text: reply.text, voice, image, processingMs, workerId: this.deps.workerId, model: reply.model },
        }), signal);
        this.deps.metrics.processingSeconds.observe({ kind }, processingMs / 1000);
        const response = await this.deps.frames.botResponse({
          _id: responseId, conversationId: event.conversationId, clientId: event.clientId, seq: logged.seq, author: 'bot', time: logged.event.time!.getTime(),
          inReplyTo: m.messageId, text: reply.text, processingMs, voice: mediaDoc(voice), image: mediaDoc(image),
        });
        await this.publish(subject, { frame: { $case: 'response', response } });
        return 'answered';
      } catch (err) {
        if (signal.aborted) throw err; // left uncommitted: redone after a restart or by the partition's new owner
        const retryable = err instanceof LlmError && err.retryable && attempt < attempts;
        if (retryable) {
          this.deps.logger.warn({ err, messageId: m.messageId, attempt }, 'provider error; retrying');
          await new Promise((r) => setTimeout(r, 200 * 2 ** (attempt - 1)));
          continue;
        }
        const code = err instanceof LlmError ? err.code : 'INTERNAL';
        const message = err instanceof LlmError ? `the model could not answer: ${err.message}` : 'the reply could not be produced';
        if (!(err instanceof LlmError)) this.deps.logger.error({ err, messageId: m.messageId }, 'processing failed');
        const logged = await this.appendOutcome(this.event(event, { $case: 'processingFailed', processingFailed: { inReplyTo: m.messageId, code, message, workerId: this.deps.workerId } }), signal);
        await this.publish(subject, { frame: { $case: 'error', error: { inReplyTo: m.messageId, code, message, seq: logged.seq, retryAfterMs: 0 } } });
        return 'failed';
      }
    }
  }

  /**
   * Appends a reply or a failure. While the log cannot write (disk full) it
   * waits and tries again, as long as it takes: the reply is made and maybe
   * streamed already, so it is neither made again nor lost nor turned into an
   * error. Gives up only when the message is taken away (`signal`).
   */
  private async appendOutcome(outcome: Event, signal: AbortSignal): Promise<LoggedEvent> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.deps.log.append(outcome);
      } catch (err) {
        if (!(err instanceof LogUnavailableError) || signal.aborted) throw err;
        if (attempt === 1) this.deps.logger.warn({ err: err.message, eventId: outcome.eventId }, 'the log cannot store this reply yet; retrying until it can');
        await delay(Math.min(OUTCOME_RETRY_MAX_MS, err.retryAfterMs, 10 * 2 ** attempt), undefined, { signal });
      }
    }
  }

  private async voice(event: Event, responseId: string, text: string): Promise<MediaRef> {
    const v = await this.deps.renderer.voice(text, responseId);
    const key = `replies/${event.conversationId}/${responseId}.wav`;
    await this.deps.media.put(key, v.bytes, v.mimeType);
    return { kind: MediaKind.MEDIA_KIND_VOICE, key, mimeType: v.mimeType, sizeBytes: v.bytes.length, sha256: '', durationMs: v.durationMs };
  }

  private async image(event: Event, responseId: string, text: string, request: LlmRequest): Promise<MediaRef> {
    const img = await this.deps.renderer.image({ title: 'ChatFlow', lines: [formatLocalTime(request.now, request.timeZone), ...wrap(text, 44).slice(0, 6)], seed: responseId });
    const key = `replies/${event.conversationId}/${responseId}.png`;
    await this.deps.media.put(key, img.bytes, img.mimeType);
    return { kind: MediaKind.MEDIA_KIND_IMAGE, key, mimeType: img.mimeType, sizeBytes: img.bytes.length, sha256: '', durationMs: 0 };
  }

  private async history(conversationId: string, exclude: string): Promise<LlmRequest['history']> {
    const recent = await this.deps.messages.find({ where: { conversationId }, sort: { field: 'seq', direction: -1 }, limit: 11 });
    return recent
      .filter((d) => d._id !== exclude && d.text)
      .slice(0, 10)
      .reverse()
      .map((d) => ({ author: d.author, text: d.text! }));
  }

  /**
   * Deltas produced in the same tick go out as one frame: a model that streams
   * slowly still shows every token, one that answers at once costs one frame.
   */
  private deltaBatcher(subject: string, inReplyTo: string) {
    let pending = '';
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      if (pending === '') return;
      const textDelta = pending;
      pending = '';
      void this.publish(subject, { frame: { $case: 'delta', delta: { inReplyTo, textDelta } } });
    };
    return {
      push: (text: string) => {
        pending += text;
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      },
      flush,
    };
  }

  private event(source: Event, payload: Event['payload']): Event {
    return { eventId: this.deps.newId(), time: new Date(this.deps.clock()), clientId: source.clientId, conversationId: source.conversationId, sessionId: source.sessionId, payload };
  }

  private async publish(subject: string, frame: ServerFrame): Promise<void> {
    try {
      await this.deps.bus.publish(subject, ServerFrame.encode(frame).finish());
    } catch (err) {
      // Delivery is best effort: the reply is in the log and the client resumes from history.
      this.deps.logger.warn({ err }, 'could not publish to the bus');
    }
  }

  async stop(graceMs: number): Promise<void> {
    clearInterval(this.lagTimer);
    const stopping = this.consumer?.stop(graceMs);
    setTimeout(() => this.abort.abort(), graceMs).unref();
    await stopping;
  }

  stats() {
    return { processing: this.budget.inProcessing, peak: this.budget.peak, waiting: this.consumer?.lag() ?? 0 };
  }
}

/** Longest wait between two tries of a reply append while the log cannot write. */
const OUTCOME_RETRY_MAX_MS = 200;
const RECENTLY_DONE = 10_000;

/** Per-partition share of the processing budget (at least 1, never above the budget in total). */
export function concurrencyPerPartition(maxProcessing: number, partitions: number): number {
  return Math.max(1, Math.floor(maxProcessing / partitions));
}

function inputKind(m: MessageReceived): InputKind {
  if (m.content?.$case !== 'media') return 'text';
  const name = mediaKindName(m.content.media.kind);
  return name === 'audio' || name === 'video' ? name : 'image';
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if ((line + ' ' + word).trim().length > width) {
      if (line) lines.push(line);
      line = word.slice(0, width);
    } else line = (line + ' ' + word).trim();
  }
  if (line) lines.push(line);
  return lines;
}
