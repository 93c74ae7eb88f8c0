import { Kafka, logLevel, Partitioners, type Admin, type Consumer as KafkaConsumer, type EachBatchPayload, type Producer, type LogEntry } from 'kafkajs';
import type { Logger } from 'pino';
import { Event } from '../gen/chatflow/v1/events';
import { asBuffer, encodeToBuffer } from '../encode';
import { fnv1a } from '../domain/fnv1a';
import { committableOf, complete, initialOffsets, track, type OffsetState } from '../domain/offsets';
import { orLate } from '../resilience/late';
import { retry, retryWithBackoff } from '../resilience/retry';
import { isTransient } from '../resilience/transient';
import { GroupProgress, type GroupOffsets } from './group-progress';
import { TOPICS, markMayBeWritten, topicOf, type ConsumeOptions, type Consumer, type EventLog, type LoggedEvent, type Topic } from './port';

export interface KafkaEventLogOptions {
  brokers: readonly string[];
  /** Kafka client id (shows in broker logs). */
  clientId: string;
  /** Prefix of topic and consumer-group names, so several deployments can share a cluster. */
  prefix: string;
  /** Partitions each topic is created with (an existing topic keeps its own). */
  partitions: number;
  logger: Logger;
  /** Start-up called off (the process stopped while Kafka is away): open gives up at once with its reason. */
  signal?: AbortSignal;
}

const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 5_000;
const COMMIT_INTERVAL_MS = 100;
/** Commit errors that mean the group no longer counts this member (kafkajs error types). */
const MEMBERSHIP_LOST = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID']);
/** Longest a restarted consumer may take to rejoin its group before it is torn down and restarted again. */
const REJOIN_TIMEOUT_MS = 30_000;
/** Largest number of events sent in one produce request. */
const MAX_BATCH = 2_000;

interface PendingAppend {
  event: Event;
  topic: Topic;
  partition: number;
  value: Buffer;
  resolve(e: LoggedEvent): void;
  reject(err: Error): void;
}

/**
 * The event log on Apache Kafka. Appends go through one idempotent producer
 * (acks=all); appends made while a request is in flight are sent together as
 * the next request, so a busy gateway pays one round trip per batch, not per
 * message. An append resolves only once the broker acknowledged it.
 *
 * Events are keyed by conversation: a conversation lives in one partition, so
 * its events keep their order and its seq (offset + 1) only grows.
 */
export class KafkaEventLog implements EventLog {
  private readonly queue: PendingAppend[] = [];
  private sending = false;
  private closed = false;
  /** False after renewProducer until the new producer has connected (connectProducer). */
  private producerConnected = true;
  private readonly consumers = new Set<KafkaLogConsumer>();
  /** Who waits for which consumer group to reach the log's end (groupCaughtUp), one poll per group. */
  private readonly progress = new Map<string, GroupProgress>();
  /** Lists collecting the appends started while a caughtUp() reads the log's end. */
  private readonly watchers = new Set<Promise<LoggedEvent>[]>();

  private constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    private producer: Producer,
    /** A fresh idempotent producer (see renewProducer). */
    private readonly newProducer: () => Producer,
    private readonly opts: KafkaEventLogOptions,
    private readonly partitionCounts: ReadonlyMap<Topic, number>,
  ) {}

  /** Connects, creates the topics if missing, and retries with backoff while Kafka is unreachable. */
  static async open(opts: KafkaEventLogOptions): Promise<KafkaEventLog> {
    const logger = opts.logger.child({ engine: 'kafka' });
    const kafka = new Kafka({
      clientId: opts.clientId,
      brokers: [...opts.brokers],
      connectionTimeout: 3_000,
      retry: { initialRetryTime: 200, retries: 8, maxRetryTime: 5_000 },
      logLevel: logLevel.WARN,
      logCreator: () => (entry: LogEntry) => kafkaLog(logger, entry),
    });
    const admin = kafka.admin();
    // Partitions are chosen here (partitionFor), the partitioner only satisfies kafkajs.
    const newProducer = () => kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    const producer = newProducer();
    const { signal, ...kept } = opts;
    // Called off: disconnected at once, and again if an attempt still under way connects after.
    const disconnect = () => Promise.all([admin.disconnect(), producer.disconnect()]).catch(() => undefined);
    const counts = await retryWithBackoff(`Kafka at ${opts.brokers.join(',')}`, logger, async () => {
      await admin.connect();
      const names = TOPICS.map((t) => topicName(opts.prefix, t));
      const existing = new Set(await admin.listTopics());
      const missing = names.filter((n) => !existing.has(n));
      if (missing.length > 0) {
        await admin.createTopics({ topics: missing.map((topic) => ({ topic, numPartitions: opts.partitions })), waitForLeaders: true }).catch((err: unknown) => {
          // Another process created them between our list and create.
          if (!String((err as Error).message).includes('already exists')) throw err;
        });
        logger.info({ topics: missing, partitions: opts.partitions }, 'topics created');
      }
      // Leaders of new topics take a moment to be elected: offsets are readable once they are.
      await retryWithBackoff('partition leaders', logger, () => Promise.all(names.map((n) => admin.fetchTopicOffsets(n))), { attempts: 40, baseMs: 100, maxMs: 1_000 });
      const meta = await admin.fetchTopicMetadata({ topics: names });
      await producer.connect();
      return new Map(TOPICS.map((t) => [t, meta.topics.find((m) => m.name === topicName(opts.prefix, t))!.partitions.length]));
    }, { signal, discard: disconnect }).catch(async (err: unknown) => {
      if (signal?.aborted) await disconnect();
      throw err;
    });
    return new KafkaEventLog(kafka, admin, producer, newProducer, { ...kept, logger }, counts);
  }

  partitions(topic: Topic): number {
    return this.partitionCounts.get(topic)!;
  }

  partitionOf(topic: Topic, conversationId: string): number {
    return partitionFor(conversationId, this.partitions(topic));
  }

  append(event: Event, encoded?: Uint8Array): Promise<LoggedEvent> {
    if (this.closed) return Promise.reject(new Error('event log is closed: append refused'));
    const topic = topicOf(event);
    const partition = this.partitionOf(topic, event.conversationId);
    const value = encoded ? asBuffer(encoded) : encodeToBuffer(Event, event);
    const appended = new Promise<LoggedEvent>((resolve, reject) => {
      this.queue.push({ event, topic, partition, value, resolve, reject });
      if (!this.sending) void this.sendLoop();
    });
    for (const w of this.watchers) w.push(appended);
    return appended;
  }

  /** Runs `f` and returns, with its result, the appends this log started meanwhile. */
  async watchAppends<T>(f: () => Promise<T>): Promise<{ result: T; started: Promise<LoggedEvent>[] }> {
    const started: Promise<LoggedEvent>[] = [];
    this.watchers.add(started);
    try {
      return { result: await f(), started };
    } finally {
      this.watchers.delete(started);
    }
  }

  private async sendLoop(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        let sent = false;
        try {
          await this.connectProducer();
          sent = true;
          await this.sendBatch(batch);
        } catch (err) {
          // kafkajs already retried; the caller sees the failure (nothing was acknowledged to the client).
          this.opts.logger.error({ err, events: batch.length }, 'append to Kafka failed');
          const failure = err instanceof Error ? err : new Error(String(err));
          // Sent: the broker may have written the batch before it failed to answer (killed in between).
          if (sent) markMayBeWritten(failure);
          for (const p of batch) p.reject(failure);
          // A producer that could not connect sent nothing: its sequence numbers are as they were.
          if (sent) await this.renewProducer();
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /**
   * After a request failed for good. kafkajs has rolled the idempotent
   * sequence numbers back, but the broker may have written that request
   * before it died (killed between writing and answering): the next request
   * with those numbers is then refused as out of order, again and again (the
   * log takes no append until the process restarts), or — the same number of
   * events — taken for a retry of the written one and acknowledged with its
   * offsets, never written. A new producer (a new producer id) numbers
   * afresh. It connects with the next append (connectProducer): while the
   * broker is still down, each append fails as transient without a new
   * renewal, and the first one after it is back connects it.
   */
  private async renewProducer(): Promise<void> {
    const old = this.producer;
    this.producer = this.newProducer();
    this.producerConnected = false;
    await old.disconnect().catch(() => undefined);
  }

  /** Connects a renewed producer (kafkajs refuses a send on one never connected: "The producer is disconnected"). */
  private async connectProducer(): Promise<void> {
    if (this.producerConnected) return;
    await this.producer.connect();
    this.producerConnected = true;
  }

  private async sendBatch(batch: PendingAppend[]): Promise<void> {
    const byTopic = new Map<Topic, PendingAppend[]>();
    for (const p of batch) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p]);
    const result = await this.producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, list]) => ({
        topic: topicName(this.opts.prefix, topic),
        messages: list.map((p) => ({ key: p.event.conversationId, value: p.value, partition: p.partition })),
      })),
    });
    // Within one partition, a request's messages get consecutive offsets in request order.
    const base = new Map(result.map((r) => [`${r.topicName}/${r.partition}`, Number(r.baseOffset)]));
    for (const [topic, list] of byTopic) {
      const next = new Map<number, number>();
      for (const p of list) {
        const key = `${topicName(this.opts.prefix, topic)}/${p.partition}`;
        const offset = next.get(p.partition) ?? base.get(key);
        if (offset === undefined) {
          p.reject(new Error(`Kafka acknowledged no offset for ${key}`));
          continue;
        }
        next.set(p.partition, offset + 1);
        p.resolve({ event: p.event, topic, partition: p.partition, offset, seq: offset + 1 });
      }
    }
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    if (this.closed) throw new Error('event log is closed: consume refused');
    if (!Number.isInteger(options.concurrencyPerPartition) || options.concurrencyPerPartition < 1) {
      throw new Error('consume: concurrencyPerPartition must be a positive integer');
    }
    const partitions = options.topics.reduce((n, t) => n + this.partitions(t), 0);
    const consumer = new KafkaLogConsumer(this.kafka, this.admin, this.opts, options, (f) => this.watchAppends(f), partitions, (t, c) => this.partitionOf(t, c));
    this.consumers.add(consumer);
    consumer.onStopped = () => this.consumers.delete(consumer);
    await consumer.start();
    return consumer;
  }

  async endOffset(topic: Topic, partition: number): Promise<number> {
    const offsets = await this.admin.fetchTopicOffsets(topicName(this.opts.prefix, topic));
    const p = offsets.find((o) => o.partition === partition);
    if (!p) throw new Error(`Kafka has no partition ${partition} of ${topic}`);
    return Number(p.high);
  }

  async groupCaughtUp(group: string, topics: readonly Topic[], timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const names = topics.map((t) => topicName(this.opts.prefix, t));
    const targets = new Map<string, number>();
    for (const name of names) {
      for (const p of await this.admin.fetchTopicOffsets(name)) if (Number(p.high) > Number(p.low)) targets.set(`${name}/${p.partition}`, Number(p.high));
    }
    return this.progressOf(`${this.opts.prefix}${group}`, names).reach(targets, deadline);
  }

  /** One poll of a group's committed offsets for all who wait on it (see GroupProgress). */
  private progressOf(groupId: string, names: readonly string[]): GroupProgress {
    const key = `${groupId}\u0000${names.join(',')}`;
    let progress = this.progress.get(key);
    if (!progress) {
      const fetch = async (): Promise<GroupOffsets> => {
        const offsets = new Map<string, number>();
        for (const t of await this.admin.fetchOffsets({ groupId, topics: [...names] })) for (const p of t.partitions) offsets.set(`${t.topic}/${p.partition}`, Number(p.offset));
        return offsets;
      };
      progress = new GroupProgress(fetch, { pollMs: 25, clock: Date.now, closed: () => this.closed });
      this.progress.set(key, progress);
    }
    return progress;
  }

  /** Stops consumers, waits for appends in flight, disconnects. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.consumers].map((c) => c.stop()));
    while (this.sending || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5));
    this.closed = true;
    await this.producer.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }
}

/** One member of a consumer group. */
class KafkaLogConsumer implements Consumer {
  onStopped?: () => void;
  private readonly consumer: KafkaConsumer;
  private readonly groupId: string;
  /** Per "topic/partition": offsets handed out and not yet done. */
  private readonly trackers = new Map<string, OffsetState>();
  private readonly highWatermarks = new Map<string, number>();
  private readonly running = new Map<string, number>();
  /** Per "topic/partition": handler places kept for events not handed out yet, by event id (see reserve). */
  private readonly reserved = new Map<string, Set<string>>();
  /**
   * Per "topic/partition": events read (tracked, fetch position past them)
   * while its handlers were all busy, started in order as handlers finish.
   * At most concurrencyPerPartition of them: the partition is paused when
   * that many wait, and resumed when half of them have started, so the next
   * fetch overlaps their run. (kafkajs fetches a resumed partition only on its
   * next fetch, and with every partition paused it sleeps maxWaitTimeInMs
   * first: without events waiting, each refill of a full partition cost that
   * sleep.)
   */
  private readonly readAhead = new Map<string, LoggedEvent[]>();
  /** Partitions paused because their handlers are all busy and their read-ahead full. */
  private readonly pausedFull = new Set<string>();
  /**
   * Set when the group told this member it is no longer one of it (a commit
   * refused as UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION / FENCED_INSTANCE_ID):
   * its partitions may already be someone else's. Nothing runs or starts until
   * the member has joined again.
   */
  private fencedSince: number | null = null;
  /**
   * Set when kafkajs's consumer crashed (e.g. Kafka unreachable for longer
   * than its retries): the member is out of the group until it has joined
   * again (restartLater).
   */
  private downSince: number | null = null;
  private restartTimer?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private restarts = 0;
  private readonly aborts = new Map<string, AbortController>();
  private readonly handlers = new Set<Promise<void>>();
  private readonly committed = new Map<string, number>();
  private assigned = new Set<string>();
  private commitTimer?: NodeJS.Timeout;
  private stopping = false;
  private finished = false;
  private stopRun?: Promise<void>;

  constructor(
    kafka: Kafka,
    private readonly admin: Admin,
    private readonly log: KafkaEventLogOptions,
    private readonly opts: ConsumeOptions,
    private readonly watchAppends: KafkaEventLog['watchAppends'],
    /** Partitions of the consumed topics: one kafkajs fetch worker each. */
    private readonly partitionTotal: number,
    private readonly partitionOf: (topic: Topic, conversationId: string) => number,
  ) {
    this.groupId = `${log.prefix}${opts.group}`;
    this.consumer = kafka.consumer({
      groupId: this.groupId,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
      // After a crash this member restarts itself (restartLater), never kafkajs: one owner of the restart, with a watchdog.
      retry: { initialRetryTime: 200, retries: 10, maxRetryTime: 5_000, restartOnFailure: async () => false },
    });
  }

  async start(): Promise<void> {
    const topics = this.opts.topics.map((t) => topicName(this.log.prefix, t));
    if (this.opts.fromBeginning && [...(await this.groupOffsets()).values()].some((o) => o >= 0)) {
      // Read-model rebuild: forget what the group committed (the group must have no live member).
      for (const topic of topics) {
        await retryWithBackoff(`reset of group ${this.groupId}`, this.log.logger, () => this.admin.resetOffsets({ groupId: this.groupId, topic, earliest: true }), { attempts: 10 });
      }
    }
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      const outSince = this.fencedSince ?? this.downSince;
      if (outSince !== null) {
        this.log.logger.warn({ group: this.opts.group, outForMs: Date.now() - outSince }, 'rejoined the consumer group; work resumes');
        this.opts.onProblem?.(undefined);
      }
      this.fencedSince = null;
      this.downSince = null;
      this.restarts = 0;
      clearTimeout(this.watchdog);
      this.onAssignment(e.payload.memberAssignment);
    });
    this.consumer.on(this.consumer.events.CRASH, (e) => this.crashed(e.payload.error));
    await this.consumer.connect();
    await this.consumer.subscribe({ topics, fromBeginning: true });
    await this.run();
  }

  private run(): Promise<void> {
    return this.consumer.run({
      autoCommit: false,
      // One fetch worker per partition is all a member can use; kafkajs defaults to one in all.
      partitionsConsumedConcurrently: Math.max(1, this.partitionTotal),
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  /**
   * kafkajs's consumer crashed: it has disconnected and dropped its
   * partitions (and their pauses). Our bookkeeping of those partitions is
   * dropped with them (the next GROUP_JOIN assigns afresh, from the committed
   * offsets), the member says it is out until then, and restarts itself with
   * backoff, whatever the error: it must come back whenever the broker does.
   * (kafkajs's own restart, which it skips for errors it deems final, is off.)
   */
  private crashed(err: Error): void {
    if (this.stopping) return;
    this.downSince ??= Date.now();
    this.opts.onProblem?.(`Kafka consumer of group ${this.opts.group} is down (${err.message}); reconnecting`);
    this.log.logger.error({ err, group: this.opts.group, downForMs: Date.now() - this.downSince }, 'Kafka consumer crashed; its partitions\' work is abandoned until it has rejoined the group');
    this.abandonAll(new Error('Kafka consumer crashed'), false);
    this.restartLater();
  }

  /**
   * Connects and runs the consumer again after a backoff. A restart that
   * fails crashes again (CRASH, and back here); one that hangs (a broker that
   * accepts connections but does not answer yet) is cut by the watchdog.
   */
  private restartLater(): void {
    const delayMs = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(this.restarts++, 10));
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.stopping) return;
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => {
        if (this.stopping || this.downSince === null) return;
        this.log.logger.warn({ group: this.opts.group, waitedMs: REJOIN_TIMEOUT_MS }, 'Kafka consumer restarted but has not rejoined its group; reconnecting');
        void this.consumer.disconnect().catch(() => undefined).finally(() => this.restartLater());
      }, REJOIN_TIMEOUT_MS);
      this.watchdog.unref();
      void this.consumer.connect().then(() => this.run()).catch((err: unknown) => {
        this.log.logger.warn({ err, group: this.opts.group, attempt: this.restarts }, 'Kafka consumer restart failed; retrying');
        this.restartLater();
      });
    }, delayMs);
    this.restartTimer.unref();
  }

  /** A rebalance: work on partitions that moved away is abandoned (their new owner redoes it). */
  private onAssignment(assignment: Record<string, number[]>): void {
    const now = new Set<string>();
    for (const [topic, parts] of Object.entries(assignment)) for (const p of parts) now.add(`${topic}/${p}`);
    for (const key of this.assigned) {
      if (now.has(key)) continue;
      this.aborts.get(key)?.abort(new Error('partition reassigned'));
      this.aborts.delete(key);
      this.running.delete(key);
      this.reserved.delete(key);
      this.readAhead.delete(key);
      this.trackers.delete(key);
      this.committed.delete(key);
      // kafkajs keeps a partition's pause across assignments: clear it, or it would stay paused if it came back.
      if (this.pausedFull.delete(key)) this.resume([key]);
    }
    this.assigned = now;
    this.tellAssigned();
  }

  /** ConsumeOptions.onAssigned: the partitions held now, per consumed topic. */
  private tellAssigned(): void {
    const told = this.opts.onAssigned;
    if (!told) return;
    for (const topic of this.opts.topics) {
      const prefix = `${topicName(this.log.prefix, topic)}/`;
      told(topic, [...this.assigned].filter((k) => k.startsWith(prefix)).map((k) => Number(k.slice(prefix.length))).sort((a, b) => a - b));
    }
  }

  /** Abandons every partition's work: the group no longer counts this member, so others may own them now. */
  private fence(err: unknown): void {
    if (this.fencedSince !== null) return;
    this.fencedSince = Date.now();
    this.opts.onProblem?.(`dropped from Kafka consumer group ${this.opts.group}: its partitions' work was abandoned; rejoining`);
    this.log.logger.error({ err, group: this.opts.group, partitions: this.assigned.size, inFlight: this.handlers.size }, 'this member was dropped from its consumer group; abandoning all its work until it has rejoined');
    this.abandonAll(new Error('consumer group membership lost'), true);
  }

  /**
   * Forgets every partition: work in flight is aborted (uncommitted, so the
   * partition's next owner, maybe this member, redoes it), offsets and pauses
   * are dropped, and the next GROUP_JOIN assigns everything afresh.
   */
  private abandonAll(reason: Error, resumePaused: boolean): void {
    for (const a of this.aborts.values()) a.abort(reason);
    this.aborts.clear();
    this.running.clear();
    this.reserved.clear();
    this.readAhead.clear();
    this.trackers.clear();
    this.committed.clear();
    // Paused partitions are resumed for when the member rejoins; a crashed kafkajs consumer forgot its pauses itself.
    if (resumePaused) this.resume([...this.pausedFull]);
    this.pausedFull.clear();
    this.assigned = new Set();
    this.tellAssigned();
  }

  private resume(keys: readonly string[]): void {
    const byTopic = new Map<string, number[]>();
    for (const key of keys) {
      const slash = key.lastIndexOf('/');
      byTopic.set(key.slice(0, slash), [...(byTopic.get(key.slice(0, slash)) ?? []), Number(key.slice(slash + 1))]);
    }
    if (byTopic.size === 0) return;
    try {
      this.consumer.resume([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
    } catch (err) {
      // Between a crash and its restart kafkajs has no group to resume in; the restarted one starts unpaused.
      this.log.logger.debug({ err, group: this.opts.group }, 'resume skipped: the consumer is restarting');
    }
  }

  /**
   * Hands a batch's events to handlers without ever waiting inside eachBatch
   * (kafkajs heartbeats and rejoins only between batches, and fetches again
   * only once every batch of its fetch is done): events that find the
   * partition's handlers all busy wait in its read-ahead; once that is full
   * the partition is paused and the batch left unresolved from there; it is
   * fetched again on resume.
   */
  private async eachBatch({ batch, resolveOffset, isRunning, isStale, pause }: EachBatchPayload): Promise<void> {
    const key = `${batch.topic}/${batch.partition}`;
    const topic = this.log.prefix ? (batch.topic.slice(this.log.prefix.length) as Topic) : (batch.topic as Topic);
    this.highWatermarks.set(key, Number(batch.highWatermark));
    if (this.fencedSince !== null || this.downSince !== null || !this.assigned.has(key)) return;
    for (const message of batch.messages) {
      if (this.stopping || !isRunning() || isStale() || this.fencedSince !== null) return;
      const offset = Number(message.offset);
      let state = this.trackers.get(key);
      if (state === undefined) {
        state = initialOffsets(offset);
        this.trackers.set(key, state);
        this.committed.set(key, offset);
      }
      if (offset < state.next) {
        // Fetched again (after a pause or a rebalance that left us the partition): already handed out here.
        resolveOffset(message.offset);
        continue;
      }
      const e: LoggedEvent = { event: Event.decode(message.value ?? Buffer.alloc(0)), topic, partition: batch.partition, offset, seq: offset + 1 };
      // Made on the partition's first wait, not per event read: most events start at once.
      const waiting = this.readAhead.get(key);
      const queued = waiting?.length ?? 0;
      // A place kept for this event (reserve) is its own: the others' count.
      const kept = this.reserved.get(key);
      const others = (kept?.size ?? 0) - (kept?.has(e.event.eventId) ? 1 : 0);
      const busy = queued > 0 || (this.running.get(key) ?? 0) + others >= this.opts.concurrencyPerPartition;
      if (busy && queued >= this.opts.concurrencyPerPartition) {
        // Backpressure: the rest of the batch stays in the log until the read-ahead has room again.
        this.pausedFull.add(key);
        pause();
        return;
      }
      this.trackers.set(key, track(state, offset).state);
      // Moves the fetch position only: commits are ours (autoCommit is off) and only past finished events.
      resolveOffset(message.offset);
      if (!busy) this.launch(key, e);
      else if (waiting) waiting.push(e);
      else this.readAhead.set(key, [e]);
    }
  }

  /** A handler of the partition finished: the next event read ahead starts, and the partition is fetched again once half of them have. */
  private next(key: string): void {
    const waiting = this.readAhead.get(key);
    const e = waiting?.shift();
    if (e) this.launch(key, e);
    if ((waiting?.length ?? 0) <= this.opts.concurrencyPerPartition / 2 && this.pausedFull.delete(key)) this.resume([key]);
  }

  private launch(key: string, e: LoggedEvent): void {
    // A place kept for it becomes its handler's.
    this.reserved.get(key)?.delete(e.event.eventId);
    this.running.set(key, (this.running.get(key) ?? 0) + 1);
    let abort = this.aborts.get(key);
    if (!abort) this.aborts.set(key, (abort = new AbortController()));
    const signal = abort.signal;
    const h: Promise<void> = this.handleUntilDone(e, signal)
      .then((done) => {
        if (done && !this.finished && this.trackers.has(key) && !signal.aborted) {
          this.trackers.set(key, complete(this.trackers.get(key)!, e.offset).state);
          this.scheduleCommit();
        }
      })
      .catch((err) => this.log.logger.error({ err, group: this.opts.group, key, offset: e.offset }, 'consumer bug'))
      .finally(() => {
        this.handlers.delete(h);
        // An aborted handler gave its slot back when it was aborted (a hung one must not hold a partition it may get back).
        if (signal.aborted) return;
        this.running.set(key, this.running.get(key)! - 1);
        // Stopping: what waits is not started (nor committed): the partition's next owner gets it.
        if (!this.stopping) this.next(key);
      });
    this.handlers.add(h);
  }

  /** Runs the handler until it succeeds; a failing event is retried with backoff, never skipped. */
  private async handleUntilDone(e: LoggedEvent, signal: AbortSignal): Promise<boolean> {
    try {
      await retry(
        async () => {
          if (this.stopping) throw new Error('consumer stopped');
          await this.opts.handle(e, signal);
        },
        {
          baseMs: RETRY_BASE_MS,
          maxMs: RETRY_MAX_MS,
          signal,
          retryable: () => !this.stopping,
          onRetry: ({ err, attempt, delayMs }) => this.log.logger.warn({ group: this.opts.group, topic: e.topic, partition: e.partition, offset: e.offset, attempt, delayMs, err }, 'event handler failed; retrying'),
        },
      );
      return true;
    } catch {
      return false; // stopping, or the partition was taken away: uncommitted, redelivered
    }
  }

  private scheduleCommit(): void {
    if (this.commitTimer || this.finished) return;
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined;
      void this.commit();
    }, COMMIT_INTERVAL_MS);
    this.commitTimer.unref();
  }

  private async commit(): Promise<void> {
    const offsets: { topic: string; partition: number; offset: string }[] = [];
    for (const [key, state] of this.trackers) {
      const at = committableOf(state);
      if (at <= (this.committed.get(key) ?? -1)) continue;
      const slash = key.lastIndexOf('/');
      offsets.push({ topic: key.slice(0, slash), partition: Number(key.slice(slash + 1)), offset: String(at) });
      this.committed.set(key, at);
    }
    if (offsets.length === 0) return;
    await this.consumer.commitOffsets(offsets).catch((err: unknown) => {
      for (const o of offsets) this.committed.delete(`${o.topic}/${o.partition}`);
      // Dropped from the group: the partitions may be another member's already. Stop at once, rejoin.
      if (MEMBERSHIP_LOST.has((err as { type?: string }).type ?? '')) return this.fence(err);
      // Refused, e.g. while the member rejoins: a commit sent after its JoinGroup carries the generation it is
      // leaving (ILLEGAL_GENERATION; kafkajs hands it over wrapped, the broker's error as `cause`, so it does not
      // fence). A partition that moves resumes at its new owner from the last commit that landed; one this
      // member keeps is committed again now, not only after its next event: if that was its last for a while,
      // the group's offset would stay behind what it did, and the other members' caughtUp waits on it.
      this.log.logger.warn({ err, group: this.opts.group }, 'offset commit refused; it will be retried');
      if (!this.stopping) this.scheduleCommit();
    });
  }

  async caughtUp(): Promise<void> {
    if (this.stopping) throw new Error('consumer stopped');
    const targets = new Map<string, number>();
    // The log's end as of this call: reading it takes a round trip, during which this process may append more.
    const { started } = await this.watchAppends(async () => {
      for (const topic of this.opts.topics) {
        const name = topicName(this.log.prefix, topic);
        const offsets = await retryWithBackoff(`end offsets of ${name}`, this.log.logger, () => this.admin.fetchTopicOffsets(name), { attempts: 20, baseMs: 100, maxMs: 2_000 });
        for (const p of offsets) if (Number(p.high) > Number(p.low)) targets.set(`${name}/${p.partition}`, Number(p.high));
      }
    });
    for (const r of await Promise.allSettled(started)) {
      if (r.status !== 'fulfilled') continue;
      const key = `${topicName(this.log.prefix, r.value.topic)}/${r.value.partition}`;
      const target = targets.get(key);
      if (target !== undefined && r.value.offset < target) targets.set(key, r.value.offset);
    }
    for (let round = 0; ; round++) {
      if (this.stopping) throw new Error('consumer stopped before catching up');
      let behind = false;
      for (const [key, high] of targets) {
        const local = this.trackers.get(key);
        if (local && committableOf(local) >= high) continue;
        behind = true;
      }
      if (!behind) return;
      // Partitions of other members: what the group committed.
      if (round % 5 === 4) {
        const committed = await this.groupOffsets();
        for (const [key, high] of targets) if ((committed.get(key) ?? -1) >= high) targets.delete(key);
        if (targets.size === 0) return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async groupOffsets(): Promise<Map<string, number>> {
    const groupId = this.groupId;
    const topics = this.opts.topics.map((t) => topicName(this.log.prefix, t));
    const out = new Map<string, number>();
    // A fresh or restarted broker answers "not the coordinator" until the group's coordinator has loaded.
    const fetched = await retry(() => this.admin.fetchOffsets({ groupId, topics }), { attempts: 20, baseMs: 100, maxMs: 2_000, retryable: isTransient });
    for (const t of fetched) {
      for (const p of t.partitions) out.set(`${t.topic}/${p.partition}`, Number(p.offset));
    }
    return out;
  }

  lag(): number {
    let n = 0;
    for (const [key, high] of this.highWatermarks) {
      const s = this.trackers.get(key);
      if (s && this.assigned.has(key)) n += Math.max(0, high - s.next) + (this.readAhead.get(key)?.length ?? 0);
    }
    return n;
  }

  inFlight(): number {
    return this.handlers.size;
  }

  reserve(event: Event): (() => void) | undefined {
    const topic = topicOf(event);
    const key = `${topicName(this.log.prefix, topic)}/${this.partitionOf(topic, event.conversationId)}`;
    if (this.stopping || !this.assigned.has(key) || this.fencedSince !== null || this.downSince !== null) return undefined;
    // Events read ahead go first: a place is kept only while none wait.
    let kept = this.reserved.get(key);
    if ((this.readAhead.get(key)?.length ?? 0) > 0 || (this.running.get(key) ?? 0) + (kept?.size ?? 0) >= this.opts.concurrencyPerPartition) return undefined;
    if (!kept) this.reserved.set(key, (kept = new Set()));
    if (kept.has(event.eventId)) return undefined;
    kept.add(event.eventId);
    const place = kept;
    return () => {
      // Given back while still kept (not handed out): a handler may start in its place.
      if (place.delete(event.eventId) && this.reserved.get(key) === place && !this.stopping) this.next(key);
    };
  }

  handedOut(topic: Topic, partition: number): number | undefined {
    const key = `${topicName(this.log.prefix, topic)}/${partition}`;
    if (!this.assigned.has(key) || this.fencedSince !== null || this.downSince !== null) return undefined;
    // Events read ahead are not handed out yet: the first of them is where handing out stands.
    return this.readAhead.get(key)?.[0]?.offset ?? this.trackers.get(key)?.next;
  }

  stop(graceMs = 10_000): Promise<void> {
    this.stopRun ??= (async () => {
      this.stopping = true;
      clearTimeout(this.restartTimer);
      clearTimeout(this.watchdog);
      await orLate(Promise.allSettled([...this.handlers]), graceMs);
      clearTimeout(this.commitTimer);
      this.commitTimer = undefined;
      await this.commit();
      this.finished = true; // handlers finishing later are not committed: they will be redelivered
      for (const a of this.aborts.values()) a.abort(new Error('consumer stopped'));
      await this.consumer.disconnect().catch(() => undefined);
      this.assigned = new Set();
      this.tellAssigned();
      this.onStopped?.();
    })();
    return this.stopRun;
  }
}

export function topicName(prefix: string, topic: Topic): string {
  return `${prefix}${topic}`;
}

/** Stable partition of a key (FNV-1a): the same conversation always lands in the same partition. */
export function partitionFor(key: string, partitions: number): number {
  return fnv1a(key) % partitions;
}

function kafkaLog(logger: Logger, { level, label, log }: LogEntry): void {
  const { message, ...rest } = log;
  const fields = { ...rest, kafkaLevel: label };
  if (level === logLevel.ERROR) logger.error(fields, message);
  else if (level === logLevel.WARN) logger.warn(fields, message);
  else logger.debug(fields, message);
}
