import { randomUUID } from 'node:crypto';
import type { Collection as MongoColl, Db, Filter, MongoClient, Sort } from 'mongodb';
import type { Logger } from 'pino';
import { retry } from '../resilience/retry';
import { RecentMap } from '../domain/recent-map';
import { WriteBatcher } from './mongo-batch';
import { closeMongo, connectMongo, DEFAULT_MONGO_UPDATE_CONCURRENCY, isFerretDb, redactUri, type MongoConnectOptions } from './mongo-client';
import type { Collection, Doc, FindQuery, Position, ReadStore, ApplyStep } from './port';

/**
 * Bookkeeping stored beside a document's fields, never returned by get/find:
 * the last offset applied per stream, a version number, and a token naming the
 * write that produced this version.
 */
const POSITIONS = '_pos';
const VERSION = '_ver';
const TOKEN = '_tok';

interface Bookkeeping {
  [POSITIONS]?: Record<string, number>;
  [VERSION]?: number;
  [TOKEN]?: string;
}

type Stored = Doc & Bookkeeping;

/**
 * A claim on the next version of one document (FerretDB only, see MongoReadStore).
 * It holds the whole write, so any writer that finds it can finish it.
 */
interface WriteTicket {
  _id: string;
  collection: string;
  /** The token of the version this write replaces. */
  base: string | null;
  /** The next version; null deletes the document. */
  next: Stored | null;
  at: number;
}

export const TICKETS_COLLECTION = '_chatflow_write_tickets';

/** A write lost to a concurrent writer is retried this many times before giving up. */
const MAX_ATTEMPTS = 100;
/** Thrown by one optimistic write that lost to a concurrent one (retried). */
const CONFLICT = new Error('conflicting concurrent write');
/** A ticket younger than this belongs to a live writer: wait for it rather than finishing its write. */
const TICKET_GRACE_MS = 2_000;
/** Documents per collection whose last version this process wrote are remembered (see MongoCollection.known). */
const KNOWN_MAX = 10_000;

export interface MongoReadStoreOptions {
  logger: Logger;
  /**
   * Guard every update with a write ticket (an insert on a unique `_id`, see
   * below). Default: only on FerretDB, whose conditional updates are not atomic.
   */
  writeTickets?: boolean;
  /**
   * Most replaces of documents sent in one command (see WriteBatcher.replace);
   * at most the process's update places (CHATFLOW_MONGO_UPDATE_CONCURRENCY).
   * Default 8; 1: each in a command of its own.
   */
  replaceBatch?: number;
}

/** Replaces per command unless told (the default number of update places). */
const REPLACE_BATCH = DEFAULT_MONGO_UPDATE_CONCURRENCY;

/**
 * Read models in MongoDB (or FerretDB v1). Each document carries the last log
 * offset it applied per stream and a version: apply() reads, evolves, and
 * writes back only if the version is unchanged (a new document is an insert,
 * which fails on the duplicate `_id` instead), retrying on conflict. So
 * replays are no-ops and concurrent projectors never lose an update.
 *
 * FerretDB v1 evaluates an update's filter on a read made before its write,
 * with no transaction between them: two "conditional" replaces of the same
 * version can both succeed. Its atomic primitive is the unique index on
 * insert, so there a writer first inserts a ticket `<collection>/<id>#<version+1>`
 * holding its whole write; only the ticket's owner writes that version, and a
 * writer that finds a ticket left by a crashed one completes it (roll forward).
 */
export class MongoReadStore implements ReadStore {
  readonly persistent = true;
  private readonly collections = new Map<string, MongoCollection<Doc>>();
  private readonly logger: Logger;
  /** The write tickets of every collection live in one (FerretDB only). */
  private readonly tickets?: WriteBatcher<WriteTicket>;

  constructor(
    readonly db: Db,
    private readonly options: MongoReadStoreOptions & { writeTickets: boolean },
    private readonly client?: MongoClient,
  ) {
    this.logger = options.logger;
    if (options.writeTickets) {
      const onLost = (count: number, err: unknown) =>
        this.logger.warn({ engine: 'mongodb', count, err: err instanceof Error ? err.message : String(err) }, 'could not delete spent write tickets; they stay, and are harmless');
      this.tickets = new WriteBatcher(db.collection<WriteTicket>(TICKETS_COLLECTION), { onLost });
    }
  }

  static async connect(opts: MongoConnectOptions & Pick<MongoReadStoreOptions, 'writeTickets' | 'replaceBatch'>): Promise<MongoReadStore> {
    const { client, db } = await connectMongo(opts);
    const ferret = await isFerretDb(db);
    const writeTickets = opts.writeTickets ?? ferret;
    // A command of n replaces holds n of the process's update places (UpdateGate).
    const places = opts.updateConcurrency ?? DEFAULT_MONGO_UPDATE_CONCURRENCY;
    const wanted = opts.replaceBatch ?? REPLACE_BATCH;
    const replaceBatch = places > 0 ? Math.min(wanted, places) : wanted;
    opts.logger.info({ engine: 'mongodb', uri: redactUri(opts.uri), db: db.databaseName, ferretdb: ferret, writeTickets, replaceBatch }, 'read store on MongoDB');
    return new MongoReadStore(db, { logger: opts.logger, writeTickets, replaceBatch }, client);
  }

  collection<D extends Doc>(name: string, indexes: readonly (keyof D & string)[] = []): Collection<D> {
    let c = this.collections.get(name);
    if (!c) {
      c = new MongoCollection<Doc>(this.db.collection<Stored>(name), indexes, this.logger, this.options.replaceBatch ?? REPLACE_BATCH, this.tickets);
      this.collections.set(name, c);
    }
    return c as unknown as Collection<D>;
  }

  /** Drops the named collections (a projector rebuilding its read models from the log). */
  async drop(names: readonly string[]): Promise<void> {
    const existing = new Set((await this.db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
    for (const name of names) {
      if (existing.has(name)) await this.db.dropCollection(name);
      // Handles taken before the drop stay valid: they create their indexes again on next use.
      this.collections.get(name)?.indexesDropped();
    }
    if (existing.has(TICKETS_COLLECTION)) await this.db.collection<WriteTicket>(TICKETS_COLLECTION).deleteMany({ collection: { $in: [...names] } });
  }

  /**
   * Empties the database (tests): drops its collections one by one. Not
   * dropDatabase: FerretDB v1 deletes the SQLite file under connections that
   * still map it, and crashes with SIGBUS (seen on this stack).
   */
  async dropDatabase(): Promise<void> {
    await dropAllCollections(this.db);
    for (const c of this.collections.values()) c.indexesDropped();
  }

  async close(): Promise<void> {
    await this.tickets?.flush();
    if (this.client) await closeMongo(this.client, this.logger);
  }
}

class MongoCollection<D extends Doc> implements Collection<D> {
  private ready?: Promise<void>;
  /** Per-document queue: this process's writers of one document take turns (fewer conflicts). */
  private readonly writing = new Map<string, Promise<void>>();
  /**
   * The version of each document this process last wrote (null: deleted), least
   * recently written first. A write starts from it instead of reading the
   * document back: if another writer moved the document on since, the versioned
   * write fails like any lost race and the retry reads the document. Read
   * models have one writer at a time (the projector owning the partition), so
   * this saves the read of nearly every update. Bounded by a ring (the
   * oldest written is forgotten first; forgetting one costs its next write a read).
   */
  private readonly known = new RecentMap<string, Stored | null>(KNOWN_MAX);
  /** Writes made together (a projector's batch) are sent together: new documents in one command, replaces in few. */
  private readonly batch: WriteBatcher<Stored>;

  constructor(
    private readonly coll: MongoColl<Stored>,
    private readonly indexFields: readonly string[],
    private readonly logger: Logger,
    replaceBatch: number,
    private readonly tickets?: WriteBatcher<WriteTicket>,
  ) {
    this.batch = new WriteBatcher(coll, { maxReplaces: replaceBatch });
  }

  async get(id: string): Promise<D | null> {
    await this.indexed();
    const raw = await this.coll.findOne({ _id: id });
    return raw ? strip<D>(raw) : null;
  }

  async find(query: FindQuery<D>): Promise<D[]> {
    await this.indexed();
    let cursor = this.coll.find(toFilter(query));
    if (query.sort) cursor = cursor.sort({ [query.sort.field]: query.sort.direction } as Sort);
    if (query.limit !== undefined) cursor = cursor.limit(query.limit);
    return (await cursor.toArray()).map((raw) => strip<D>(raw));
  }

  async count(where?: FindQuery<D>['where']): Promise<number> {
    await this.indexed();
    return this.coll.countDocuments(toFilter({ where }));
  }

  apply(id: string, position: Position, evolve: (doc: D | null) => D | null): Promise<void> {
    return this.applyMany(id, [{ position, evolve }]);
  }

  applyMany(id: string, steps: readonly ApplyStep<D>[]): Promise<void> {
    const previous = this.writing.get(id) ?? Promise.resolve();
    const mine = previous.then(() => this.applyNow(id, steps));
    const settled = mine.catch(() => undefined);
    this.writing.set(id, settled);
    void settled.then(() => {
      if (this.writing.get(id) === settled) this.writing.delete(id);
    });
    return mine;
  }

  private async applyNow(id: string, steps: readonly ApplyStep<D>[]): Promise<void> {
    await this.indexed();
    try {
      // A conflicting concurrent write: read again and fold again, after a short random wait.
      await retry((attempt) => this.applyOnce(id, steps, attempt === 1), { attempts: MAX_ATTEMPTS, baseMs: 2, maxMs: 100, jitter: 'full', retryable: (err) => err === CONFLICT });
    } catch (err) {
      this.known.delete(id);
      if (err !== CONFLICT) throw err;
      throw new Error(`read model ${this.coll.collectionName}/${id}: gave up after ${MAX_ATTEMPTS} conflicting concurrent writes`);
    }
  }

  /**
   * One optimistic write of the steps `id` has not seen; throws CONFLICT if another writer got there first.
   * A first attempt starts from the version this process last wrote, or, for a document it has not
   * written, tries to create it (what a read finding nothing would lead to; a document that exists
   * refuses the insert on its `_id`, and is then read); a retry always reads.
   */
  private async applyOnce(id: string, steps: readonly ApplyStep<D>[], first: boolean): Promise<void> {
    let current: Stored | null;
    if (first && this.known.has(id)) current = this.known.get(id) ?? null;
    else if (first) {
      const created = this.foldFromNothing(id, steps);
      if (created && (await this.insert(created))) return this.remember(id, created);
      current = await this.coll.findOne({ _id: id });
    } else current = await this.coll.findOne({ _id: id });
    const { changed, next } = this.fold(id, current, steps);
    if (!changed) return this.remember(id, current);
    const written = current === null ? await this.insert(next) : this.tickets ? await this.writeWithTicket(this.tickets, current, next) : await this.replace(current, next);
    if (!written) {
      this.known.delete(id);
      throw CONFLICT;
    }
    this.remember(id, next);
  }

  /** The steps `current` has not seen, folded into its next version. */
  private fold(id: string, current: Stored | null, steps: readonly ApplyStep<D>[]): { changed: boolean; next: Stored | null } {
    const positions = { ...current?.[POSITIONS] };
    let evolved = current ? strip<D>(current) : null;
    let changed = false;
    for (const { position, evolve } of steps) {
      const stream = streamKey(position.stream);
      const seen = positions[stream];
      if (seen !== undefined && seen >= position.offset) continue;
      evolved = evolve(evolved);
      positions[stream] = position.offset;
      changed = true;
    }
    const next: Stored | null = evolved && {
      ...evolved,
      _id: id,
      [POSITIONS]: positions,
      [VERSION]: (current?.[VERSION] ?? 0) + 1,
      [TOKEN]: randomUUID(),
    };
    return { changed, next };
  }

  /**
   * The document the steps would create if none exists yet, or null when they create none. An evolve
   * that throws on nothing (it expects the document to exist) is not an error here: the document is read.
   */
  private foldFromNothing(id: string, steps: readonly ApplyStep<D>[]): Stored | null {
    try {
      return this.fold(id, null, steps).next;
    } catch {
      return null;
    }
  }

  private remember(id: string, doc: Stored | null): void {
    this.known.set(id, doc);
  }

  /** Creates a document; false if another writer created it first. */
  private insert(next: Stored | null): Promise<boolean> {
    return next === null ? Promise.resolve(true) : this.batch.insert(next);
  }

  /** Replaces (or deletes) `current` if it is still the stored version; false otherwise. */
  private async replace(current: Stored, next: Stored | null): Promise<boolean> {
    if (next !== null) return this.batch.replace(VERSION, current[VERSION], next);
    const filter = { _id: current._id, [VERSION]: current[VERSION] ?? { $exists: false } } as Filter<Stored>;
    return (await this.coll.deleteOne(filter)).deletedCount === 1;
  }

  private async writeWithTicket(tickets: WriteBatcher<WriteTicket>, current: Stored, next: Stored | null): Promise<boolean> {
    const ticket: WriteTicket = {
      _id: `${this.coll.collectionName}/${current._id}#${(current[VERSION] ?? 0) + 1}`,
      collection: this.coll.collectionName,
      base: current[TOKEN] ?? null,
      next,
      at: Date.now(),
    };
    if (!(await tickets.insert(ticket))) {
      await this.settle(tickets, ticket._id, current);
      return false;
    }
    try {
      // While the ticket is ours nobody else writes over this version, so the version check cannot race.
      // It fails if the document moved on before we took the ticket (retry), or if a writer rolled our
      // write forward for us (the retry then finds our position applied).
      return await this.replace(current, next);
    } finally {
      // Spent either way: the document is past this version, or a retry reads it. Only a writer still holding
      // the version it was built on asks for this ticket again (settle: it waits, or its roll-forward finds
      // the document moved on), so it is deleted with the others of the next LATER_MS, in one command.
      tickets.deleteLater(ticket._id);
    }
  }

  /**
   * Another writer holds the ticket for the next version. A fresh one is left to
   * its owner; an old one was left by a crash: finish its write (roll forward).
   * One built on another version of the document (a stale or earlier-life ticket)
   * has no future and is removed.
   */
  private async settle(tickets: WriteBatcher<WriteTicket>, ticketId: string, current: Stored): Promise<void> {
    const held = await tickets.coll.findOne({ _id: ticketId });
    if (!held) return;
    if (held.base === (current[TOKEN] ?? null)) {
      if (Date.now() - held.at < TICKET_GRACE_MS) return;
      this.logger.warn({ engine: 'mongodb', ticket: ticketId }, 'completing a read-model write left unfinished by another writer');
      await this.replace(current, held.next);
    }
    await tickets.delete(ticketId);
  }

  /** The collection was dropped: indexes are created again, and nothing written before is known. */
  indexesDropped(): void {
    this.ready = undefined;
    this.known.clear();
  }

  /** Indexes are created once per collection, before its first query. */
  private indexed(): Promise<void> {
    this.ready ??= Promise.all(this.indexFields.map((f) => this.coll.createIndex({ [f]: 1 }, { name: `${f}_1` }))).then(
      () => undefined,
      (err: unknown) => {
        this.ready = undefined;
        this.logger.error({ engine: 'mongodb', err, collection: this.coll.collectionName }, 'creating indexes failed');
        throw err;
      },
    );
    return this.ready;
  }
}

function strip<D extends Doc>(raw: Stored): D {
  const { [POSITIONS]: _positions, [VERSION]: _version, [TOKEN]: _token, ...doc } = raw;
  return doc as D;
}

function toFilter<D extends Doc>(query: FindQuery<D>): Filter<Stored> {
  const filter: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(query.where ?? {})) {
    if (value !== undefined) filter[field] = value;
  }
  if (query.range) {
    const { field, gt, lt } = query.range;
    const equal = field in filter ? { $eq: filter[field] } : {};
    filter[field] = { ...equal, ...(gt !== undefined ? { $gt: gt } : {}), ...(lt !== undefined ? { $lt: lt } : {}) };
  }
  return filter as Filter<Stored>;
}

/** Stream names become field names: `.` and `$` are not allowed there. */
function streamKey(stream: string): string {
  return stream.replace(/[%.$]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
}

/** Drops every collection of `db`, leaving the (empty) database itself: see MongoReadStore.dropDatabase. */
export async function dropAllCollections(db: Db): Promise<void> {
  for (const c of await db.listCollections({}, { nameOnly: true }).toArray()) await db.dropCollection(c.name);
}
