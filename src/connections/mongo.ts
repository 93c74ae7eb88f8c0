import type { Collection as MongoColl, Db, MongoClient } from 'mongodb';
import type { Logger } from 'pino';
import { connectMongo, isDuplicateKeyError, type MongoConnectOptions } from '../readstore/mongo-client';
import { admission, admissionStateOf } from '../domain/admission';
import { acquireResultOf, type AcquireRequest, type AcquireResult, type ConnectionRegistry, type Lease } from './port';

/** One held slot: a lease document, keyed by its session. */
interface SlotClaim extends Lease {
  /** `sessionId`: never reused, so a delete by `_id` can never hit a later lease. */
  _id: string;
  /** Slot number, 0 ≤ n < maxClients; unique. */
  n: number;
}

export const CONNECTIONS_COLLECTION = 'active_connections';
/** Conflicting acquires are retried this many times (each re-reads the slots) before giving up. */
const MAX_ATTEMPTS = 50;

export interface MongoRegistryOptions {
  logger: Logger;
  collection?: string;
}

/**
 * Admission on MongoDB, atomic across every gateway sharing the database, on
 * MongoDB and on FerretDB v1 alike. A held slot is a document with a unique
 * slot number `n` below maxClients and a unique `clientId`; a free slot is no
 * document at all. Acquire inserts a claim on a free slot number: the unique
 * index on `n` makes "at most maxClients" atomic, the one on `clientId` makes
 * "one connection per client" atomic, with no transaction and no
 * findOneAndUpdate. (FerretDB v1 evaluates an update's filter on a read made
 * before the write, so two gateways could both claim the same free slot
 * document with findOneAndUpdate; only its unique indexes and deletes by `_id`
 * are atomic there.) Release and expiry delete by `_id`: exactly one caller
 * sees each lease go.
 */
export class MongoConnectionRegistry implements ConnectionRegistry {
  readonly leasesOutliveProcess = true;
  private readonly coll: MongoColl<SlotClaim>;
  private ready?: Promise<void>;
  private nextRead?: Promise<SlotClaim[]>;
  /** Slot numbers this process is inserting claims on right now. */
  private readonly claiming = new Map<number, Promise<unknown>>();
  /** Expired leases this registry evicted to admit someone: reported by the next expire(). */
  private evicted: Lease[] = [];

  constructor(
    db: Db,
    private readonly options: MongoRegistryOptions,
    private readonly client?: MongoClient,
  ) {
    this.coll = db.collection<SlotClaim>(options.collection ?? CONNECTIONS_COLLECTION);
  }

  static async connect(opts: MongoConnectOptions & { collection?: string }): Promise<MongoConnectionRegistry> {
    const { client, db } = await connectMongo(opts);
    return MongoConnectionRegistry.on(db, opts, client);
  }

  /** A registry on a database connection opened elsewhere; closed by this registry only when `client` is given. */
  static async on(db: Db, opts: MongoRegistryOptions, client?: MongoClient): Promise<MongoConnectionRegistry> {
    const registry = new MongoConnectionRegistry(db, { logger: opts.logger, collection: opts.collection }, client);
    await registry.indexed();
    opts.logger.info({ engine: 'mongodb', db: db.databaseName }, 'connection registry on MongoDB');
    return registry;
  }

  /**
   * Reads the held slots, lets the admission decider decide, and carries out
   * its events: expired leases it names are deleted (each by exactly one
   * caller), an admission inserts a claim on a free slot number. The insert is
   * the atomic commit; when it loses a race (duplicate key on the slot number
   * or the client id) the slots are read again and the decider decides again.
   */
  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    await this.indexed();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; ) {
      const held = await this.slots();
      const events = admission.decide({ type: 'Acquire', ...r }, admissionStateOf(held.map(toLease)));
      const outcome = acquireResultOf(events);
      if (!outcome.ok) return outcome;
      const expired = events.flatMap((e) => (e.type === 'Expired' ? [e.lease.sessionId] : []));
      await Promise.all(held.filter((h) => expired.includes(h._id)).map((h) => this.evict(h, r.now)));
      const taken = new Set(held.filter((h) => !expired.includes(h._id)).map((h) => h.n));
      // A random free slot no acquire of this process is trying: other gateways rarely pick the same.
      const free: number[] = [];
      for (let n = 0; n < r.maxClients; n++) if (!taken.has(n) && !this.claiming.has(n)) free.push(n);
      if (free.length === 0) {
        // Every free number is being claimed by this process right now: decide again after those.
        await Promise.race(this.claiming.values());
        continue;
      }
      const n = pick(free);
      const claim = this.coll.insertOne({ _id: r.sessionId, n, ...outcome.lease });
      this.claiming.set(n, claim.catch(() => undefined));
      try {
        await claim;
        return outcome;
      } catch (err) {
        // The slot number was just taken elsewhere, or the client connected elsewhere: decide again.
        if (!isDuplicateKeyError(err)) throw err;
        attempt++;
      } finally {
        this.claiming.delete(n);
      }
    }
    throw new Error(`admission of ${r.clientId}: no decision after ${MAX_ATTEMPTS} conflicting attempts`);
  }

  async release(sessionId: string): Promise<boolean> {
    const held = await this.coll.find({ _id: sessionId }).toArray();
    const events = admission.decide({ type: 'Release', sessionId }, admissionStateOf(held.map(toLease)));
    if (events.length === 0) return false;
    return (await this.coll.deleteOne({ _id: sessionId })).deletedCount === 1;
  }

  async renew(gatewayId: string, now: number, leaseMs: number): Promise<string[]> {
    const held = await this.coll.find({ gatewayId }).toArray();
    const renewed = admission.decide({ type: 'Renew', gatewayId, now, leaseMs }, admissionStateOf(held.map(toLease)));
    const ids = renewed.flatMap((e) => (e.type === 'Renewed' ? [e.sessionId] : []));
    if (ids.length === 0) return [];
    // One write for the lot; the guard keeps a lease that expired meanwhile (and may be swept) expired.
    // Such a lease is reported renewed this once; the next renewal no longer finds it alive and says so.
    await this.coll.updateMany({ _id: { $in: ids }, expiresAt: { $gt: now } }, { $set: { expiresAt: now + leaseMs } });
    return ids;
  }

  async expire(now: number): Promise<Lease[]> {
    const candidates = await this.coll.find({ expiresAt: { $lte: now } }).toArray();
    const decided = admission.decide({ type: 'Expire', now }, admissionStateOf(candidates.map(toLease)));
    const ids = new Set(decided.flatMap((e) => (e.type === 'Expired' ? [e.lease.sessionId] : [])));
    const mine = await Promise.all(candidates.filter((c) => ids.has(c._id)).map(async (c) => ((await this.remove(c, now)) ? toLease(c) : null)));
    const evicted = this.evicted;
    this.evicted = [];
    return [...evicted, ...mine.filter((l): l is Lease => l !== null)];
  }

  async count(): Promise<number> {
    return this.coll.countDocuments({});
  }

  async close(): Promise<void> {
    await this.client?.close();
  }

  /**
   * Every held slot, read after this call: acquires arriving together share one
   * read (on FerretDB each query scans the collection, so 200 simultaneous
   * acquires reading 200 times cost seconds).
   */
  private slots(): Promise<SlotClaim[]> {
    this.nextRead ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.nextRead = undefined;
      return this.coll.find({}).toArray();
    });
    return this.nextRead;
  }

  /** Frees an expired slot to admit someone; the lease is reported by the next expire(). */
  private async evict(claim: SlotClaim, now: number): Promise<void> {
    if (await this.remove(claim, now)) this.evicted.push(toLease(claim));
  }

  /** Deletes an expired claim; true for exactly one of any concurrent callers. */
  private async remove(claim: SlotClaim, now: number): Promise<boolean> {
    return (await this.coll.deleteOne({ _id: claim._id, expiresAt: { $lte: now } })).deletedCount === 1;
  }

  private indexed(): Promise<void> {
    this.ready ??= Promise.all([
      this.coll.createIndex({ n: 1 }, { unique: true, name: 'slot_unique' }),
      this.coll.createIndex({ clientId: 1 }, { unique: true, name: 'client_unique' }),
    ]).then(
      () => undefined,
      (err: unknown) => {
        this.ready = undefined;
        this.options.logger.error({ engine: 'mongodb', err }, 'creating the connection registry indexes failed');
        throw err;
      },
    );
    return this.ready;
  }
}

function toLease(c: SlotClaim): Lease {
  return {
    clientId: c.clientId, sessionId: c.sessionId, gatewayId: c.gatewayId, conversationId: c.conversationId,
    acquiredAt: c.acquiredAt, expiresAt: c.expiresAt,
  };
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}
