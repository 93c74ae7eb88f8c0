import { Event } from '../gen/chatflow/v1/events';
import type { ConsumeOptions, Consumer, EventLog, LoggedEvent, Topic } from '../eventlog/port';
import { outcomeOf, TOPICS, topicOf } from '../eventlog/port';
import { encode } from '../encode';
import type { Telling } from '../worker/worker';
import type { Channel } from './channel';

/** What the thread needs to know of the log before its first call. */
export interface LogShape {
  partitions: Record<Topic, number>;
  hasEndOffset: boolean;
  /** The log takes events as bytes (EventLog.appendEncoded): the thread encodes, the event loop only stores. */
  appendsEncoded: boolean;
  /** The event loop tells an outcome's gateway once it appended it (RemoteEventLog.appendOutcome). */
  tellsOutcomes: boolean;
}

type ConsumeSpec = Pick<ConsumeOptions, 'group' | 'topics' | 'fromBeginning' | 'concurrencyPerPartition'> & { ownOutcomesOf?: string };


/**
 * The event loop's side: the thread's appends and consumers run on `log`, the
 * one this process opened. A consumer's handler is the thread's: each event
 * goes over the channel and counts as done (committed in order, retried if it
 * failed) when the thread's handler settles. The consumer's signal is
 * mirrored by number: one per signal, not per event. With `tell`, the update
 * of an outcome the thread appends with appendOutcome is handed to it once
 * the log has the outcome, here, before the thread hears where it landed.
 */
export function serveEventLog(ch: Channel, log: EventLog, tell?: (subject: string, update: Uint8Array, at: Omit<LoggedEvent, 'event'>) => void): Map<number, Consumer> {
  const consumers = new Map<number, Consumer>();
  const signalIds = new WeakMap<AbortSignal, number>();
  let nextSignal = 1;
  const signalId = (cid: number, signal: AbortSignal): number => {
    let id = signalIds.get(signal);
    if (id === undefined) {
      const mine = (id = nextSignal++);
      signalIds.set(signal, id);
      const abort = () => ch.note('consumer.abort', cid, mine);
      if (signal.aborted) queueMicrotask(abort);
      else signal.addEventListener('abort', abort, { once: true });
    }
    return id;
  };
  // The thread has the event: only where it landed goes back.
  ch.on('log.append', (event: Event): Promise<Where> => log.append(event).then(whereOf));
  ch.on('log.appendEncoded', (topic: Topic, payload: Uint8Array): Promise<Where> => log.appendEncoded!(topic, payload).then(whereOf));
  if (tell && log.appendEncoded) {
    ch.on('log.appendOutcome', async (topic: Topic, payload: Uint8Array, subject: string, update: Uint8Array): Promise<Where> => {
      const at = await log.appendEncoded!(topic, payload);
      tell(subject, update, at);
      return whereOf(at);
    });
  }
  ch.on('log.endOffset', (topic: Topic, partition: number) => log.endOffset!(topic, partition));
  ch.on('log.consume', async (cid: number, { ownOutcomesOf, ...spec }: ConsumeSpec) => {
    const consumer = await log.consume({
      ...spec,
      bytes: true,
      handle: (e, signal) => {
        const answers = ownOutcomesOf === undefined ? undefined : ownOutcomeOf(e, ownOutcomesOf);
        if (answers === undefined) return ch.call<void>('consumer.handle', cid, onTheWire(e), signalId(cid, signal));
        // Done here: the thread is told in the event's place, before any later event of the channel.
        ch.note('consumer.ownOutcome', cid, [e.topic, e.partition, e.offset, e.seq] satisfies Position, answers);
        return Promise.resolve();
      },
      onProblem: (reason) => ch.note('consumer.problem', cid, reason),
    });
    consumers.set(cid, consumer);
  });
  ch.on('consumer.caughtUp', (cid: number) => consumers.get(cid)!.caughtUp());
  ch.on('consumer.lag', (cid: number) => consumers.get(cid)?.lag() ?? 0);
  ch.on('consumer.stop', async (cid: number, graceMs?: number) => {
    await consumers.get(cid)?.stop(graceMs);
    consumers.delete(cid);
  });
  return consumers;
}

/**
 * An event as it crosses, a tuple (see Channel): its stored bytes when the
 * log has them (copied out of the buffer they may share: a view is cloned
 * with its whole buffer), the decoded object otherwise.
 */
type WireEvent = [topic: Topic, partition: number, offset: number, seq: number, content: Uint8Array | Event];

function onTheWire(e: LoggedEvent): WireEvent {
  const { bytes } = e;
  if (!bytes) return [e.topic, e.partition, e.offset, e.seq, e.event];
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
  return [e.topic, e.partition, e.offset, e.seq, own];
}

/** Which message `e` answers if it is an outcome `workerId` appended (see ConsumeOptions.ownOutcomes). */
function ownOutcomeOf(e: LoggedEvent, workerId: string): string | undefined {
  const outcome = outcomeOf(e.event);
  return outcome?.workerId === workerId ? outcome.answers : undefined;
}

type Position = [topic: Topic, partition: number, offset: number, seq: number];

/** Where an append landed, as it crosses back (its topic is the caller's). */
type Where = [partition: number, offset: number, seq: number];

function whereOf(e: Omit<LoggedEvent, 'event'>): Where {
  return [e.partition, e.offset, e.seq];
}

function offTheWire([topic, partition, offset, seq, content]: WireEvent): LoggedEvent {
  if (content instanceof Uint8Array) return { topic, partition, offset, seq, event: Event.decode(content) };
  return { topic, partition, offset, seq, event: content };
}

/** `tells`: serveEventLog was given a `tell`. */
export function logShape(log: EventLog, tells = false): LogShape {
  const partitions = Object.fromEntries(TOPICS.map((t) => [t, log.partitions(t)])) as Record<Topic, number>;
  const appendsEncoded = typeof log.appendEncoded === 'function';
  return { partitions, hasEndOffset: typeof log.endOffset === 'function', appendsEncoded, tellsOutcomes: tells && appendsEncoded };
}

/**
 * The thread's side: an EventLog whose calls run on the event loop's log (see
 * serveEventLog). For a log whose partitions never move between members
 * (the embedded log: one member per group): `handedOut` is counted here from
 * the events this thread has received, so every event below it has reached
 * this thread's handler, whatever is still on its way.
 */
export class RemoteEventLog implements EventLog {
  private readonly consumers = new Map<number, RemoteConsumer>();
  private nextConsumer = 1;
  readonly endOffset?: (topic: Topic, partition: number) => Promise<number>;

  constructor(private readonly ch: Channel, private readonly shape: LogShape) {
    if (shape.hasEndOffset) this.endOffset = (topic, partition) => ch.call<number>('log.endOffset', topic, partition);
    ch.on('consumer.handle', (cid: number, e: WireEvent, signal: number) => this.consumer(cid).handle(offTheWire(e), signal));
    ch.on('consumer.ownOutcome', (cid: number, [topic, partition, offset, seq]: Position, answers: string) => this.consumers.get(cid)?.ownOutcome(answers, { topic, partition, offset, seq }));
    ch.on('consumer.abort', (cid: number, signal: number) => this.consumers.get(cid)?.abort(signal));
    ch.on('consumer.problem', (cid: number, reason: string | undefined) => this.consumers.get(cid)?.problem(reason));
  }

  partitions(topic: Topic): number {
    return this.shape.partitions[topic];
  }

  /**
   * Encoded here when the log takes bytes: an encode on this thread and a
   * copy of the bytes cost the event loop less than cloning the object over
   * and encoding it there (saturate's profile: ~1.5 % of the loop).
   */
  async append(event: Event, encoded?: Uint8Array): Promise<LoggedEvent> {
    const topic = topicOf(event);
    const [partition, offset, seq] = this.shape.appendsEncoded
      ? await this.ch.call<Where>('log.appendEncoded', topic, encoded ?? encode(Event, event))
      : await this.ch.call<Where>('log.append', event);
    return { topic, partition, offset, seq, event };
  }

  /**
   * Appends an outcome (ResponseProduced, ProcessingFailed) whose update the
   * event loop publishes as soon as the log has it, before this thread hears
   * back (WorkerDeps.appendAndTell). Only where `tellsOutcomes`.
   */
  async appendOutcome(event: Event, encoded: Uint8Array, tell: Telling): Promise<LoggedEvent> {
    if (!this.shape.tellsOutcomes) throw new Error('the event loop does not tell outcomes for this log');
    const topic = topicOf(event);
    const [partition, offset, seq] = await this.ch.call<Where>('log.appendOutcome', topic, encoded, tell.subject, tell.update);
    return { topic, partition, offset, seq, event };
  }

  get tellsOutcomes(): boolean {
    return this.shape.tellsOutcomes;
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    const cid = this.nextConsumer++;
    const consumer = new RemoteConsumer(this.ch, cid, options);
    this.consumers.set(cid, consumer);
    // Named, not "all but the callbacks": a function among them cannot cross to the event loop (a DataCloneError
    // ended the thread when ConsumeOptions gained onAssigned). The partitions of the embedded log never move.
    const { group, topics, fromBeginning, concurrencyPerPartition, ownOutcomes } = options;
    const spec: ConsumeSpec = { group, topics, fromBeginning, concurrencyPerPartition, ownOutcomesOf: ownOutcomes?.workerId };
    try {
      await this.ch.call('log.consume', cid, spec);
    } catch (err) {
      this.consumers.delete(cid);
      throw err;
    }
    return consumer;
  }

  /** The log is the event loop's: it closes it. */
  async close(): Promise<void> {}

  private consumer(cid: number): RemoteConsumer {
    const c = this.consumers.get(cid);
    if (!c) throw new Error(`no consumer ${cid} in this thread`);
    return c;
  }
}

class RemoteConsumer implements Consumer {
  private readonly signals = new Map<number, AbortController>();
  private readonly handed = new Map<string, number>();
  private running = 0;
  private lastLag = 0;

  constructor(private readonly ch: Channel, private readonly cid: number, private readonly options: ConsumeOptions) {}

  async handle(e: LoggedEvent, signal: number): Promise<void> {
    this.handedUpTo(e);
    let ctl = this.signals.get(signal);
    if (!ctl) this.signals.set(signal, (ctl = new AbortController()));
    this.running++;
    try {
      await this.options.handle(e, ctl.signal);
    } finally {
      this.running--;
    }
  }

  /** One of ownOutcomes' outcomes, in its place among the events (see ConsumeOptions.ownOutcomes). */
  ownOutcome(answers: string, at: Omit<LoggedEvent, 'event'>): void {
    this.handedUpTo(at);
    this.options.ownOutcomes?.seen(answers, at);
  }

  private handedUpTo(e: Omit<LoggedEvent, 'event'>): void {
    const key = `${e.topic}/${e.partition}`;
    if ((this.handed.get(key) ?? 0) <= e.offset) this.handed.set(key, e.offset + 1);
  }

  abort(signal: number): void {
    let ctl = this.signals.get(signal);
    if (!ctl) this.signals.set(signal, (ctl = new AbortController()));
    ctl.abort(new Error('event taken away from this consumer'));
  }

  problem(reason: string | undefined): void {
    this.options.onProblem?.(reason);
  }

  caughtUp(): Promise<void> {
    return this.ch.call('consumer.caughtUp', this.cid);
  }

  /** lag() is synchronous: each call returns the count the previous call fetched from the event loop. */
  lag(): number {
    void this.ch.call<number>('consumer.lag', this.cid).then((n) => (this.lastLag = n), () => undefined);
    return this.lastLag;
  }

  inFlight(): number {
    return this.running;
  }

  handedOut(topic: Topic, partition: number): number | undefined {
    return this.handed.get(`${topic}/${partition}`);
  }

  stop(graceMs?: number): Promise<void> {
    return this.ch.call('consumer.stop', this.cid, graceMs);
  }
}
