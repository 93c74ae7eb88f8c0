import type { Collection as MongoColl, Db, MongoClient } from 'mongodb';
import type { Logger } from 'pino';
import { connectMongo, isDuplicateKeyError, type MongoConnectOptions } from '../readstore/mongo-client';
import type { AcquireRequest, AcquireResult, ConnectionRegistry, Lease } from './port';

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

  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    await this.indexed();
    const lease: Lease = {
      clientId: r.clientId, sessionId: r.sessionId, gatewayId: r.gatewayId, conversationId: r.conversationId,
      acquiredAt: r.now, expiresAt: r.now + r.leaseMs,
    };
    for (let attempt = 0; attempt < MAX_ATTEMPTS; ) {
      const held = await this.slots();
      const holder = held.find((h) => h.clientId === r.clientId);
      if (holder && holder.expiresAt > r.now) return { ok: false, reason: 'duplicate', holder: toLease(holder) };
      if (holder) {
        // The client's own lease expired (its gateway died): it no longer counts.
        await this.evict(holder, r.now);
        attempt++;
        continue;
      }
      const inRange = held.filter((h) => h.n < r.maxClients);
      const taken = new Set(inRange.map((h) => h.n));
      const free: number[] = [];
      for (let n = 0; n < r.maxClients; n++) if (!taken.has(n)) free.push(n);
      if (free.length === 0) {
        const expired = inRange.filter((h) => h.expiresAt <= r.now);
        if (expired.length === 0) return { ok: false, reason: 'full' };
        await this.evict(pick(expired), r.now);
        attempt++;
        continue;
      }
      // A random free slot no acquire of this process is trying: other gateways rarely pick the same.
      const candidates = free.filter((n) => !this.claiming.has(n));
      if (candidates.length === 0) {
        await Promise.race(this.claiming.values());
        continue;
      }
      const n = pick(candidates);
      const claim = this.coll.insertOne({ _id: r.sessionId, n, ...lease });
      this.claiming.set(n, claim.catch(() => undefined));
      try {
        await claim;
        return { ok: true, lease };
      } catch (err) {
        // The slot number was just taken elsewhere, or the client connected elsewhere: look again.
        if (!isDuplicateKeyError(err)) throw err;
        attempt++;
      } finally {
        this.claiming.delete(n);
      }
    }
    throw new Error(`admission of ${r.clientId}: no decision after ${MAX_ATTEMPTS} conflicting attempts`);
  }

  async release(sessionId: string): Promise<boolean> {
    return (await this.coll.deleteOne({ _id: sessionId })).deletedCount === 1;
  }

  async renew(gatewayId: string, now: number, leaseMs: number): Promise<number> {
    const res = await this.coll.updateMany({ gatewayId, expiresAt: { $gt: now } }, { $set: { expiresAt: now + leaseMs } });
    return res.matchedCount;
  }

  async expire(now: number): Promise<Lease[]> {
    const candidates = await this.coll.find({ expiresAt: { $lte: now } }).toArray();
    const mine = await Promise.all(candidates.map(async (c) => ((await this.remove(c, now)) ? toLease(c) : null)));
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
