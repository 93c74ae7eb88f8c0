import { TOPICS, type Consumer, type EventLog, type LoggedEvent } from '../src/eventlog/port';
import type { ApplyStep, Doc, ReadStore } from '../src/readstore/port';
import { ALL_PROJECTIONS, collectionOf, type Projection } from './definitions';

/** The projector's consumer group; workers wait for it before trusting the read models on a partition they take over. */
export const PROJECTOR_GROUP = 'projector';
/** Events per projection batch unless configured (CHATFLOW_PROJECTION_BATCH). */
const DEFAULT_BATCH = 256;

/**
 * Applies projections to a read store from the log. Writes are idempotent per
 * document (each remembers the last position it applied), so redelivery after
 * a crash changes nothing. Memory stores replay from the beginning at start.
 */
export interface ProjectionRunnerOptions {
  fromBeginning: boolean;
  group?: string;
  projections?: readonly Projection<Doc>[];
  /** Most events applied in one batch (1 = one event at a time). */
  batch?: number;
  /** Called with the delay, in ms, between each event's time and its projection. */
  onApplied?: (lagMs: number) => void;
  clock?: () => number;
  /** Told when the projector's consumer is out of its group (Kafka down) and `undefined` once back (ConsumeOptions.onProblem). */
  onProblem?: (reason: string | undefined) => void;
  /**
   * Told when batches keep failing (the read store unreachable or refusing
   * writes), with why, again at most every STUCK_REPORT_MS while they do, and
   * `undefined` once one succeeds. Also told when one attempt has not
   * returned for STUCK_REPORT_MS (an operation that never answers).
   */
  onStoreProblem?: (reason: string | undefined) => void;
}

/** `topic/partition`, one string per stream (not one per event): the stores compare it per step. */
const streams = new Map<string, string[]>();
function streamOf(e: LoggedEvent): string {
  let byPartition = streams.get(e.topic);
  if (!byPartition) streams.set(e.topic, (byPartition = []));
  return (byPartition[e.partition] ??= `${e.topic}/${e.partition}`);
}

/** How often a projector whose writes keep failing (or hang) says so. */
const STUCK_REPORT_MS = 15_000;

/**
 * One partition's events waiting for their batch. The events handed out
 * since the last batch began share one promise (`whenApplied`), resolved once
 * the last of them is applied: a promise, a closure and a record per event
 * were ~1 KB of the event loop's garbage per message at saturation.
 */
interface PartitionQueue {
  events: LoggedEvent[];
  flushing: boolean;
  /** Settles the promise of the events queued so far, once they are all applied. */
  applied: (() => void) | undefined;
  whenApplied: Promise<void> | undefined;
}

/**
 * Applies projections to a read store from the log. Writes are idempotent per
 * document (each remembers the last position it applied), so redelivery after
 * a crash changes nothing. Memory stores replay from the beginning at start.
 *
 * Events are applied in batches: the consumer hands up to `batch` events per
 * partition (in log order); whatever of a partition has arrived is grouped by
 * document and each document gets its events in one write. One batch at a
 * time per partition, so a document sees a partition's events in log order;
 * a batch that fails is retried (backoff) before the next one, as a single
 * event was before. Partitions proceed in parallel; `batch` = 1 is the
 * one-event-at-a-time projector of before.
 */
export class ProjectionRunner {
  private consumer?: Consumer;
  /** Per topic/partition: events handed out, waiting for their batch. */
  private readonly queues = new Map<string, PartitionQueue>();
  private stopped = false;

  constructor(
    private readonly log: EventLog,
    private readonly store: ReadStore,
    private readonly options: ProjectionRunnerOptions,
  ) {}

  private get projections(): readonly Projection<Doc>[] {
    return this.options.projections ?? ALL_PROJECTIONS;
  }

  async start(): Promise<void> {
    this.consumer = await this.log.consume({
      group: this.options.group ?? PROJECTOR_GROUP,
      topics: ['sessions', 'conversations'],
      fromBeginning: this.options.fromBeginning,
      concurrencyPerPartition: Math.max(1, this.options.batch ?? DEFAULT_BATCH),
      handle: (e) => this.enqueue(e),
      onProblem: this.options.onProblem,
    });
  }

  private enqueue(e: LoggedEvent): Promise<void> {
    const key = streamOf(e);
    let queue = this.queues.get(key);
    if (!queue) this.queues.set(key, (queue = { events: [], flushing: false, applied: undefined, whenApplied: undefined }));
    queue.events.push(e);
    const q = queue;
    q.whenApplied ??= new Promise<void>((r) => (q.applied = r));
    if (!q.flushing) void this.flush(q);
    return q.whenApplied;
  }

  /** One partition's events, a batch at a time (partitions proceed in parallel, as before batching). */
  private async flush(queue: PartitionQueue): Promise<void> {
    queue.flushing = true;
    try {
      // Let the events handed out in the same tick join the batch.
      await new Promise((r) => setImmediate(r));
      while (queue.events.length > 0 && !this.stopped) {
        // The events queued up to now are told together, after the last of them is applied.
        const applied = queue.applied;
        queue.applied = queue.whenApplied = undefined;
        const queued = queue.events;
        queue.events = [];
        const size = Math.max(1, this.options.batch ?? DEFAULT_BATCH);
        for (let from = 0; from < queued.length; from += size) {
          const batch = queued.length <= size ? queued : queued.slice(from, from + size);
          if (!(await this.applyRetrying(batch))) return; // stopped: left unacknowledged, redelivered after a restart
          if (this.options.onApplied) {
            const now = (this.options.clock ?? Date.now)();
            for (const e of batch) {
              const t = e.event.time?.getTime();
              if (t !== undefined) this.options.onApplied(now - t);
            }
          }
        }
        applied?.();
      }
    } finally {
      queue.flushing = false;
    }
  }

  /** A batch applied, tried again with backoff while the store fails; false if the runner stopped meanwhile. */
  private async applyRetrying(batch: readonly LoggedEvent[]): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.watched(this.applyBatch(batch), batch[0]!);
        this.storeWorks();
        return true;
      } catch (err) {
        if (this.stopped) return false;
        this.storeFails(err, attempt);
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * 2 ** Math.min(attempt, 6))));
      }
    }
  }

  /** Since when batches have kept failing (null: they work), and when that was last said. */
  private failing: { since: number; toldAt: number } | null = null;

  private storeFails(err: unknown, attempt: number): void {
    const now = Date.now();
    if (this.failing && now - this.failing.toldAt < STUCK_REPORT_MS) return;
    this.failing = { since: this.failing?.since ?? now, toldAt: now };
    const why = err instanceof Error ? err.message : String(err);
    this.options.onStoreProblem?.(`read-model writes failing for ${Math.round((now - this.failing.since) / 1000)} s (attempt ${attempt}): ${why}`);
  }

  private storeWorks(): void {
    if (!this.failing) return;
    this.failing = null;
    this.options.onStoreProblem?.(undefined);
  }

  /** `attempt`, reported (not abandoned: a write may still land) when it has not returned for STUCK_REPORT_MS. */
  private async watched<T>(attempt: Promise<T>, first: LoggedEvent): Promise<T> {
    const started = Date.now();
    const timer = setInterval(() => {
      this.options.onStoreProblem?.(`a read-model write of ${first.topic}/${first.partition} (from offset ${first.offset}) has not returned for ${Math.round((Date.now() - started) / 1000)} s`);
    }, STUCK_REPORT_MS);
    timer.unref();
    try {
      return await attempt;
    } finally {
      clearInterval(timer);
    }
  }

  /** Applies one event (tests, tools): a batch of one. */
  async apply(e: LoggedEvent): Promise<void> {
    await this.applyBatch([e]);
  }

  private async applyBatch(events: readonly LoggedEvent[]): Promise<void> {
    // collection → document → its steps in log order
    const writes = new Map<Projection<Doc>, Map<string, ApplyStep<Doc>[]>>();
    for (const e of events) {
      const kind = e.event.payload?.$case;
      if (!kind) continue;
      const position = { stream: streamOf(e), offset: e.offset };
      for (const p of this.projections) {
        if (!p.canHandle.includes(kind)) continue;
        let docs = writes.get(p);
        if (!docs) writes.set(p, (docs = new Map()));
        for (const id of p.documentIds(e)) {
          let steps = docs.get(id);
          if (!steps) docs.set(id, (steps = []));
          steps.push({ position, evolve: (doc) => p.evolve(doc, e, id) });
        }
      }
    }
    const pending: Promise<void>[] = [];
    for (const [p, docs] of writes) {
      const collection = collectionOf(this.store, p);
      for (const [id, steps] of docs) pending.push(collection.applyMany(id, steps));
    }
    try {
      await Promise.all(pending);
    } catch (err) {
      // Retried only once every write of the batch has returned (a store's writes run in parallel).
      await Promise.allSettled(pending);
      throw err;
    }
  }

  caughtUp(): Promise<void> {
    return this.consumer ? this.consumer.caughtUp() : Promise.resolve();
  }

  lag(): number {
    return this.consumer?.lag() ?? 0;
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
    this.stopped = true;
  }
}

/**
 * Read-your-writes for a gateway: resolves true once the read models reflect
 * every event the log held when called (false after `timeoutMs`). The
 * projector in this process is asked directly; one in another process is
 * followed through its consumer group's progress in the log.
 */
export function readModelsSettled(log: EventLog, local: ProjectionRunner | undefined): (timeoutMs: number) => Promise<boolean> {
  return (timeoutMs) => {
    if (!local && !log.groupCaughtUp) return Promise.resolve(true);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const settled = local ? local.caughtUp().then(() => true) : log.groupCaughtUp!(PROJECTOR_GROUP, TOPICS, timeoutMs);
    return Promise.race([settled.catch(() => false), timeout]).finally(() => clearTimeout(timer));
  };
}
