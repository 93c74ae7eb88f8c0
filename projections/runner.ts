import { TOPICS, type Consumer, type EventLog, type LoggedEvent } from '../src/eventlog/port';
import type { Doc, ReadStore } from '../src/readstore/port';
import { ALL_PROJECTIONS, type Projection } from './definitions';

/** The projector's consumer group; workers wait for it before trusting the read models on a partition they take over. */
export const PROJECTOR_GROUP = 'projector';

/**
 * Applies projections to a read store from the log. Writes are idempotent per
 * document (each remembers the last position it applied), so redelivery after
 * a crash changes nothing. Memory stores replay from the beginning at start.
 */
export class ProjectionRunner {
  private consumer?: Consumer;

  constructor(
    private readonly log: EventLog,
    private readonly store: ReadStore,
    private readonly options: { fromBeginning: boolean; group?: string; projections?: readonly Projection<Doc>[] },
  ) {}

  private get projections(): readonly Projection<Doc>[] {
    return this.options.projections ?? ALL_PROJECTIONS;
  }

  async start(): Promise<void> {
    this.consumer = await this.log.consume({
      group: this.options.group ?? PROJECTOR_GROUP,
      topics: ['sessions', 'conversations'],
      fromBeginning: this.options.fromBeginning,
      // One at a time per partition: a document sees its events in log order.
      concurrencyPerPartition: 1,
      handle: (e) => this.apply(e),
    });
  }

  async apply(e: LoggedEvent): Promise<void> {
    const kind = e.event.payload?.$case;
    if (!kind) return;
    const position = { stream: `${e.topic}/${e.partition}`, offset: e.offset };
    for (const p of this.projections) {
      if (!p.canHandle.includes(kind)) continue;
      const collection = this.store.collection<Doc>(p.collection, p.indexes);
      for (const id of p.documentIds(e)) {
        await collection.apply(id, position, (doc) => p.evolve(doc, e, id));
      }
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
