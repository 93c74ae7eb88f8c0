/**
 * Embedded, durable event log: one append-only file, no external service.
 *
 * File `<dir>/events.log`, format in ./embedded-file.ts. Record number n
 * (0-based) is the offset of that event whatever its topic (single partition
 * 0 per topic, offsets shared), and its seq is n + 1.
 *
 * Durability: appends are group-committed (one synced write for all appends
 * that arrived while the previous one was syncing) and resolve only once
 * synced. A durable batch's appenders are told a slice (SETTLE_SLICE) per
 * turn of the event loop while the next batch is already being written: a
 * batch of 1,000 told at once held the loop for 50–100 ms (every appender's
 * continuation ran in one go), and the disk sat idle meanwhile.
 * The file is opened O_DSYNC where the platform has it, so a batch is one
 * trip to the thread pool instead of two (write, then fdatasync): under load
 * each trip also waits for the event loop to take its completion.
 * On open every record is verified; a torn tail is copied aside and
 * truncated, any other damage refuses to open (embedded-file.ts says which is which).
 *
 * Storage faults: a write or fsync that fails (disk full, quota, I/O error)
 * refuses that batch and every append after it with StorageUnavailableError
 * (UNAVAILABLE, retry-after-ms) while the file is cut back to its last durable
 * record; a probe with backoff then checks that the disk takes writes again
 * and the log resumes by itself. `onWritable` reports both transitions.
 *
 * Memory: per record only its byte position and topic (9 bytes) stay in
 * memory, plus a bounded ring of recent payloads for live consumers, each
 * with its event: the appender's own object (events are values: nobody
 * changes one once made), or decoded at most once whatever the number of
 * consumer groups.
 * Consumers that lag read from the file in batches.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { Event } from '../gen/chatflow/v1/events';
import { ChatFlowError, diskFault, StorageUnavailableError } from '../domain/errors';
import { makeDir } from '../make-dir';
import { encode } from '../encode';
import { orLate } from '../resilience/late';
import { retry } from '../resilience/retry';
import { OffsetTracker } from '../domain/offsets';
import { acquireDirLock, type DirLock } from './dir-lock';
import { cutTail, EventLogDamagedError, FILE_HEADER, inspectLog, MAGIC, MAX_BATCH_BYTES, MAX_RECORD, readFully, RECORD_HEADER, syncDir, VERSION, writeFully } from './embedded-file';
import { TOPICS, topicOf, type ConsumeOptions, type Consumer, type EventLog, type LoggedEvent, type Topic } from './port';

export interface EventLogLogger {
  /** Default: warn. */
  error?(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface EmbeddedEventLogOptions {
  dir: string;
  /** fdatasync every batch (default true). `false` is for tests and benchmarks only. */
  fsync?: boolean;
  logger?: EventLogLogger;
  /** Recent records kept decoded-ready in memory for live consumers (default 8192). */
  cacheSize?: number;
  /** The command named when opening refuses a damaged log (default: the CLI with this log's data dir). */
  repairCommand?: string;
  /** Called with the reason when appends start failing (disk full, I/O error), and with undefined once they work again. */
  onWritable?: (problem: string | undefined) => void;
  /** Called once per append as its appender is told, with where its time went (see AppendTiming). For /metrics. */
  onAppendTiming?: (t: AppendTiming) => void;
}

/**
 * Where one append's time went, in seconds: `queue` from append() until its
 * batch's write began (the batch before it was being written), `write` the
 * batch's write + sync, `settle` from durable until its appender was told
 * (SETTLE_SLICE per loop turn, behind the event loop's other work).
 */
export interface AppendTiming {
  queue: number;
  write: number;
  settle: number;
}

export interface EmbeddedEventLogStats {
  /** Durable records in the log. */
  records: number;
  /** fdatasync calls on the log file (group commit keeps this far below appends). */
  fsyncs: number;
  /** Write batches. */
  batches: number;
  /** Size of the log file in bytes, header included. */
  bytes: number;
}

const READ_BATCH_BYTES = 1024 * 1024;
const COMMIT_INTERVAL_MS = 200;
/** Appenders told per turn of the event loop once their batch is durable (see settle). */
const SETTLE_SLICE = 64;
/** While the log cannot write: first probe after this, doubling up to PROBE_MAX_MS. */
const PROBE_MIN_MS = 25;
const PROBE_MAX_MS = 500;
/** The log resumes once this much can be written and synced (a probe file beside the log). */
const PROBE_BYTES = 1024 * 1024;
/** Hint given to clients whose appends are refused while the log cannot write. */
const RETRY_AFTER_MS = 1000;
const RETRY_BASE_MS = 50;
const RETRY_MAX_MS = 5000;
const DEFAULT_GRACE_MS = 5000;
/** Where the platform has it, the log file is opened O_DSYNC when fsync is on (see open). */
const DSYNC = fsc.O_DSYNC ?? 0;
const TOPIC_INDEX = new Map<Topic, number>(TOPICS.map((t, i) => [t, i]));

/**
 * The log file this process holds open is no longer the one at its path: its
 * data dir was moved away (a backup restored in its place) or removed while
 * the server ran. Writes would follow the open file where no next start reads
 * them, so nothing more is acknowledged until the server is restarted (or the
 * file put back).
 */
export class LogFileMovedError extends Error {
  constructor(readonly file: string, readonly now: 'missing' | 'another file') {
    super(`the event log ${file} was ${now === 'missing' ? 'removed' : 'replaced by another file'} while the server ran`);
    this.name = 'LogFileMovedError';
  }
}

/**
 * What a storage fault tells a client, /healthz and the operator. A log moved
 * or removed is an ERROR that only the operator can end (a restart, or the
 * file put back); a disk full or failing heals by itself once a probe can write.
 */
function faultWords(err: Error, dir: string, since: number): { client: string; health: string; log: string; severity: 'error' | 'warn' } {
  const at = new Date(since).toISOString();
  if (err instanceof LogFileMovedError) {
    return {
      severity: 'error',
      client: `the server cannot store messages: its event log was moved or removed while it ran (its data dir replaced or deleted); its operator must restart it; retry in ${RETRY_AFTER_MS} ms`,
      health: `${err.message} (moved or removed): restart the server; appends refused since ${at}`,
      log: `${err.message}: appends are refused, none was acknowledged into it since; restart the server to use the data dir now at ${dir} (what it acknowledged before is in the file that was moved, if it was)`,
    };
  }
  const what = diskFault(err) ?? err.message;
  const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
  return {
    severity: 'warn',
    client: `the server cannot store messages right now (${what}); retry in ${RETRY_AFTER_MS} ms`,
    health: `event log cannot append: ${what} (${code}) since ${at}`,
    log: `event log cannot write (${what}); appends are refused until it can`,
  };
}

const defaultLogger: EventLogLogger = {
  error: (obj, msg) => console.error(msg, obj),
  warn: (obj, msg) => console.warn(msg, obj),
  info: () => {},
};

type Committed = Partial<Record<Topic, number>>;

interface PendingAppend {
  readonly offset: number;
  readonly topic: Topic;
  /** Absent for an append of bytes (appendEncoded). */
  readonly event?: Event;
  readonly payload: Uint8Array;
  /** performance.now() at append, at its batch's write start, once durable (for onAppendTiming). */
  readonly at: number;
  startedAt: number;
  durableAt: number;
  resolve(e: Omit<LoggedEvent, 'event'> & { event?: Event }): void;
  reject(err: Error): void;
}

/** What a consumer needs from the log (kept narrow so the log's own API stays small). */
interface ConsumerHost {
  readonly logger: EventLogLogger;
  durable(): number;
  topicAt(offset: number): Topic;
  durableCountOf(topic: Topic): number;
  countBefore(topic: Topic, offset: number): number;
  /** Payloads of records [from, ...) up to `to`: at least one, maybe fewer than asked. */
  read(from: number, to: number): Promise<Uint8Array[]>;
  /** The record at `offset` decoded; recent records are decoded once for every consumer group. */
  decode(offset: number, payload: Uint8Array): Event;
  commit(group: string, offsets: Committed): Promise<void>;
  release(consumer: EmbeddedConsumer): void;
}

export class EmbeddedEventLog implements EventLog {
  private readonly logPath: string;
  private readonly offsetsDir: string;
  private readonly fsync: boolean;
  private readonly logger: EventLogLogger;
  private readonly onWritable: (problem: string | undefined) => void;
  private readonly onAppendTiming?: (t: AppendTiming) => void;
  /** positions[n] = byte position of record n; positions[appended] = end of data. */
  private readonly positions = new Column((n) => new Float64Array(n));
  private readonly topics = new Column((n) => new Uint8Array(n));
  private readonly durableByTopic = TOPICS.map(() => 0);
  private readonly cache: ({ offset: number; payload: Uint8Array; event?: Event } | undefined)[];
  private appended = 0;
  /** Records on disk (synced); the appenders of [durableCount, written) are still being told. */
  private written = 0;
  /** Records whose appenders were told: what consumers see. */
  private durableCount = 0;
  private queue: PendingAppend[] = [];
  /** Durable batches whose appenders are still to be told, oldest first; `settledInHead` of the first are told. */
  private readonly settling: PendingAppend[][] = [];
  private settledInHead = 0;
  private settleScheduled = false;
  private flushing = false;
  private idleWaiters: (() => void)[] = [];
  /** Set while appends cannot be written: they are refused until a probe finds the disk writable again. */
  private fault: { error: StorageUnavailableError; since: number; delayMs: number; probes: number; timer?: NodeJS.Timeout } | undefined;
  private probing: Promise<void> | undefined;
  private closed = false;
  private closeRun: Promise<void> | undefined;
  private readonly consumers = new Set<EmbeddedConsumer>();
  private readonly activeGroupTopics = new Set<string>();
  private readonly groups = new Map<string, Committed>();
  private readonly groupWrites = new Map<string, Promise<void>>();
  private tmpSeq = 0;
  /** Groups whose last offsets write failed (told once, not at every retry). */
  private readonly offsetsFailing = new Set<string>();
  private readonly counters = { fsyncs: 0, batches: 0 };
  private constructor(
    private readonly fh: FileHandle,
    private readonly dir: string,
    private readonly lock: DirLock,
    /** The log file's device and inode when it was opened, to tell it is still the one at logPath (checkPlace). */
    private readonly identity: { readonly dev: number; readonly ino: number },
    opts: EmbeddedEventLogOptions,
  ) {
    this.logPath = path.join(dir, 'events.log');
    this.offsetsDir = path.join(dir, 'offsets');
    this.fsync = opts.fsync ?? true;
    this.logger = opts.logger ?? defaultLogger;
    this.onWritable = opts.onWritable ?? (() => {});
    this.onAppendTiming = opts.onAppendTiming;
    this.cache = new Array(Math.max(1, opts.cacheSize ?? 8192));
  }

  /** Opens (or creates) the log in `dir`, verifying every record and repairing a torn tail. */
  static async open(opts: EmbeddedEventLogOptions): Promise<EmbeddedEventLog> {
    const dir = path.resolve(opts.dir);
    await makeDir(path.join(dir, 'offsets'));
    const lock = await acquireDirLock(dir);
    let fh: FileHandle | undefined;
    try {
      await removeOffsetTemps(path.join(dir, 'offsets'));
      // O_DSYNC: a write returns once its data is on disk (write + fdatasync in one call, one trip to the thread pool).
      const dsync = (opts.fsync ?? true) && DSYNC ? DSYNC : 0;
      fh = await fsp.open(path.join(dir, 'events.log'), fsc.O_RDWR | fsc.O_CREAT | dsync);
      // Read through the path, as checkPlace reads it: on every file system the two readings agree while it is there.
      const { dev, ino } = await fsp.stat(path.join(dir, 'events.log'));
      const log = new EmbeddedEventLog(fh, dir, lock, { dev, ino }, opts);
      await log.recover(opts.repairCommand ?? `npm run client -- log repair --data-dir ${path.dirname(dir)}`);
      return log;
    } catch (err) {
      await fh?.close();
      await lock.release();
      throw err;
    }
  }

  /** Appends one event; resolves once it is on disk (fdatasync), in offset order. */
  append(event: Event, encoded?: Uint8Array): Promise<LoggedEvent> {
    let topic: Topic;
    let payload: Uint8Array;
    try {
      topic = topicOf(event);
      payload = encoded ?? encode(Event, event);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(topic, payload, event) as Promise<LoggedEvent>;
  }

  /** See EventLog.appendEncoded: the worker thread's appends, its bytes stored as they came. */
  appendEncoded(topic: Topic, payload: Uint8Array): Promise<Omit<LoggedEvent, 'event'>> {
    if (!TOPIC_INDEX.has(topic)) return Promise.reject(new Error(`unknown topic ${JSON.stringify(topic)}`));
    return this.enqueue(topic, payload);
  }

  private enqueue(topic: Topic, payload: Uint8Array, event?: Event): Promise<Omit<LoggedEvent, 'event'> & { event?: Event }> {
    // During close() appends are still taken until consumers have stopped (their handlers may append).
    if (this.closed) return Promise.reject(new Error('event log is closed: append refused'));
    if (this.fault) return Promise.reject(this.fault.error);
    if (payload.length > MAX_RECORD) {
      return Promise.reject(new Error(`event of ${payload.length} bytes exceeds ${MAX_RECORD}`));
    }
    // Offset and byte position are fixed now, so appends resolve in call order.
    const offset = this.appended++;
    this.positions.push(this.positions.get(offset) + RECORD_HEADER + payload.length);
    this.topics.push(TOPIC_INDEX.get(topic)!);
    // The appender's own event is what consumers get: its bytes are not decoded again (issue 15: ~half of the
    // event loop's decodes at saturation were the gateway's own MessageReceived).
    this.cache[offset % this.cache.length] = { offset, payload, event };
    return new Promise((resolve, reject) => {
      this.queue.push({ offset, topic, event, payload, at: performance.now(), startedAt: 0, durableAt: 0, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // Start on a microtask so appends issued in the same tick share the first batch.
        queueMicrotask(() => void this.flushLoop());
      }
    });
  }

  /** One partition per topic: the embedded log is one ordered file. */
  partitions(): number {
    return 1;
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    if (this.closed || this.closeRun) throw new Error('event log is closed: consume refused');
    const topics = [...new Set(options.topics)];
    if (topics.length === 0) throw new Error('consume: no topics');
    if (!Number.isInteger(options.concurrencyPerPartition) || options.concurrencyPerPartition < 1) {
      throw new Error(`consume: concurrencyPerPartition must be a positive integer`);
    }
    const keys = topics.map((t) => `${options.group}\u0000${t}`);
    const busy = topics.filter((_, i) => this.activeGroupTopics.has(keys[i]));
    if (busy.length > 0) throw new Error(`group ${options.group} already consumes ${busy.join(', ')}`);
    keys.forEach((k) => this.activeGroupTopics.add(k));

    const committed = await this.loadGroup(options.group); // loaded even fromBeginning: saves merge into it
    const start = new Map<Topic, number>();
    for (const t of topics) {
      const c = options.fromBeginning ? 0 : (committed[t] ?? 0);
      // A commit past the end can only follow a truncated tail: resume at the end, or new events would be skipped.
      if (c > this.durableCount) {
        this.logger.warn({ group: options.group, topic: t, committed: c, end: this.durableCount }, 'committed offset beyond the log; resuming at its end');
      }
      start.set(t, Math.min(c, this.durableCount));
    }
    const consumer = new EmbeddedConsumer(this.host(keys), options, start);
    this.consumers.add(consumer);
    consumer.wake();
    return consumer;
  }

  /** Stops consumers, flushes pending appends, syncs and closes the file. Idempotent. */
  close(): Promise<void> {
    this.closeRun ??= (async () => {
      await Promise.all([...this.consumers].map((c) => c.stop()));
      this.closed = true;
      if (this.flushing || this.settleScheduled) await new Promise<void>((r) => this.idleWaiters.push(r));
      await Promise.all(this.groupWrites.values());
      clearTimeout(this.fault?.timer);
      await this.probing;
      // Closed while the disk refuses writes: leave no half batch behind if it can be helped (else the next open cuts it as a torn tail).
      if (this.fault) await this.fh.truncate(this.positions.get(this.written)).catch(() => undefined);
      if (!this.fault) {
        await this.fh.datasync();
        this.counters.fsyncs++;
      }
      await this.fh.close();
      await this.lock.release();
    })();
    return this.closeRun;
  }

  stats(): EmbeddedEventLogStats {
    return { records: this.durableCount, ...this.counters, bytes: this.positions.get(this.durableCount) };
  }

  // ---- writing -------------------------------------------------------------

  /** Group commit: everything queued while the previous batch was syncing goes in the next one. */
  private async flushLoop(): Promise<void> {
    while (this.queue.length > 0 && !this.fault) {
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && (n === 0 || bytes + this.queue[n].payload.length + RECORD_HEADER <= MAX_BATCH_BYTES)) {
        bytes += this.queue[n++].payload.length + RECORD_HEADER;
      }
      const batch = this.queue.splice(0, n);
      try {
        await this.writeBatch(batch, bytes);
      } catch (err) {
        this.enterFault(err as Error, [...batch, ...this.queue.splice(0)]);
      }
    }
    this.flushing = false; // same synchronous step as the empty check: no append can be stranded
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.flushing || this.settleScheduled) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private async writeBatch(batch: PendingAppend[], bytes: number): Promise<void> {
    const startedAt = performance.now();
    const buf = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (const p of batch) {
      buf.writeUInt32LE(p.payload.length, at);
      buf.writeUInt32LE(crc32(p.payload), at + 4);
      buf.set(p.payload, at + RECORD_HEADER);
      at += RECORD_HEADER + p.payload.length;
    }
    // Beside the write, not after it: the file is checked to be the one at its path, so that no batch is
    // acknowledged into a log the next start would not read (a data dir moved or removed under the server).
    const [written, placed] = await Promise.allSettled([writeFully(this.fh, buf, this.positions.get(batch[0].offset)), this.checkPlace()]);
    if (written.status === 'rejected') throw written.reason;
    if (placed.status === 'rejected') throw placed.reason;
    if (this.fsync) {
      if (!DSYNC) await this.fh.datasync();
      this.counters.fsyncs++;
    }
    this.counters.batches++;
    this.written = batch[batch.length - 1].offset + 1;
    if (this.onAppendTiming) {
      const durableAt = performance.now();
      for (const p of batch) {
        p.startedAt = startedAt;
        p.durableAt = durableAt;
      }
    }
    // Told from the next turn on; flushLoop meanwhile starts writing what was appended during this write.
    this.settling.push(batch);
    if (!this.settleScheduled) {
      this.settleScheduled = true;
      setImmediate(() => this.settle());
    }
  }

  /**
   * Tells the appenders of durable batches, in offset order, SETTLE_SLICE per
   * turn of the event loop: their continuations (Accepted frames, a worker's
   * next step) run between network reads and the next write's completion,
   * not in one long burst.
   */
  private settle(): void {
    for (let n = 0; n < SETTLE_SLICE && this.settling.length > 0; n++) {
      const batch = this.settling[0];
      const p = batch[this.settledInHead++];
      if (this.settledInHead === batch.length) {
        this.settling.shift();
        this.settledInHead = 0;
      }
      this.durableByTopic[TOPIC_INDEX.get(p.topic)!]++;
      this.durableCount = p.offset + 1;
      p.resolve({ event: p.event, topic: p.topic, partition: 0, offset: p.offset, seq: p.offset + 1 });
      if (this.onAppendTiming) {
        const ms = 1000;
        this.onAppendTiming({ queue: (p.startedAt - p.at) / ms, write: (p.durableAt - p.startedAt) / ms, settle: (performance.now() - p.durableAt) / ms });
      }
    }
    // Consumers deliver on setImmediate: the appenders' continuations run first.
    for (const c of this.consumers) c.wake();
    if (this.settling.length > 0) return void setImmediate(() => this.settle());
    this.settleScheduled = false;
    this.notifyIdle();
  }

  // ---- storage faults ----------------------------------------------------------

  /**
   * A write or fsync failed: the batch and everything queued behind it are
   * refused (none was acknowledged), their offsets are given back, and
   * appends are refused until a probe finds the disk writable again.
   */
  private enterFault(err: Error, refused: PendingAppend[]): void {
    const since = Date.now();
    const words = faultWords(err, this.dir, since);
    this.fault = { error: new StorageUnavailableError(words.client, RETRY_AFTER_MS), since, delayMs: PROBE_MIN_MS, probes: 0 };
    // Batches already durable are still told (settle); only what was not written is given back.
    this.appended = this.written;
    this.positions.truncate(this.written + 1);
    this.topics.truncate(this.written);
    for (const p of refused) p.reject(this.fault.error);
    const ctx = { err, file: this.logPath, refused: refused.length, records: this.written };
    if (words.severity === 'error') (this.logger.error ?? this.logger.warn).call(this.logger, ctx, words.log);
    else this.logger.warn(ctx, words.log);
    this.onWritable(words.health);
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    const f = this.fault;
    if (!f || this.closed) return;
    f.timer = setTimeout(() => {
      this.probing = this.probe().finally(() => (this.probing = undefined));
    }, f.delayMs);
    f.timer.unref();
  }

  /**
   * First cuts the file back to its last durable record (a half-written batch
   * must never stay in it), then writes and syncs PROBE_BYTES beside the log.
   * Both done: the log takes appends again. Else: try again later.
   */
  private async probe(): Promise<void> {
    const f = this.fault!;
    try {
      await this.checkPlace(); // a log moved or removed heals only when it is put back
      await this.fh.truncate(this.positions.get(this.written));
      if (this.fsync) await this.fh.datasync();
      await probeWrite(path.join(this.dir, 'space-probe'), this.fsync);
    } catch (err) {
      f.delayMs = Math.min(f.delayMs * 2, PROBE_MAX_MS);
      // Said now and then, not every half second of a long outage.
      if (f.probes++ % 20 === 0) this.logger.info({ err: (err as Error).message, unavailableMs: Date.now() - f.since, nextMs: f.delayMs }, 'event log still cannot write');
      this.scheduleProbe();
      return;
    }
    this.fault = undefined;
    this.logger.warn({ unavailableMs: Date.now() - f.since, records: this.durableCount }, 'event log can write again; appends resumed');
    this.onWritable(undefined);
  }

  /** Throws LogFileMovedError when the file at logPath is not the open log (or none is); other errors as they come. */
  private async checkPlace(): Promise<void> {
    const id = this.identity;
    let st: { dev: number; ino: number };
    try {
      st = await fsp.stat(this.logPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new LogFileMovedError(this.logPath, 'missing');
      throw err;
    }
    if (st.dev !== id.dev || st.ino !== id.ino) throw new LogFileMovedError(this.logPath, 'another file');
  }

  // ---- reading ---------------------------------------------------------------

  private async read(from: number, to: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (let i = from; i < to; i++) {
      const c = this.cache[i % this.cache.length];
      if (c?.offset !== i) break;
      out.push(c.payload);
    }
    if (out.length > 0) return out;
    // A lagging consumer: one positional read of up to READ_BATCH_BYTES worth of records.
    const base = this.positions.get(from);
    let end = from + 1;
    while (end < to && this.positions.get(end + 1) - base <= READ_BATCH_BYTES) end++;
    const buf = Buffer.allocUnsafe(this.positions.get(end) - base);
    await readFully(this.fh, buf, base);
    for (let i = from; i < end; i++) {
      out.push(buf.subarray(this.positions.get(i) - base + RECORD_HEADER, this.positions.get(i + 1) - base));
    }
    return out;
  }

  private host(keys: string[]): ConsumerHost {
    return {
      logger: this.logger,
      durable: () => this.durableCount,
      topicAt: (offset) => TOPICS[this.topics.get(offset)],
      durableCountOf: (topic) => this.durableByTopic[TOPIC_INDEX.get(topic)!],
      countBefore: (topic, offset) => {
        const idx = TOPIC_INDEX.get(topic)!;
        let n = 0;
        for (let i = 0; i < offset; i++) if (this.topics.get(i) === idx) n++;
        return n;
      },
      read: (from, to) => this.read(from, to),
      decode: (offset, payload) => {
        const c = this.cache[offset % this.cache.length];
        if (c?.offset !== offset || c.payload !== payload) return Event.decode(payload);
        return (c.event ??= Event.decode(payload));
      },
      commit: (group, offsets) => this.saveGroup(group, offsets),
      release: (consumer) => {
        this.consumers.delete(consumer);
        keys.forEach((k) => this.activeGroupTopics.delete(k));
      },
    };
  }

  // ---- committed offsets: <dir>/offsets/<group>.json ---------------------------

  private groupFile(group: string): string {
    return path.join(this.offsetsDir, `${encodeURIComponent(group)}.json`);
  }

  private async loadGroup(group: string): Promise<Committed> {
    const known = this.groups.get(group);
    if (known) return known;
    let committed: Committed = {};
    try {
      const parsed = JSON.parse(await fsp.readFile(this.groupFile(group), 'utf8')) as { offsets?: Record<string, unknown> };
      for (const t of TOPICS) {
        const v = parsed.offsets?.[t];
        if (Number.isSafeInteger(v) && (v as number) >= 0) committed[t] = v as number;
      }
    } catch (err) {
      // Missing: a new group. Unreadable: start over (redelivery is safe, loss is not).
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.logger.warn({ group, err }, 'unreadable committed offsets; starting the group from the beginning');
      }
      committed = {};
    }
    this.groups.set(group, committed);
    return committed;
  }

  /** Merges and persists (temp file + rename); writes of one group are serialized. */
  private saveGroup(group: string, offsets: Committed): Promise<void> {
    const merged = { ...this.groups.get(group), ...offsets };
    this.groups.set(group, merged);
    const write = async () => {
      const file = this.groupFile(group);
      const tmp = `${file}.tmp-${process.pid}-${this.tmpSeq++}`;
      try {
        const fh = await fsp.open(tmp, 'w');
        try {
          await fh.writeFile(JSON.stringify({ version: 1, group, offsets: this.groups.get(group) }));
          if (this.fsync) await fh.datasync();
        } finally {
          await fh.close();
        }
        await fsp.rename(tmp, file);
      } catch (err) {
        // A disk that refuses the write (full, over quota) would otherwise collect one temp file per commit.
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
        throw err;
      }
    };
    const next = (this.groupWrites.get(group) ?? Promise.resolve()).then(write, write);
    const tracked = next.then(
      () => {
        if (this.offsetsFailing.delete(group)) this.logger.info({ group }, 'committed offsets persisted again');
      },
      (err) => {
        if (this.offsetsFailing.has(group)) return;
        this.offsetsFailing.add(group);
        this.logger.warn({ group, err }, 'could not persist committed offsets; retrying');
      },
    );
    this.groupWrites.set(group, tracked);
    return next;
  }

  // ---- recovery --------------------------------------------------------------

  /** Verifies every record: a torn tail is copied aside and truncated, other damage refuses to open. */
  private async recover(repairCommand: string): Promise<void> {
    const size = (await this.fh.stat()).size;
    this.positions.push(FILE_HEADER);
    if (size < FILE_HEADER) {
      // New file, or one torn while its header was written: nothing to keep.
      const header = Buffer.alloc(FILE_HEADER);
      MAGIC.copy(header, 0);
      header.writeUInt32LE(VERSION, 4);
      try {
        await writeFully(this.fh, header, 0);
        await this.fh.truncate(FILE_HEADER);
        await this.fh.sync();
      } catch (err) {
        const why = diskFault(err);
        throw why ? new ChatFlowError('FAILED_PRECONDITION', `cannot begin the event log ${this.logPath}: ${why}; make room there and start again`) : err;
      }
      await syncDir(this.dir);
      return;
    }
    const found = await inspectLog(this.fh, this.logPath, size, (end, topic) => {
      this.positions.push(end);
      this.topics.push(TOPIC_INDEX.get(topic)!);
      this.durableByTopic[TOPIC_INDEX.get(topic)!]++;
      this.appended++;
    });
    this.durableCount = this.written = this.appended;
    const bad = found.bad;
    if (bad?.kind === 'damage') throw new EventLogDamagedError(bad, repairCommand);
    this.logger.info({ records: this.appended, bytes: found.goodEnd }, 'event log opened');
    if (!bad) return;
    const copy = await cutTail(this.fh, this.logPath, bad.at, size).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOSPC' && err.code !== 'EDQUOT') throw err;
      throw new ChatFlowError(
        'UNAVAILABLE',
        `The event log ${this.logPath} ends with a write cut short by a crash (${bad.bytesAfter} bytes at byte ${bad.at}), set aside in a file beside it before the log is cut, and the disk is full: ` +
          `free ${bad.bytesAfter} bytes or more (more for new events) and start again. Nothing was changed.`,
      );
    });
    this.logger.warn(
      { problem: bad.problem, droppedBytes: bad.bytesAfter, at: bad.at, records: this.appended, copy },
      'event log had a torn tail (a write cut short by a crash); truncated to the last good record',
    );
  }
}

/** One consumer group member reading the whole log (partition 0 of each topic). */
class EmbeddedConsumer implements Consumer {
  private cursor: number;
  private readonly trackers = new Map<Topic, OffsetTracker>();
  private readonly passed = new Map<Topic, number>();
  private readonly running = new Map<Topic, number>();
  /** Handlers running, and who waits for there to be none (stop). */
  private handling = 0;
  private readonly whenNoneHandling: (() => void)[] = [];
  /** Aborted as stop() begins: an event waiting for its retry is abandoned (uncommitted, so redelivered later). */
  private readonly stopped = new AbortController();
  private waiters: { target: number; resolve(): void; reject(err: Error): void }[] = [];
  private buffer: { from: number; payloads: Uint8Array[] } | undefined;
  private wakeScheduled = false;
  private pumping: Promise<void> | undefined;
  private again = false;
  private stopping = false;
  private finished = false;
  private dirty = false;
  private commitTimer: NodeJS.Timeout | undefined;
  private stopRun: Promise<void> | undefined;
  /** Aborted when stop() gives up on handlers still running after the grace period. */
  private readonly abandon = new AbortController();

  constructor(
    private readonly host: ConsumerHost,
    private readonly opts: ConsumeOptions,
    /** Per topic: the first offset not yet done for this group. */
    private readonly start: Map<Topic, number>,
  ) {
    this.cursor = Math.min(...start.values());
    for (const [t, s] of start) {
      this.trackers.set(t, new OffsetTracker(s));
      this.passed.set(t, host.countBefore(t, this.cursor));
      this.running.set(t, 0);
    }
  }

  caughtUp(): Promise<void> {
    if (this.stopping) return Promise.reject(new Error('consumer stopped'));
    const target = this.host.durable();
    return new Promise((resolve, reject) => {
      this.waiters.push({ target, resolve, reject });
      this.checkWaiters();
    });
  }

  lag(): number {
    let n = 0;
    for (const [t, p] of this.passed) n += this.host.durableCountOf(t) - p;
    return n;
  }

  inFlight(): number {
    let n = 0;
    for (const r of this.running.values()) n += r;
    return n;
  }

  stop(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    this.stopRun ??= (async () => {
      this.stopping = true;
      this.stopped.abort(new Error('consumer stopped'));
      await this.pumping;
      await orLate(this.noneHandling(), graceMs);
      clearTimeout(this.commitTimer);
      this.finished = true; // handlers finishing later are not committed: they will be redelivered
      this.abandon.abort(new Error('consumer stopped'));
      await this.persist().catch(() => {}); // failure already logged by the host
      this.host.release(this);
      for (const w of this.waiters.splice(0)) w.reject(new Error('consumer stopped before catching up'));
    })();
    return this.stopRun;
  }

  /** Schedules a delivery round; coalesced, and always asynchronous. */
  wake(): void {
    if (this.wakeScheduled || this.stopping) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = this.pumpLoop()
      .catch((err) => {
        this.host.logger.warn({ group: this.opts.group, err }, 'event log read failed; retrying');
        setTimeout(() => this.wake(), 1000).unref();
      })
      .finally(() => {
        this.pumping = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** Hands events to the handler in log order while slots are free. */
  private async pumpLoop(): Promise<void> {
    while (!this.stopping && this.cursor < this.host.durable()) {
      const offset = this.cursor;
      const topic = this.host.topicAt(offset);
      const from = this.start.get(topic);
      if (from === undefined || offset < from) {
        this.pass(offset, topic, false); // another topic, or already done by this group
        continue;
      }
      if (this.running.get(topic)! >= this.opts.concurrencyPerPartition) break; // a finishing handler wakes us
      // Taken from the buffer without an await (a promise per event) when it is there.
      const payload = this.buffered(offset) ?? (await this.fetch(offset));
      if (this.stopping) break;
      this.pass(offset, topic, true);
      this.launch({ event: this.host.decode(offset, payload), topic, partition: 0, offset, seq: offset + 1, bytes: this.opts.bytes ? payload : undefined });
    }
    this.checkWaiters();
  }

  private pass(offset: number, topic: Topic, handed: boolean): void {
    for (const [t, tracker] of this.trackers) {
      if (handed && t === topic) tracker.track(offset);
      else tracker.skip(offset);
    }
    const p = this.passed.get(topic);
    if (p !== undefined) this.passed.set(topic, p + 1);
    this.cursor = offset + 1;
    this.markDirty();
  }

  private buffered(offset: number): Uint8Array | undefined {
    const b = this.buffer;
    return b && offset >= b.from && offset < b.from + b.payloads.length ? b.payloads[offset - b.from] : undefined;
  }

  private async fetch(offset: number): Promise<Uint8Array> {
    const payloads = await this.host.read(offset, this.host.durable());
    this.buffer = { from: offset, payloads };
    return payloads[0];
  }

  private launch(e: LoggedEvent): void {
    this.running.set(e.topic, this.running.get(e.topic)! + 1);
    this.handling++;
    this.run(e);
  }

  /**
   * Runs the handler until it succeeds (see retryHandler), then frees its
   * slot and marks its offset done. On the way that succeeds, one reaction on
   * the handler's promise per event: an async function and its await per
   * event (three consumers, two events a message) were ~2 KB of the event
   * loop's garbage per message at saturation, and before that the retry's
   * options and closures ~13 % of its allocation (issue 15).
   */
  private run(e: LoggedEvent): void {
    if (this.stopped.signal.aborted) {
      this.finish(e, false);
      return;
    }
    let handled: Promise<void>;
    try {
      handled = Promise.resolve(this.opts.handle(e, this.abandon.signal));
    } catch (first) {
      void this.retryThenFinish(e, first);
      return;
    }
    handled.then(
      () => this.finish(e, true),
      (first: unknown) => this.retryThenFinish(e, first),
    );
  }

  private async retryThenFinish(e: LoggedEvent, first: unknown): Promise<void> {
    this.finish(e, await this.retryHandler(e, first));
  }

  /** Frees the event's slot; marks its offset done if it was handled. */
  private finish(e: LoggedEvent, handled: boolean): void {
    try {
      // Slot and commit are updated in one synchronous step, so caughtUp() never sees a stale inFlight().
      this.running.set(e.topic, this.running.get(e.topic)! - 1);
      if (handled && !this.finished) {
        this.trackers.get(e.topic)!.complete(e.offset);
        this.markDirty();
        this.checkWaiters();
      }
      this.wake();
    } catch (err) {
      this.host.logger.warn({ group: this.opts.group, offset: e.offset, err }, 'consumer bug');
    } finally {
      if (--this.handling === 0) for (const w of this.whenNoneHandling.splice(0)) w();
    }
  }

  private noneHandling(): Promise<void> {
    return this.handling === 0 ? Promise.resolve() : new Promise((r) => this.whenNoneHandling.push(r));
  }

  /**
   * A handler that failed once: tried again with backoff, never skipped,
   * until it succeeds. False if abandoned because the consumer stops (left
   * uncommitted, so redelivered later).
   */
  private async retryHandler(e: LoggedEvent, first: unknown): Promise<boolean> {
    try {
      await retry((attempt) => (attempt === 1 ? Promise.reject(first) : this.opts.handle(e, this.abandon.signal)), {
        baseMs: RETRY_BASE_MS,
        maxMs: RETRY_MAX_MS,
        signal: this.stopped.signal,
        retryable: () => !this.stopping,
        onRetry: ({ err, attempt, delayMs }) => this.host.logger.warn({ group: this.opts.group, offset: e.offset, attempt, delayMs, err }, 'event handler failed; retrying'),
      });
      return true;
    } catch {
      return false;
    }
  }

  private checkWaiters(): void {
    if (this.waiters.length === 0) return;
    let done = Infinity;
    for (const t of this.trackers.values()) done = Math.min(done, t.committable);
    // Every offset the cursor passed went through a tracker, so `done` covers [0, cursor).
    this.waiters = this.waiters.filter((w) => {
      if (this.cursor < w.target || done < w.target) return true;
      w.resolve();
      return false;
    });
  }

  /** Commits are persisted at most every COMMIT_INTERVAL_MS, and on stop. */
  private markDirty(): void {
    this.dirty = true;
    if (this.commitTimer || this.finished || this.stopping) return;
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined;
      // Refused (a full disk): tried again after the interval, and on stop.
      void this.persist().catch(() => this.markDirty());
    }, COMMIT_INTERVAL_MS);
    this.commitTimer.unref();
  }

  private persist(): Promise<void> {
    if (!this.dirty) return Promise.resolve();
    this.dirty = false;
    const offsets: Committed = {};
    for (const [t, tracker] of this.trackers) offsets[t] = tracker.committable;
    return this.host.commit(this.opts.group, offsets).catch((err: unknown) => {
      // Not persisted: still owed. Forgotten, a restart would hand out again (and the worker answer again,
      // its in-memory reply claims gone) everything handled since the last commit that went through.
      this.dirty = true;
      throw err;
    });
  }
}

// ---- small IO helpers ----------------------------------------------------------

/** Append-only typed column that doubles when full. */
class Column<A extends Float64Array | Uint8Array> {
  length = 0;
  private data: A;
  constructor(private readonly make: (n: number) => A) {
    this.data = make(1024);
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = this.make(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  get(i: number): number {
    return this.data[i];
  }
  truncate(length: number): void {
    this.length = Math.min(this.length, length);
  }
}

/** Writes and syncs `PROBE_BYTES` into `file`, then removes it: does the disk take writes? */
async function probeWrite(file: string, sync: boolean): Promise<void> {
  const fh = await fsp.open(file, 'w');
  try {
    await writeFully(fh, Buffer.alloc(PROBE_BYTES), 0);
    if (sync) await fh.datasync();
  } finally {
    await fh.close();
    await fsp.rm(file, { force: true });
  }
}

/**
 * Removes the temp files of offsets writes that never reached their rename
 * (a process killed in between): nothing else would, and one could be left
 * per kill. Safe only under the folder's lock, which no other log can hold.
 */
async function removeOffsetTemps(offsetsDir: string): Promise<void> {
  for (const name of await fsp.readdir(offsetsDir)) {
    if (/\.tmp-\d+-\d+$/.test(name)) await fsp.rm(path.join(offsetsDir, name), { force: true });
  }
}
