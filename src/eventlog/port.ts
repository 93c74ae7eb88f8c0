import type { Event } from '../gen/chatflow/v1/events';

/** Topics of the log. Sessions carry connection facts, conversations carry messages and replies. */
export type Topic = 'sessions' | 'conversations';
export const TOPICS: readonly Topic[] = ['sessions', 'conversations'];

export type EventCase = NonNullable<Event['payload']>['$case'];

/** An outcome (ResponseProduced or ProcessingFailed): the message it answers and the worker that made it; undefined for any other event. */
export function outcomeOf(event: Event): { answers: string; workerId: string } | undefined {
  const p = event.payload;
  if (p?.$case === 'responseProduced') return { answers: p.responseProduced.inReplyTo, workerId: p.responseProduced.workerId };
  if (p?.$case === 'processingFailed') return { answers: p.processingFailed.inReplyTo, workerId: p.processingFailed.workerId };
  return undefined;
}

/** The topic an event belongs to, derived from its payload. */
export function topicOf(event: Event): Topic {
  const kind = event.payload?.$case;
  switch (kind) {
    case 'clientConnected':
    case 'clientDisconnected':
      return 'sessions';
    case 'messageReceived':
    case 'responseProduced':
    case 'processingFailed':
      return 'conversations';
    case undefined:
      throw new Error('event without payload');
    default: {
      const never: never = kind;
      throw new Error(`unknown event ${String(never)}`);
    }
  }
}

/** An event as stored: where it sits in the log. */
export interface LoggedEvent {
  readonly event: Event;
  readonly topic: Topic;
  readonly partition: number;
  /** Offset within (topic, partition). */
  readonly offset: number;
  /**
   * Sequence number given to clients (Accepted.seq, BotResponse.seq, x-resume-after).
   * Strictly increasing among the events of one conversation.
   */
  readonly seq: number;
  /**
   * The event as the log stores it (protobuf), to consumers that ask for it
   * (ConsumeOptions.bytes) of a log that has it at hand (the embedded log).
   * A view: it may share a larger buffer.
   */
  readonly bytes?: Uint8Array;
}

export interface ConsumeOptions {
  /** Consumer group: committed offsets are kept per group. */
  readonly group: string;
  readonly topics: readonly Topic[];
  /** Start from the beginning of the log, ignoring committed offsets (read-model rebuild). */
  readonly fromBeginning?: boolean;
  /**
   * Also hand each event's stored bytes (LoggedEvent.bytes) where the log has
   * them: passed on to another thread, they cost a copy instead of a clone of
   * the decoded object.
   */
  readonly bytes?: boolean;
  /** Most handlers in flight per partition; events beyond wait in the log (backpressure). */
  readonly concurrencyPerPartition: number;
  /**
   * Handles one event. The offset is committed only once this event and every
   * earlier one of its partition are done. A rejection is retried with backoff
   * (the event is never skipped). `signal` aborts when the event is taken away
   * from this consumer (its partition moved to another member, or the consumer
   * stopped past its grace period): the work will be redone elsewhere, so the
   * handler should stop without side effects.
   */
  handle(event: LoggedEvent, signal: AbortSignal): Promise<void>;
  /**
   * The outcomes (ResponseProduced, ProcessingFailed) the worker `workerId`
   * appended itself. A log that can tells `seen` only which message each
   * answers and where it landed, in its place among the events, instead of
   * handing it to `handle`: the embedded log's link to the worker thread then
   * neither copies nor decodes it (a reply's text crossed back to the thread
   * that wrote it). A log that cannot hands them to `handle` like any event.
   */
  readonly ownOutcomes?: { readonly workerId: string; seen(answers: string, at: Omit<LoggedEvent, 'event'>): void };
  /**
   * Told (with a reason in plain words) when this member cannot be trusted with
   * its partitions, e.g. Kafka dropped it from the group, and told `undefined`
   * once it can again. The process reports itself unhealthy meanwhile.
   */
  onProblem?(reason: string | undefined): void;
  /**
   * Told the partitions of `topic` this member holds each time they change
   * (a rebalance; none once it is out of the group), by a log that assigns
   * partitions to the members of a group (Kafka).
   */
  onAssigned?(topic: Topic, partitions: readonly number[]): void;
}

export interface Consumer {
  /** Resolves once every event that was in the log when called has been handled. */
  caughtUp(): Promise<void>;
  /** Events in the log not yet handed to the handler. */
  lag(): number;
  /** Handlers currently running. */
  inFlight(): number;
  /**
   * One past the last offset of (topic, partition) this member has handed to
   * its handler since it was last assigned the partition (undefined: not
   * assigned). Every event below it has been given to `handle`.
   */
  handedOut?(topic: Topic, partition: number): number | undefined;
  /**
   * Keeps one of the handler places of `event`'s partition for it before the
   * log has it (work begun early, see Worker.begin), so that work counts in
   * concurrencyPerPartition like a handler's: undefined when this member does
   * not hold that partition now or its places are all taken. The place
   * becomes the event's handler's when the event is handed out; the returned
   * function gives it back if it is still kept (the work was called off).
   * Logs whose concurrency only one consumer shares (the embedded log) leave
   * it out: the handler's own budget counts such work there.
   */
  reserve?(event: Event): (() => void) | undefined;
  /** Stops fetching, waits for running handlers (up to graceMs), commits what is done. */
  stop(graceMs?: number): Promise<void>;
}

export interface EventLog {
  /** Partitions of a topic: the unit of order and of consumer parallelism. */
  partitions(topic: Topic): number;
  /**
   * Appends one event; resolves only when the event is durable. A rejection
   * for which mayBeWritten(err) is true may have been written all the same
   * (Kafka: the request reached a broker that died before answering).
   * `encoded`: the event's bytes (`encode(Event, event)`, not changed after)
   * when the caller has made them already (a worker's outcome, recorded in
   * its reply claims first), so the event is not encoded twice; trusted, not
   * checked against the event.
   */
  append(event: Event, encoded?: Uint8Array): Promise<LoggedEvent>;
  /**
   * Appends an event its caller encoded already (`encode(Event, event)`, a
   * buffer of its own) to `topic` (topicOf(event)), as append does: for a
   * caller in another thread, which then sends bytes, not the object to be
   * cloned and encoded on this one. Logs that store the bytes as given have
   * it (the embedded log). The bytes are trusted: they are not decoded here.
   */
  appendEncoded?(topic: Topic, payload: Uint8Array): Promise<Omit<LoggedEvent, 'event'>>;
  consume(options: ConsumeOptions): Promise<Consumer>;
  /** The partition of `topic` a conversation's events go to, known before they are appended, by a log that picks it by key (Kafka). */
  partitionOf?(topic: Topic, conversationId: string): number;
  /** One past the last offset of (topic, partition) now: where the next append to it will land. */
  endOffset?(topic: Topic, partition: number): Promise<number>;
  /**
   * Resolves once consumer group `group` (possibly in another process) has
   * handled every event `topics` held when called (true), or `timeoutMs`
   * passed first (false): read-your-writes for a process that reads models
   * another process projects. Logs whose groups all live in this process (the
   * embedded log) leave it out.
   */
  groupCaughtUp?(group: string, topics: readonly Topic[], timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Marks an append's failure as one the log may have written all the same (see EventLog.append). */
export function markMayBeWritten<E extends Error>(err: E): E {
  (err as E & { appendMayBeWritten?: boolean }).appendMayBeWritten = true;
  return err;
}

/** Whether a failed append may have been written all the same: a retry could append it twice. */
export function mayBeWritten(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { appendMayBeWritten?: unknown }).appendMayBeWritten === true;
}
