import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { Event, MediaKind, type MediaRef, type MessageReceived } from '../gen/chatflow/v1/events';
import { decideBudget, evolveBudget, initialBudget, type BudgetCommand, type BudgetState } from '../domain/budget';
import { responseIdFor } from '../domain/ids';
import { replyMediaKey } from '../domain/media-keys';
import { mediaKindName, type InputKind } from '../domain/media-kind';
import { clientSubject, type Bus } from '../bus/port';
import { encodeReplyUpdate, outcomeUpdate, type ReplyUpdate } from '../bus/messages';
import { abortable, backoffDelay, retry, sleep } from '../resilience/retry';
import { isTransient } from '../resilience/transient';
import { StorageUnavailableError } from '../domain/errors';
import { mayBeWritten, outcomeOf, type Consumer, type EventLog, type LoggedEvent, type Topic } from '../eventlog/port';
import { LlmError, type LlmProvider, type LlmRequest } from '../llm/port';
import type { MediaStore } from '../media/port';
import type { ReplyMediaRenderer } from '../media/renderer';
import { formatLocalTime } from '../domain/local-time';
import type { Collection } from '../readstore/port';
import type { ClaimResult, ReplyClaims } from '../replies/port';
import type { Metrics } from '../metrics';
import { failureIdFor } from '../../projections/definitions';
import type { MessageDoc } from '../../projections/models';
import { hear, type Heard, type SpeechEngines } from '../speech/hearing';
import { SpeechError } from '../speech/port';
import { wavFromPcm16 } from '../media/wav';
import { encodePng } from '../media/png';
import { RecentMap } from '../domain/recent-map';
import { RecentSet } from '../domain/recent-set';
import { encode } from '../encode';
import { DeltaBatcher } from './delta-batcher';

/** What a worker reads of the messages read model: a reply's history, and whether an old message was answered. */
export type MessageReader = Pick<Collection<MessageDoc>, 'get' | 'find'>;

export interface WorkerDeps {
  workerId: string;
  log: EventLog;
  /** Replies and their streamed parts go to the gateway holding the client's stream. */
  bus: Pick<Bus, 'publish'>;
  /**
   * Appends an outcome (its event and the bytes recorded in the claims) and,
   * once the log has it, tells the client's gateway, in one step: publishes
   * `tell.update` on `tell.subject` with the outcome's seq added (withSeq);
   * resolves where it landed. A worker in a thread has it (src/threads/remote-log.ts):
   * the event loop holds both the log and the bus, so one crossing stands
   * between a reply and its client instead of three (the append, its answer,
   * the publish; ~0.2 ms each when the machine is idle, issue 15). Used
   * while at most half the budget is in processing; otherwise, or absent:
   * `log.append`, then `bus.publish` from here.
   */
  appendAndTell?: (outcome: Event, bytes: Uint8Array, tell: Telling) => Promise<LoggedEvent>;
  media: MediaStore;
  /** Makes reply voice and images (off the event loop unless configured otherwise). */
  renderer: ReplyMediaRenderer;
  llm: LlmProvider;
  messages: MessageReader;
  /**
   * Who answers each message id (see src/domain/reply-claim.ts): the one
   * check of "answered already?" that does not trust a lagging read model.
   */
  claims: ReplyClaims;
  /**
   * Resolves true once the read models have handled everything the log held
   * when called (false: not within timeoutMs): checks an outcome a dead worker
   * recorded against the log before appending it.
   */
  settled(timeoutMs: number): Promise<boolean>;
  metrics: Metrics;
  maxProcessing: number;
  /** The wall clock (see src/clock.ts): events' times, the claims' stamps, the model's "now". */
  clock: () => number;
  /** A steady clock (steadyClock): processing times and deadlines, which a step of the wall clock must not move. */
  steady: () => number;
  newId: () => string;
  logger: Logger;
  /** Told why the worker cannot be trusted with its partitions (undefined: it can again); health reads it. */
  onProblem?: (reason: string | undefined) => void;
  /** Retries of a retryable provider error before the message fails. */
  maxAttempts?: number;
  /** How long the claims of an answered message are kept (CHATFLOW_REPLY_CLAIMS_KEEP_MS); absent: never pruned. */
  claimsKeepMs?: number;
  /** How long a message waits out engines that fail transiently before it fails as UNAVAILABLE (CHATFLOW_ENGINE_RETRY_DEADLINE_MS). */
  engineRetryDeadlineMs?: number;
  /** The `retry_after_ms` hint of such a failure. */
  retryAfterMs?: number;
  /** A reply's deltas go out at most once per this many ms, the first at once (CHATFLOW_DELTA_INTERVAL_MS); absent or 0: each turn. */
  deltaIntervalMs?: number;
  /** How long work begun early (see Worker.begin) waits for the log to hand its message out before it is called off (default 5 s). */
  earlyAdoptMs?: number;
  /** Told the log's partitions this worker holds whenever they change (ConsumeOptions.onAssigned): where its gateways' early notes come from (src/bus/early.ts). */
  onAssigned?(topic: Topic, partitions: readonly number[]): void;
  /** Told the messages in processing and their peak whenever either changes (a worker in a thread shares them with the event loop). */
  onBudget?(inProcessing: number, peak: number): void;
  /** Speech in and out, video split (each absent when not installed). */
  speech?: SpeechEngines;
  /** Send a video's keyframe to the model (LLM_VISION). */
  vision?: boolean;
}

/** What an outcome's appender publishes once the log has it: the encoded update, all but its seq (WorkerDeps.appendAndTell). */
export interface Telling {
  subject: string;
  update: Uint8Array;
}

/** An outcome in the log, and whether its client's gateway was told of it already (WorkerDeps.appendAndTell). */
interface Appended {
  logged: LoggedEvent;
  told: boolean;
}

/** A claim decided while the message's work goes on (Worker.claimBeside). */
interface Beside {
  result: Promise<Exclude<ClaimResult, { type: 'busy' }>>;
  /** The generation the claim gives this worker; null: the message is not its own to answer. */
  gen: Promise<number | null>;
  /** The work's signal, called off when the claim is not this worker's or fails; `done` once the work has ended. */
  work: { signal: AbortSignal; done: () => void };
}

/**
 * Work begun on a message its gateway is about to append (Worker.begin), before
 * the log has it: adopted by the message's handling once the log hands it out,
 * or called off (its append failed, or it did not come in time).
 */
interface Early {
  /** The event it was begun from: adopted only by the handling of this very event. */
  eventId: string;
  /** The message as the log holds it, given when it is handed out. */
  source: Resolvable<LoggedEvent>;
  /** The generation its claim gives this worker (null: not its own), decided when it is handed out. */
  gen: Resolvable<number | null>;
  /** Aborts the work: called off, or the handling that adopted it taken away. */
  controller: AbortController;
  outcome: Promise<Produced>;
  started: Started;
  timer: NodeJS.Timeout;
  /** Gives back the handler place its partition keeps for it (Consumer.reserve), if the log has not handed it out. */
  unkeep: () => void;
  /** Its partition, on a log that picks it by key (EventLog.partitionOf): called off when the partition moves away. */
  partition?: number;
}

type Produced = 'answered' | 'failed' | 'superseded' | 'not ours';

/**
 * When the work on a message began, on both clocks: the wall clock's is the model's "now" (the client's local time
 * in the reply), the steady clock's times its processing and its engines' deadline (a step of the wall clock moves neither).
 */
interface Started {
  readonly wall: number;
  readonly steady: number;
}

/** A message to answer (Worker.produce). */
interface Job {
  event: Event;
  /** Where the log holds it: known once the log hands it out (later, for work begun early). */
  source: LoggedEvent | Promise<LoggedEvent>;
  m: MessageReceived;
  kind: InputKind;
  started: Started;
  /** Its upload's bytes, when its gateway handed them over with it (work begun early), instead of the media store's. */
  upload?: Buffer;
}

/** The spans of a message's way to its reply (chatflow_reply_stage_seconds). */
type ReplyStage = 'taken' | 'started' | 'claimed' | 'recorded' | 'appended' | 'told';

/**
 * Consumes MessageReceived under a bounded budget: the log consumer hands out
 * at most `maxProcessing` messages at once, so the rest wait in the log. The
 * budget decider is checked again here and its peak is what /metrics reports.
 * Exactly one outcome per message id: a message is processed only under a
 * claim (ReplyClaims) and its reply or failure is appended only by the owner
 * whose outcome the claims recorded first, so a duplicate MessageReceived, a
 * zombie that lost its partition, or two workers given the same partition
 * never append two. The worker says it is alive with a heartbeat; its claims
 * pass to others only when that stops or it gives a message up. Messages of one conversation are
 * taken in log order but processed concurrently (a text reply need not wait
 * for a video's); every reply names the message it answers.
 */
export class Worker {
  private consumer?: Consumer;
  private budget: BudgetState = initialBudget();
  private readonly waiters: (() => void)[] = [];
  /** Messages in processing here, with the signal that takes each away and its end (see handle). */
  private readonly inFlight = new Map<string, { signal: AbortSignal; done: Promise<void> }>();
  /** Messages this worker answered lately, oldest first (dedupe by message id). */
  private readonly recentlyDone = new RecentSet<string>(RECENTLY_DONE);
  /** Outcomes this worker's consumer has read from the log lately, by the message they answer, and where (oldest forgotten first). */
  private readonly outcomesInLog = new RecentMap<string, Omit<LoggedEvent, 'event'>>(RECENTLY_DONE);
  /** Messages begun before the log had them (see begin), until their handling adopts them or they are called off. */
  private readonly early = new Map<string, Early>();
  private stopping = false;
  private readonly abort = new AbortController();
  private readonly signals = new WeakMap<AbortSignal, AbortSignal>();
  private lagTimer?: NodeJS.Timeout;
  private beatTimer?: NodeJS.Timeout;
  private pruneTimer?: NodeJS.Timeout;
  /** When this worker started: volatile claims (see ReplyClaims.volatile) know nothing of the messages answered before. */
  private startedAt = 0;

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
    this.startedAt = this.deps.clock();
    await this.beat();
    this.beatTimer = setInterval(() => void this.beat(), Math.max(50, Math.floor(this.deps.claims.deadAfterMs / 4)));
    this.beatTimer.unref();
    const keepMs = this.deps.claimsKeepMs;
    if (keepMs !== undefined) {
      this.pruneTimer = setInterval(() => void this.prune(keepMs), Math.min(PRUNE_EVERY_MS, keepMs / 4));
      this.pruneTimer.unref();
    }
    this.consumer = await this.deps.log.consume({
      group: 'workers',
      topics: ['conversations'],
      // The budget is structural: partitions × per-partition concurrency, whatever the number of workers.
      concurrencyPerPartition: concurrencyPerPartition(this.deps.maxProcessing, this.deps.log.partitions('conversations')),
      handle: (e, signal) => this.handle(e, signal),
      // Its own replies and failures: only what they answer and where (see handle), where the log can.
      ownOutcomes: { workerId: this.deps.workerId, seen: (answers, at) => this.outcomesInLog.set(answers, at) },
      onProblem: this.deps.onProblem,
      onAssigned: (topic, partitions) => {
        this.partitionsMoved(partitions);
        this.deps.onAssigned?.(topic, partitions);
      },
    });
    this.lagTimer = setInterval(() => this.deps.metrics.messagesWaiting.set(this.consumer?.lag() ?? 0), 500);
    this.lagTimer.unref();
  }

  private step(command: BudgetCommand): boolean {
    const events = decideBudget(command, this.budget);
    this.budget = events.reduce(evolveBudget, this.budget);
    this.deps.metrics.messagesProcessing.set(this.budget.inProcessing);
    this.deps.metrics.messagesProcessingPeak.set(this.budget.peak);
    this.deps.onBudget?.(this.budget.inProcessing, this.budget.peak);
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
    const outcome = outcomeOf(e.event);
    if (outcome) {
      // Seen in the log itself: what `confirm` trusts before any read model.
      this.outcomesInLog.set(outcome.answers, { topic: e.topic, partition: e.partition, offset: e.offset, seq: e.seq });
    }
    if (p?.$case !== 'messageReceived') return;
    const takenAt = this.deps.clock();
    if (e.event.time) this.stage('taken', e.event.time.getTime(), takenAt);
    const id = p.messageReceived.messageId;
    const signal = this.signalFor(taken);
    for (let running = this.inFlight.get(id); running; running = this.inFlight.get(id)) {
      // The same message appended twice (a resend racing its original): the copy in processing answers it; this
      // one's offset is above the original's, which holds the commit back until it is done.
      if (!running.signal.aborted) return;
      // Handed out again (a rebalance, a consumer restart) while the handling it took away is still unwinding,
      // e.g. in an append that does not listen to the abort: that one will give the message up, not answer it,
      // so this copy waits for it to finish and then answers (issue 15, kafka-kill: done at once before, never answered).
      await abortable(running.done, signal);
    }
    // Answered here already, while the read model the checks below read may not have caught up yet.
    if (this.recentlyDone.has(id)) return;
    const processing = this.process(e, p.messageReceived, signal, takenAt).then(() => void this.recentlyDone.add(id));
    const entry = { signal, done: processing.catch(() => undefined) };
    this.inFlight.set(id, entry);
    try {
      await processing;
    } finally {
      if (this.inFlight.get(id) === entry) this.inFlight.delete(id);
    }
  }

  /**
   * Begins work on a message its gateway (in this process) is about to append,
   * so the model's time runs while the log makes the message durable instead
   * of after it (issue 15: the append and the hand-out to this worker, ~1.5 ms
   * of each reply's overhead). Only while less than half the budget is in
   * processing, and under a budget slot of its own, so the cap counts it. Its
   * work is held like one whose claim is decided beside it (see produce):
   * nothing leaves this worker, and nothing is appended, until the log hands
   * the message out and its claim is this worker's — never for a message
   * that was not stored. Called off by `callOff` (its upload or its append
   * failed), or when the log has not handed it out within EARLY_ADOPT_MS.
   * `upload`: a voice or video message's bytes, handed over while the media
   * store stores them, so the work need not wait for that either.
   */
  begin(event: Event, upload?: Buffer): void {
    const p = event.payload;
    if (p?.$case !== 'messageReceived' || this.stopping) return;
    const m = p.messageReceived;
    const id = m.messageId;
    // Not before the consumer is there: on Kafka its places are the cap, and notes may come while it joins its group.
    const consumer = this.consumer;
    if (!consumer || this.early.has(id) || this.inFlight.has(id) || this.recentlyDone.has(id)) return;
    if (!this.step({ type: 'Start', max: earlyBudget(this.deps.maxProcessing) })) return;
    // Where the consumer's places are the cap (Kafka: partitions × places, whatever the workers), one is kept for it.
    const unkeep = consumer.reserve ? consumer.reserve(event) : () => undefined;
    if (!unkeep) {
      this.release();
      return;
    }
    const started = this.startedNow();
    const source = resolvable<LoggedEvent>();
    const gen = resolvable<number | null>();
    const controller = new AbortController();
    const outcome = this.produce({ event, source: source.promise, m, kind: inputKind(m), started, upload }, gen.promise, controller.signal, calledOff(controller.signal, gen.promise).signal);
    outcome.catch(() => undefined); // its handling, or callOff, takes the outcome
    const timer = setTimeout(() => this.callOff(id, 'the log did not hand the message out in time'), this.deps.earlyAdoptMs ?? EARLY_ADOPT_MS);
    timer.unref();
    this.early.set(id, { eventId: event.eventId, source, gen, controller, outcome, started, timer, unkeep, partition: this.deps.log.partitionOf?.('conversations', event.conversationId) });
    this.deps.metrics.earlyStarts.inc({ outcome: 'begun' });
  }

  /**
   * Work begun early on a partition this worker no longer holds is called off
   * at once: the place kept for it went with the partition, and the
   * partition's new holder answers the message.
   */
  private partitionsMoved(held: readonly number[]): void {
    for (const [id, early] of this.early) if (early.partition !== undefined && !held.includes(early.partition)) this.callOff(id, 'its partition moved to another worker');
  }

  /** Whether `begin` may begin anything now: under half the budget in processing, not stopping. */
  roomToBegin(): boolean {
    return !this.stopping && this.budget.inProcessing < earlyBudget(this.deps.maxProcessing);
  }

  /** Calls off the work begun early on `messageId` (its append failed): nothing of it is sent or appended; its budget slot is freed once it has stopped. */
  callOff(messageId: string, reason = 'the message was not stored'): void {
    const early = this.early.get(messageId);
    if (!early) return;
    this.early.delete(messageId);
    clearTimeout(early.timer);
    early.gen.resolve(null);
    early.controller.abort(new Error(reason));
    this.deps.metrics.earlyStarts.inc({ outcome: 'called_off' });
    void early.outcome
      .catch(() => undefined)
      .finally(() => {
        this.release();
        early.unkeep();
      });
  }

  /** Aborted on stop or when the consumer takes the message away; one per consumer signal (AbortSignal.any per message cost ~4 % of the loop). */
  private signalFor(taken: AbortSignal): AbortSignal {
    let both = this.signals.get(taken);
    if (!both) {
      this.signals.set(taken, (both = AbortSignal.any([this.abort.signal, taken])));
      setMaxListeners(0, both); // every message in processing listens on it
    }
    return both;
  }

  /** Drops the claims and heartbeats that can no longer matter (see ReplyClaims.prune). */
  private async prune(keepMs: number): Promise<void> {
    try {
      const gone = await this.deps.claims.prune(this.deps.clock(), keepMs);
      if (gone.messages + gone.heartbeats > 0) this.deps.logger.debug(gone, 'reply claims pruned');
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'could not prune the reply claims; will try again');
    }
  }

  private async beat(): Promise<void> {
    try {
      await this.deps.claims.beat(this.deps.workerId, this.deps.clock());
    } catch (err) {
      // Missed beats only let others take this worker's claims: its outcomes stay fenced by the claims' record.
      this.deps.logger.warn({ err: (err as Error).message }, 'could not record the worker heartbeat');
    }
  }

  /** One span of a message's way to its reply (chatflow_reply_stage_seconds), into its stage's series found once. */
  private startedNow(): Started {
    return { wall: this.deps.clock(), steady: this.deps.steady() };
  }

  private stage(stage: ReplyStage, since: number, now = this.deps.clock()): void {
    let series = this.stageSeries.get(stage);
    if (!series) this.stageSeries.set(stage, (series = this.deps.metrics.replyStageSeconds.child({ stage })));
    series.observe(Math.max(0, now - since) / 1000);
  }

  private readonly stageSeries = new Map<ReplyStage, { observe(seconds: number): void }>();

  private async process(source: LoggedEvent, m: MessageReceived, signal: AbortSignal, takenAt: number): Promise<void> {
    const event = source.event;
    const intact = this.claimsIntact(event);
    // Begun early (a message just received, so its claims are intact): adopted here, if begun from this very event.
    // Another event of the same message id (an append that failed, or may have, and whose call-off never came —
    // notes are at most once —, then the key resent, maybe with other words) calls that work off: it would answer
    // words the log does not hold.
    const begun = intact ? this.early.get(m.messageId) : undefined;
    if (begun && begun.eventId !== event.eventId) this.callOff(m.messageId, 'begun from another event than the one the log handed out');
    const early = begun?.eventId === event.eventId ? begun : undefined;
    if (early) {
      this.early.delete(m.messageId);
      clearTimeout(early.timer);
    }
    if (!intact) {
      // Its claims may be pruned by now: the read model (long caught up with an answer this old) says if it was answered.
      const done = await this.deps.messages.get(m.messageId);
      if (done && done.status !== 'pending') return;
    }
    // A message fresh from the log, on claims shared over the network, is claimed while the model already works on
    // it (issue 15: a claims round trip off each reply on the stack, ~5 ms p50). Nothing of that work leaves this
    // worker before the claim is known to be its own (see produce), and it is called off when it is not. One handed
    // out again (a restart, a partition that moved: maybe answered already) is claimed first, so the model is asked
    // nothing for a message it need not answer; so is every message on in-process claims, decided at once anyway.
    // Begun early (see begin), the work is under way already: its claim is decided beside it, whatever the claims.
    const speculate = early !== undefined || (intact && !this.deps.claims.volatile && this.deps.clock() - (event.time?.getTime() ?? 0) < FRESH_MS);
    // Decided before any work (the generation this worker holds), or while the model works (`claim`).
    let held: number | undefined;
    if (!speculate) {
      const c = await this.claim(m.messageId, signal, intact);
      if (c.type === 'answered') return;
      if (c.type === 'unconfirmed') return this.confirm(source, m.messageId, c.event, signal);
      held = c.gen;
    }
    // The budget slot is taken before any work, so the cap counts whatever runs, and kept until that work has ended
    // (work begun early took its own).
    if (!early) await this.acquire();
    const started = early?.started ?? this.startedNow();
    this.stage('started', takenAt, started.wall);
    const claim: { held: number } | { beside: Beside } = held === undefined ? { beside: this.claimBeside(m.messageId, signal, intact, takenAt) } : { held };
    // Adopted: the work begun early learns where the message is and whose claim it is, and stops when this handling is taken away.
    const takenAway = early && (() => early.controller.abort(signal.reason));
    if (early && 'beside' in claim) {
      this.deps.metrics.earlyStarts.inc({ outcome: 'adopted' });
      early.source.resolve(source);
      early.gen.resolve(claim.beside.gen);
      signal.addEventListener('abort', takenAway!, { once: true });
      if (signal.aborted) takenAway!();
    }
    try {
      const [claimed, work] = 'held' in claim ? [claim.held, signal] : [claim.beside.gen, claim.beside.work.signal];
      const outcome = await (early ? early.outcome : this.produce({ event, source, m, kind: inputKind(m), started }, claimed, signal, work));
      if (outcome !== 'not ours') {
        this.deps.metrics.responses.inc({ outcome });
        return;
      }
      // Only a claim decided beside the work turns out not to be this worker's.
      const c = 'beside' in claim ? await claim.beside.result : undefined;
      if (c?.type === 'unconfirmed') await this.confirm(source, m.messageId, c.event, signal);
    } catch (err) {
      // Taken away: give the message up so its new owner starts at once instead of waiting for this worker to die.
      const gen = !signal.aborted ? null : 'held' in claim ? claim.held : await claim.beside.gen.catch(() => null);
      if (gen !== null) await this.deps.claims.release(m.messageId, this.deps.workerId, gen).catch(() => undefined);
      // A failed claim (the claims database unreachable) is what failed, whatever the model's work did meanwhile.
      throw 'beside' in claim ? await claim.beside.result.then(() => err, (claimErr: unknown) => claimErr) : err;
    } finally {
      if ('beside' in claim) claim.beside.work.done();
      if (takenAway) signal.removeEventListener('abort', takenAway);
      this.release();
    }
  }

  /**
   * The claim of a message whose work starts meanwhile: its `result`, the
   * generation it gives this worker (`gen`, null when the message is not its
   * own to answer), and the signal of that work (called off when the claim is
   * not its own or fails).
   */
  private claimBeside(messageId: string, signal: AbortSignal, intact: boolean, takenAt: number): Beside {
    const result = this.claim(messageId, signal, intact).then((c) => {
      this.stage('claimed', takenAt);
      return c;
    });
    const gen = result.then((c) => (c.type === 'claimed' ? c.gen : null));
    gen.catch(() => undefined); // its failure is the claim's, thrown by process
    return { result, gen, work: calledOff(signal, gen) };
  }

  /**
   * Whether no prune can have touched the message's claim records yet, so that
   * they alone say whether it was answered (no read-model lookup, issue 15).
   * Records go `claimsKeepMs` after their outcome was appended, which is after
   * the message was received; half of it allows for clocks that disagree.
   * Claims that live only as long as the process hold nothing of a message
   * received before this worker started: one handed out again after a restart
   * (offsets the disk refused to store, a crash before their commit) is
   * checked against the read models, or it would be answered a second time.
   */
  private claimsIntact(event: Event): boolean {
    const received = event.time?.getTime();
    if (this.deps.claims.volatile && (received === undefined || received < this.startedAt)) return false;
    const keepMs = this.deps.claimsKeepMs;
    if (keepMs === undefined) return true; // never pruned
    return received !== undefined && this.deps.clock() - received < keepMs / 2;
  }

  /** Claims the message, waiting while a live worker holds it (until it answers, gives it up or dies). */
  private async claim(messageId: string, signal: AbortSignal, intact: boolean): Promise<Exclude<ClaimResult, { type: 'busy' }>> {
    for (let waited = false; ; waited = true) {
      const result = await this.deps.claims.claim(messageId, this.deps.workerId, this.deps.clock(), { intact });
      if (result.type !== 'busy') return result;
      if (!waited) this.deps.logger.info({ messageId, holder: result.holder }, 'another worker holds this message; waiting for its outcome');
      await sleep(BUSY_POLL_MS, signal);
    }
  }

  /**
   * An outcome recorded by a worker that died (or failed) before saying it was
   * appended: appended now unless the log already has it. The recording
   * worker is known to be gone by then, so what the log says is final.
   */
  private async confirm(source: LoggedEvent, messageId: string, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
    if (!(await this.outcomeInLog(source, messageId, signal))) {
      this.deps.logger.warn({ messageId }, 'appending the outcome a stopped worker recorded but did not append');
      const { logged, told } = await this.appendOutcome(source, messageId, Event.decode(bytes), bytes, signal);
      if (!told) await this.deliver(source.event, logged);
    }
    await this.deps.claims.confirmAppended(messageId, this.deps.clock());
  }

  /**
   * Whether the log holds an outcome of `messageId`. An outcome follows its
   * message in the same partition, which this worker's consumer reads from
   * before the message on: once the consumer has handed out everything the
   * partition held when asked, the outcomes it saw are the answer, without
   * any read model. A consumer that does not hold the partition, or cannot
   * get there within CONFIRM_SETTLE_MS (its partition's slots all waiting
   * here), falls back to the read models once they have caught up.
   */
  private async outcomeInLog(source: LoggedEvent, messageId: string, signal: AbortSignal): Promise<boolean> {
    const end = await this.deps.log.endOffset?.(source.topic, source.partition).catch(() => undefined);
    for (const deadline = this.deps.steady() + CONFIRM_SETTLE_MS; end !== undefined && this.deps.steady() < deadline; await sleep(LOG_READ_POLL_MS, signal)) {
      if (this.outcomesInLog.has(messageId)) return true;
      const at = this.consumer?.handedOut?.(source.topic, source.partition);
      if (at === undefined) break; // not this member's partition (any more): its reading proves nothing
      if (at >= end) return this.outcomesInLog.has(messageId);
    }
    if (this.outcomesInLog.has(messageId)) return true;
    if (!(await this.deps.settled(CONFIRM_SETTLE_MS))) throw new Error(`cannot confirm the recorded outcome of ${messageId} yet: neither this worker's reading of the log nor the read models have caught up`);
    const doc = await this.deps.messages.get(messageId);
    return !!doc && doc.status !== 'pending';
  }

  /**
   * Appends an outcome if it is the message's (the claims record it first);
   * null if another owner's outcome stands. The caller delivers it, then
   * marks the record appended (`delivered`); a failure in between leaves it
   * for `confirm`.
   */
  private async commit(source: LoggedEvent, messageId: string, gen: number, outcome: Event, signal: AbortSignal): Promise<Appended | null> {
    // The outcome is made: a claims store failing for a moment (a restart, a lost connection) is waited out, as
    // the log is in appendOutcome, instead of turning a reply into a failure.
    const madeAt = outcome.time?.getTime() ?? this.deps.clock();
    const bytes = encode(Event, outcome);
    const recorded = await this.untilClaimed('recorded', messageId, () => this.deps.claims.commit(messageId, this.deps.workerId, gen, bytes), { signal, retryable: isTransient });
    if (!recorded) {
      this.deps.logger.info({ messageId }, 'another worker answered this message first; this outcome is dropped');
      return null;
    }
    this.stage('recorded', madeAt);
    const appended = await this.appendOutcome(source, messageId, outcome, bytes, signal);
    this.stage('appended', madeAt);
    return appended;
  }

  /**
   * Tells the client's gateway about an appended outcome (unless whoever
   * appended it did), then marks it appended in the claims. The reply does not wait for that mark (one more
   * write, issue 15); the message's budget slot does, so marks cannot pile up.
   */
  private async delivered(source: Event, messageId: string, { logged, told }: Appended, signal: AbortSignal): Promise<void> {
    try {
      if (!told) await this.deliver(source, logged);
      // Told by the appender: this thread hears of it after the gateway did.
      if (logged.event.time) this.stage('told', logged.event.time.getTime());
    } finally {
      await this.markAppended(messageId, signal);
    }
  }

  /**
   * Marks the outcome appended, waiting out a claims store that fails for a
   * moment: an outcome left unmarked while this worker lives would make a copy
   * of the message handed to another worker (a partition that moved, a resend
   * appended twice) wait as long as this worker lives. Stops when the message
   * is taken away (the caller gives the claim up, and the next owner checks
   * the log) or on an error that waiting cannot cure (logged). Never throws
   * otherwise: the outcome is in the log, and the caller must not answer again.
   */
  private async markAppended(messageId: string, signal: AbortSignal): Promise<void> {
    try {
      // Tried at least once even when the message was just taken away: it is in the log, and saying so spares its next owner a look.
      await this.untilClaimed('marked appended', messageId, () => this.deps.claims.confirmAppended(messageId, this.deps.clock()), {
        retryable: (err) => !signal.aborted && isTransient(err),
      });
    } catch (err) {
      if (signal.aborted) throw err;
      this.deps.logger.error({ err, messageId }, 'could not mark the outcome appended');
    }
  }

  /** A write to the claims about the message's outcome, tried again while `retryable` says so (the first failure logged). */
  private untilClaimed<T>(done: string, messageId: string, write: () => Promise<T>, opts: { signal?: AbortSignal; retryable: (err: unknown) => boolean }): Promise<T> {
    return retry(write, {
      baseMs: 50, maxMs: OUTCOME_RETRY_MAX_MS, ...opts,
      onRetry: ({ err, attempt }) => attempt === 1 && this.deps.logger.warn({ err, messageId }, `the outcome cannot be ${done} yet; retrying until it can`),
    });
  }

  /** Tells the client's gateway about a logged outcome. */
  private async deliver(source: Event, logged: LoggedEvent): Promise<void> {
    const update = outcomeUpdate(logged.event);
    if (update) await this.publish(clientSubject(source.clientId), { ...update, seq: logged.seq });
  }

  /**
   * Answers the message, or fails it. May start before its claim is decided
   * (`claimed`: the generation this worker holds, or null when the message is
   * not its own to answer): what it reads and what the model makes stay here
   * until the claim is known to be this worker's — its transcript, its deltas
   * (held, then sent at once as one), its voice and image, its outcome. Not
   * its own: 'not ours', once the work has ended (`work`, the signal of the
   * listening and the model, is aborted then).
   */
  private async produce(job: Job, claimed: number | Promise<number | null>, signal: AbortSignal, work: AbortSignal): Promise<Produced> {
    const { event, source, m, kind, started } = job;
    const subject = clientSubject(event.clientId);
    const request: LlmRequest = {
      messageId: m.messageId,
      kind,
      text: m.content?.$case === 'text' ? m.content.text : undefined,
      media: m.content?.$case === 'media' ? { mimeType: m.content.media.mimeType, sizeBytes: m.content.media.sizeBytes, durationMs: m.content.media.durationMs || undefined } : undefined,
      timeZone: m.timeZone || 'UTC',
      now: new Date(started.wall),
      history: this.deps.llm.usesHistory ? await this.history(event.conversationId, m.messageId) : [],
    };
    const attempts = this.deps.maxAttempts ?? 3;
    // Which answer this is (ReplyUpdate.attempt): a gateway streams one answer's parts per message. Known with the claim.
    let gen = 0;
    let answer = '';
    const deltas = new DeltaBatcher((text) => void this.publish(subject, { inReplyTo: m.messageId, attempt: answer, update: { $case: 'delta', delta: { text } } }), this.deps.deltaIntervalMs ?? 0);
    let heard: Heard | undefined;
    let transcriptSent = false;
    /** The transcript goes to the client once heard and once the claim is this worker's, whichever comes last, before any word. */
    const sendTranscript = (): void => {
      if (transcriptSent || answer === '' || !heard?.transcript) return;
      transcriptSent = true;
      const { text, words, engine } = heard.transcript;
      void this.publish(subject, { inReplyTo: m.messageId, attempt: answer, update: { $case: 'transcript', transcript: { text, engine, words: words.map((w) => ({ word: w.word, startMs: w.startMs, endMs: w.endMs })) } } });
    };
    const own = (g: number | null): boolean => {
      if (g !== null && answer === '') {
        gen = g;
        answer = `${this.deps.workerId}#${g}`;
        sendTranscript();
        deltas.release();
      }
      return g !== null;
    };
    if (typeof claimed === 'number') own(claimed);
    else {
      deltas.hold();
      // The words go as soon as the claim is this worker's, not when the model is done.
      claimed.then(own, () => undefined);
    }
    /** Whether the claim is this worker's; waits for a claim decided beside the work (a held one was owned above). */
    const ours = async (): Promise<boolean> => answer !== '' || own(await claimed);
    // Engines failing for a while (connection refused, timeouts, leader changes) are waited out up to here.
    const deadline = started.steady + (this.deps.engineRetryDeadlineMs ?? DEFAULT_ENGINE_RETRY_DEADLINE_MS);
    for (let attempt = 1; ; attempt++) {
      try {
        if (!heard && (kind === 'audio' || kind === 'video')) {
          // Heard, then put to the model, while the claim may still be undecided (work begun early, or claimed beside).
          heard = await this.listen(m, kind, work, deadline, job.upload);
          job.upload = undefined; // heard: not held for the rest of the work (up to the budget × an upload's size)
          Object.assign(request, { transcript: heard.transcript?.text, hearingNote: heard.hearingNote, image: this.deps.vision && heard.keyframe ? { mimeType: 'image/png', data: encodePng(heard.keyframe.rgb, heard.keyframe.width, heard.keyframe.height) } : undefined });
          sendTranscript();
        }
        const reply = await this.deps.llm.generate(request, {
          signal: work,
          onDelta: (d) => deltas.push(d),
        });
        if (!(await ours())) return 'not ours';
        // A text's reply follows at once (one append). A model that answered in one go, none of its words sent yet:
        // they go in the reply alone, not in a delta before it too (two messages a reply through the link, the
        // gateway and the client: issue 15). Once some words went, the rest follow as a delta, so the deltas a
        // client gets always add up to the reply. A voice or video reply has its voice or image to make first.
        if (kind === 'text' && !deltas.sent) deltas.discard();
        else deltas.flush();
        const responseId = responseIdFor(m.messageId);
        const voice = kind === 'audio' || kind === 'video' ? await this.speak(event, m.messageId, answer, responseId, reply.text, signal, deadline) : undefined;
        const image = kind === 'video' ? await this.image(event, responseId, reply.text, request, signal, deadline, heard?.keyframe) : undefined;
        const transcript = heard?.transcript?.text ?? '';
        const processingMs = this.deps.steady() - started.steady;
        // Taken away (shutdown, or the partition moved to another worker): whoever redoes it answers.
        signal.throwIfAborted();
        const appended = await this.commit(await source, m.messageId, gen, this.event(event, {
          $case: 'responseProduced',
          responseProduced: { messageId: responseId, inReplyTo: m.messageId, text: reply.text, voice, image, processingMs, workerId: this.deps.workerId, model: reply.model, transcript },
        }), signal);
        if (!appended) return 'superseded';
        this.deps.metrics.processingSeconds.observe({ kind }, processingMs / 1000);
        await this.delivered(event, m.messageId, appended, signal);
        return 'answered';
      } catch (err) {
        if (signal.aborted) throw err; // left uncommitted: redone after a restart or by the partition's new owner
        if (!(await ours())) return 'not ours';
        // Once a word has gone to the client, a retry would send the opening again: the failure is final then.
        const retryable = (err instanceof LlmError || err instanceof SpeechError) && err.retryable && attempt < attempts && !deltas.streamed;
        if (retryable) {
          this.deps.logger.warn({ err, messageId: m.messageId, attempt }, 'provider error; retrying');
          await sleep(backoffDelay(attempt, { baseMs: 200 }), signal);
          continue;
        }
        const { code, message, retryAfterMs } = this.failureOf(err, m.messageId);
        const transcript = heard?.transcript?.text ?? '';
        const appended = await this.commit(await source, m.messageId, gen, this.event(event, { $case: 'processingFailed', processingFailed: { inReplyTo: m.messageId, code, message, workerId: this.deps.workerId, transcript, retryAfterMs } }), signal);
        if (!appended) return 'superseded';
        await this.delivered(event, m.messageId, appended, signal);
        return 'failed';
      }
    }
  }

  /**
   * What the client is told when a message cannot be answered: the model's or
   * the speech engine's own verdict, with a hint when to try again when it may
   * pass; an engine still unreachable when the deadline passed is UNAVAILABLE
   * with that hint; anything else is a bug (INTERNAL, logged).
   */
  private failureOf(err: unknown, messageId: string): { code: string; message: string; retryAfterMs: number } {
    const retryAfterMs = this.deps.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS;
    // A model or speech engine that failed in a way that may pass (down, overloaded, rate-limited) was tried again
    // already: the client is told when to send again (retry_after_ms). Its verdict on the message itself is final.
    const after = (retryable: boolean) => (retryable ? retryAfterMs : 0);
    if (err instanceof LlmError) return { code: err.code, message: `the model could not answer: ${err.message}`, retryAfterMs: after(err.retryable) };
    if (err instanceof SpeechError) return { code: 'UNAVAILABLE', message: `could not listen to the message: ${err.message}`, retryAfterMs: after(err.retryable) };
    if (isTransient(err)) {
      this.deps.logger.warn({ err, messageId }, 'an engine stayed unreachable until the deadline; the message fails as UNAVAILABLE');
      return { code: 'UNAVAILABLE', message: 'the reply could not be produced: a service it needs stayed unreachable', retryAfterMs };
    }
    this.deps.logger.error({ err, messageId }, 'processing failed');
    return { code: 'INTERNAL', message: 'the reply could not be produced', retryAfterMs: 0 };
  }

  /**
   * Appends a reply or a failure, waiting out a full disk or an unreachable
   * log as long as it takes (see untilStored). An attempt that failed may
   * have been written all the same (Kafka killed between writing a request
   * and answering it): before the next, the log is asked whether it holds the
   * message's outcome now (outcomeInLog) and, if so, no second copy goes in;
   * what is returned then is the outcome at the position this worker's
   * consumer read it, or the read models give (issue 10, kafka-kill in CI:
   * one message with two replies in the log). `bytes` are the outcome as
   * recorded in the claims: the log stores those, not a second encoding.
   */
  private appendOutcome(source: LoggedEvent, messageId: string, outcome: Event, bytes: Uint8Array, signal: AbortSignal): Promise<Appended> {
    let failed = false; // an attempt failed that the log may have written
    // Told by the appender while at most half the budget is in processing (this message counted); busier, the
    // thread's own publish rides the link's batches, and saturate measured 3-5 % more capacity that way.
    const appendAndTell = this.budget.inProcessing * 2 <= this.deps.maxProcessing ? this.deps.appendAndTell : undefined;
    const update = appendAndTell && outcomeUpdate(outcome);
    const tell = update && { subject: clientSubject(source.event.clientId), update: encodeReplyUpdate(update) };
    return this.untilStored('reply', async (): Promise<Appended> => {
      if (failed) {
        // Found in the log: whoever wrote it could not say so, nor tell the gateway.
        const logged = await this.loggedOutcome(source, messageId, outcome, signal);
        if (logged) return { logged, told: false };
      }
      try {
        if (tell) return { logged: await appendAndTell(outcome, bytes, tell), told: true };
        return { logged: await this.deps.log.append(outcome, bytes), told: false };
      } catch (err) {
        failed ||= mayBeWritten(err);
        throw err;
      }
    }, signal);
  }

  /**
   * The outcome of `messageId` as the log holds it, or null if it does not.
   * Not knowing yet (neither this worker's reading nor the read models have
   * caught up) is a wait, never a "no": a "no" appends it again.
   */
  private async loggedOutcome(source: LoggedEvent, messageId: string, outcome: Event, signal: AbortSignal): Promise<LoggedEvent | null> {
    let inLog: boolean;
    try {
      inLog = await this.outcomeInLog(source, messageId, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      throw Object.assign(new Error(`whether the outcome of ${messageId} reached the log is not known yet: ${(err as Error).message}`), { kind: 'UNAVAILABLE' });
    }
    if (!inLog) return null;
    const at = this.outcomesInLog.get(messageId);
    if (at) return { ...at, event: outcome };
    // Known from the read models: the outcome's own document has its position.
    const p = outcome.payload;
    const doc = await this.deps.messages.get(p?.$case === 'responseProduced' ? p.responseProduced.messageId : failureIdFor(messageId));
    // The message's document says answered, its reply's is not written yet (one batch's documents go in parallel).
    if (!doc) throw Object.assign(new Error(`the outcome of ${messageId} is in the log, its position not yet in the read models`), { kind: 'UNAVAILABLE' });
    return { topic: source.topic, partition: source.partition, offset: doc.seq - 1, seq: doc.seq, event: outcome };
  }

  /**
   * Stores or fetches part of a reply (its event, its media). While the engine
   * cannot take it (a full disk, a refused connection, a timeout: see
   * isTransient), waits and tries again until `deadline` — for the reply's
   * own event as long as it takes: the reply is made and maybe streamed
   * already, so it is neither made again, nor lost, nor turned into an error.
   * Gives up at once when the message is taken away (`signal`).
   */
  private untilStored<T>(what: string, store: () => Promise<T>, signal: AbortSignal, deadline = Infinity): Promise<T> {
    return retry(store, {
      baseMs: 20,
      maxMs: OUTCOME_RETRY_MAX_MS,
      deadline,
      signal,
      clock: this.deps.steady,
      retryable: isTransient,
      onRetry: ({ err, attempt }) => {
        if (attempt > 1) return;
        this.deps.metrics.storageWaits.inc();
        // A full disk was reported once by the log itself; an engine's trouble is reported here.
        this.deps.logger[err instanceof StorageUnavailableError ? 'debug' : 'warn']({ err: err instanceof Error ? err.message : String(err) }, `the ${what} cannot be stored or read yet; retrying`);
      },
    });
  }

  /** The uploaded voice or video, heard (and seen) by the speech engines. */
  private async listen(m: MessageReceived, kind: 'audio' | 'video', signal: AbortSignal, deadline: number, upload?: Buffer): Promise<Heard> {
    const ref = m.content?.$case === 'media' ? m.content.media : undefined;
    const bytes = upload ?? (ref ? (await this.untilStored('upload', () => this.deps.media.get(ref.key), signal, deadline))?.bytes : undefined);
    if (!ref || !bytes) return { hearingNote: 'the upload is missing from the media store' };
    return hear(this.deps.speech ?? {}, kind, bytes, ref.mimeType, signal, (engine, s) => this.deps.metrics.transcriptionSeconds.observe({ engine }, s));
  }

  /**
   * The reply spoken, whole, by the synthesizer: each chunk goes to the client
   * as a playable WAV as soon as it is made (VoiceChunk), then the whole voice
   * is stored for BotResponse.voice. No synthesizer: no voice (never tones).
   * A synthesizer that fails leaves the reply without voice rather than
   * failing a reply the client has already seen streaming.
   */
  private async speak(event: Event, inReplyTo: string, attempt: string, responseId: string, text: string, signal: AbortSignal, deadline: number): Promise<MediaRef | undefined> {
    const synth = this.deps.speech?.synthesizer;
    if (!synth || !text.trim()) return undefined;
    const subject = clientSubject(event.clientId);
    const started = performance.now();
    const pieces: Buffer[] = [];
    let sampleRate = 0;
    let index = 0;
    let pending: Buffer[] = [];
    // Network reads cut the audio anywhere: chunks go out once they hold MIN_VOICE_CHUNK_MS (a Piper sentence does).
    const send = async () => {
      const pcm = Buffer.concat(pending);
      pending = [];
      if (pcm.length === 0) return;
      const wav = wavFromPcm16(pcm, sampleRate);
      await this.publish(subject, { inReplyTo, attempt, update: { $case: 'voiceChunk', voiceChunk: { index: index++, wav, durationMs: Math.round((pcm.length / 2 / sampleRate) * 1000), last: false } } });
    };
    try {
      for await (const chunk of synth.synthesize(text, signal)) {
        if (pieces.length === 0) this.deps.metrics.synthesisSeconds.observe({ engine: synth.name, stage: 'first' }, (performance.now() - started) / 1000);
        pieces.push(chunk.pcm);
        pending.push(chunk.pcm);
        sampleRate = chunk.sampleRate;
        if (pending.reduce((n, b) => n + b.length, 0) >= (sampleRate * 2 * MIN_VOICE_CHUNK_MS) / 1000) await send();
      }
      await send();
    } catch (err) {
      if (signal.aborted) throw err;
      this.deps.logger.warn({ err, messageId: inReplyTo, engine: synth.name }, 'speech synthesis failed; the reply goes out without voice');
      pieces.length = 0;
    }
    await this.publish(subject, { inReplyTo, attempt, update: { $case: 'voiceChunk', voiceChunk: { index, wav: Buffer.alloc(0), durationMs: 0, last: true } } });
    if (pieces.length === 0) return undefined;
    this.deps.metrics.synthesisSeconds.observe({ engine: synth.name, stage: 'all' }, (performance.now() - started) / 1000);
    const pcm = Buffer.concat(pieces);
    const wav = wavFromPcm16(pcm, sampleRate);
    const key = replyMediaKey(event.conversationId, responseId, 'audio/wav');
    await this.untilStored('voice reply', () => this.deps.media.put(key, wav, 'audio/wav'), signal, deadline);
    return { kind: MediaKind.MEDIA_KIND_VOICE, key, mimeType: 'audio/wav', sizeBytes: wav.length, sha256: '', durationMs: Math.round((pcm.length / 2 / sampleRate) * 1000) };
  }

  /** The reply and the local time drawn over the video's keyframe (a seeded pattern when there is none). */
  private async image(event: Event, responseId: string, text: string, request: LlmRequest, signal: AbortSignal, deadline: number, keyframe?: Heard['keyframe']): Promise<MediaRef> {
    const img = await this.deps.renderer.image({ title: 'ChatFlow', lines: [formatLocalTime(request.now, request.timeZone), text], seed: responseId, background: keyframe });
    const key = replyMediaKey(event.conversationId, responseId, 'image/png');
    await this.untilStored('image reply', () => this.deps.media.put(key, img.bytes, img.mimeType), signal, deadline);
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

  private event(source: Event, payload: Event['payload']): Event {
    return { eventId: this.deps.newId(), time: new Date(this.deps.clock()), clientId: source.clientId, conversationId: source.conversationId, sessionId: source.sessionId, payload };
  }

  private async publish(subject: string, update: ReplyUpdate): Promise<void> {
    try {
      await this.deps.bus.publish(subject, encodeReplyUpdate(update));
    } catch (err) {
      // Delivery is best effort: the reply is in the log and the client resumes from history.
      this.deps.logger.warn({ err }, 'could not publish to the bus');
    }
  }

  /**
   * Stops taking messages; those in processing have until `graceOver` (by
   * default `graceMs` from now) to finish, and are then stopped, uncommitted:
   * the next worker to take their partitions answers them (this one after a
   * restart, or another). A worker in a thread is given its host's `graceOver`
   * (threads/worker-host.ts), timed on the loop that times the deadline.
   */
  async stop(graceMs: number, graceOver: Promise<unknown> = new Promise((r) => setTimeout(r, graceMs).unref())): Promise<void> {
    clearInterval(this.lagTimer);
    // Nothing begun early is adopted from here on: the log hands those messages out again after a restart.
    this.stopping = true;
    for (const id of [...this.early.keys()]) this.callOff(id, 'the worker is stopping');
    const stopping = this.consumer?.stop(graceMs);
    void graceOver.then(() => {
      const cut = this.budget.inProcessing;
      if (cut > 0) this.deps.logger.warn({ graceMs, processing: cut }, `grace over: ${cut} message(s) in processing stopped; the next worker to take their partitions answers them (this one after a restart)`);
      this.abort.abort();
    });
    await stopping;
    // Beating until here keeps the messages this worker finishes during its grace its own.
    clearInterval(this.beatTimer);
    clearInterval(this.pruneTimer);
  }

  stats() {
    return { processing: this.budget.inProcessing, peak: this.budget.peak, waiting: this.consumer?.lag() ?? 0 };
  }
}

/** How long work begun on a message before its append waits for the log to hand the message out before it is called off (WorkerDeps.earlyAdoptMs). */
const EARLY_ADOPT_MS = 5_000;

/** A promise and its resolve, for a value given later (Promise.withResolvers, Node 22). */
interface Resolvable<T> {
  promise: Promise<T>;
  resolve(value: T | PromiseLike<T>): void;
}

function resolvable<T>(): Resolvable<T> {
  let resolve!: Resolvable<T>['resolve'];
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** How many messages may be in processing for one more to be begun early (Worker.begin): under half the budget. */
export function earlyBudget(maxProcessing: number): number {
  return Math.floor(maxProcessing / 2);
}

/** Longest wait between two tries of a reply's store while its engine cannot take it. */
const OUTCOME_RETRY_MAX_MS = 500;
const DEFAULT_ENGINE_RETRY_DEADLINE_MS = 60_000;
const DEFAULT_RETRY_AFTER_MS = 2_000;
const RECENTLY_DONE = 10_000;
/** Reply claims are pruned this often at most (each prune scans them on FerretDB). */
const PRUNE_EVERY_MS = 60_000;
/** How often a message held by another live worker is looked at again. */
const BUSY_POLL_MS = 100;
/** Longest wait for the read models before an unconfirmed outcome is checked (the event is retried past it). */
const CONFIRM_SETTLE_MS = 10_000;
const LOG_READ_POLL_MS = 20;
/** Smallest voice chunk sent to the client (ms of audio), except the last. */
const MIN_VOICE_CHUNK_MS = 300;

/**
 * A message handed out this soon after it was appended is fresh from the log:
 * no other worker can have had it yet but for a partition that moved at that
 * very moment, or a resend appended twice (see Worker.process). Handed out
 * again later (a restart, a rebalance: seconds at least), it is older.
 */
const FRESH_MS = 1_000;

/**
 * The signal of work begun before its claim was decided: aborted when the
 * claim turns out not to be this worker's, or fails, or when `signal` is.
 * `done` stops listening to `signal`.
 */
function calledOff(signal: AbortSignal, gen: Promise<number | null>): { signal: AbortSignal; done: () => void } {
  const off = new AbortController();
  const abort = () => off.abort(signal.reason);
  signal.addEventListener('abort', abort, { once: true });
  gen.then(
    (g) => g === null && off.abort(new Error('the message is not this worker\'s to answer')),
    (err: unknown) => off.abort(err),
  );
  return { signal: off.signal, done: () => signal.removeEventListener('abort', abort) };
}

/** Per-partition share of the processing budget (at least 1, never above the budget in total). */
export function concurrencyPerPartition(maxProcessing: number, partitions: number): number {
  return Math.max(1, Math.floor(maxProcessing / partitions));
}

function inputKind(m: MessageReceived): InputKind {
  if (m.content?.$case !== 'media') return 'text';
  const name = mediaKindName(m.content.media.kind);
  return name === 'audio' || name === 'video' ? name : 'image';
}
