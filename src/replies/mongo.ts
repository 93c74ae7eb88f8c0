import type { Collection as MongoColl, Db } from 'mongodb';
import type { Logger } from 'pino';
import { isDuplicateKeyError } from '../readstore/mongo-client';
import { RecentMap } from '../domain/recent-map';
import { beatPrunable, CONFIRM_APPENDED_IF, replyClaim, type ClaimRecord, type OutcomeRecord, type ReplyClaimCommand, type ReplyClaimEvent, type ReplyClaimState } from '../domain/reply-claim';
import { claimResultOf, type ClaimResult, type ReplyClaims, type ReplyClaimsOptions } from './port';

export const REPLY_CLAIMS_COLLECTION = 'reply_claims';
export const HEARTBEATS_COLLECTION = 'heartbeats';
/** Claims lost to a concurrent claimer are decided again this many times before giving up. */
const MAX_ATTEMPTS = 20;
/** Messages whose records one prune removes at most (the next prune takes the rest). */
const PRUNE_BATCH = 5_000;

/** `<messageId>#<gen>`: one generation's claim; `<messageId>#outcome`: the message's outcome. */
interface ClaimDoc {
  _id: string;
  messageId: string;
  gen: number;
  owner: string;
  released?: boolean;
  /** Outcome records only. */
  event?: Uint8Array | { buffer: Uint8Array };
  appended?: boolean;
  appendedAt?: number;
}

interface BeatDoc {
  _id: string;
  at: number;
}

export interface MongoReplyClaimsOptions extends ReplyClaimsOptions {
  logger: Logger;
  collection?: string;
  heartbeats?: string;
}

/**
 * Reply claims in MongoDB (or FerretDB v1), shared by every worker. Each
 * generation's claim and the outcome are inserted on unique `_id`s — the one
 * primitive atomic on FerretDB v1 as on MongoDB — so of two workers taking the
 * same generation, or committing an outcome, exactly one insert succeeds; the
 * other reads again and the decider decides again. The only updates are an
 * owner marking its own claim released and the outcome appended. Heartbeats
 * are one document per worker process.
 */
export class MongoReplyClaims implements ReplyClaims {
  private readonly coll: MongoColl<ClaimDoc>;
  private readonly beats: MongoColl<BeatDoc>;
  /** Claims this process inserted and has not committed yet: their commit need not read them back. */
  private readonly held = new HeldClaims();
  readonly deadAfterMs: number;

  private constructor(db: Db, private readonly options: MongoReplyClaimsOptions) {
    this.coll = db.collection<ClaimDoc>(options.collection ?? REPLY_CLAIMS_COLLECTION);
    this.beats = db.collection<BeatDoc>(options.heartbeats ?? HEARTBEATS_COLLECTION);
    this.deadAfterMs = options.deadAfterMs;
  }

  /** Reply claims on a database connection opened (and closed) elsewhere. */
  static async on(db: Db, options: MongoReplyClaimsOptions): Promise<MongoReplyClaims> {
    return new MongoReplyClaims(db, options);
  }

  /**
   * The message's records and (for a Claim, the only command that asks who is
   * alive) the heartbeats of their owners. Read by `_id` only — the one lookup
   * FerretDB v1 answers from an index (any other filter scans the collection,
   * which grows by a few documents per message): the outcome and generation 1
   * at once, then generation after generation while there is one.
   */
  private async state(messageId: string, withBeats: boolean): Promise<ReplyClaimState> {
    const byId = (id: string) => this.coll.findOne({ _id: id });
    const [recorded, first] = await Promise.all([byId(`${messageId}#outcome`), byId(`${messageId}#1`)]);
    const docs = recorded ? [recorded] : [];
    for (let d = first, gen = 1; d; d = await byId(`${messageId}#${++gen}`)) docs.push(d);
    const claims: ClaimRecord[] = [];
    let outcome: OutcomeRecord | null = null;
    for (const d of docs) {
      if (d._id.endsWith('#outcome')) outcome = { gen: d.gen, owner: d.owner, appended: d.appended === true, event: bytes(d.event), ...(d.appendedAt !== undefined ? { appendedAt: d.appendedAt } : {}) };
      else claims.push({ gen: d.gen, owner: d.owner, released: d.released === true });
    }
    const owners = [...new Set(docs.map((d) => d.owner))];
    const beats = owners.length === 0 || !withBeats ? [] : await Promise.all(owners.map((o) => this.beats.findOne({ _id: o })));
    return { claims, outcome, beats: Object.fromEntries(beats.flatMap((b) => (b ? [[b._id, b.at]] : []))) };
  }

  private async decide(messageId: string, command: ReplyClaimCommand): Promise<ReplyClaimEvent[]> {
    return replyClaim.decide(command, await this.state(messageId, command.type === 'Claim'));
  }

  async claim(messageId: string, owner: string, now: number, hints: { intact?: boolean } = {}): Promise<ClaimResult> {
    const fresh = await this.claimFirst(messageId, owner, hints.intact === true);
    if (fresh) return fresh;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const events = await this.decide(messageId, { type: 'Claim', owner, now, deadAfterMs: this.deadAfterMs });
      const first = events[0];
      if (first?.type !== 'Claimed') return claimResultOf(events);
      try {
        await this.coll.insertOne({ _id: `${messageId}#${first.gen}`, messageId, gen: first.gen, owner });
        this.held.add(messageId, first.gen, owner);
        return claimResultOf(events);
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err;
        // Ours already (a retry after a lost answer), or another claimer won this generation: read again.
        const mine = await this.coll.findOne({ _id: `${messageId}#${first.gen}` });
        if (mine?.owner === owner && !mine.released) return claimResultOf(events);
      }
    }
    throw new Error(`claim of ${messageId}: no decision after ${MAX_ATTEMPTS} conflicting attempts`);
  }

  /**
   * The common case in one round trip: a message nobody has claimed. Inserting
   * generation 1 succeeds only then (unique `_id`), and with no claim there is no
   * outcome — read beside the insert all the same, so records a pruner left
   * half-deleted still answer what the decider would, unless the caller knows
   * no prune has touched them (`intact`: one command). Null: there were
   * records; decide on them.
   */
  private async claimFirst(messageId: string, owner: string, intact: boolean): Promise<ClaimResult | null> {
    const [inserted, recorded] = await Promise.all([
      this.coll.insertOne({ _id: `${messageId}#1`, messageId, gen: 1, owner }).then(
        () => true,
        (err: unknown) => {
          if (isDuplicateKeyError(err)) return false;
          throw err;
        },
      ),
      intact ? null : this.coll.findOne({ _id: `${messageId}#outcome` }),
    ]);
    if (inserted) this.held.add(messageId, 1, owner);
    if (!inserted || recorded) return null;
    const [claimed] = replyClaim.decide({ type: 'Claim', owner, now: 0, deadAfterMs: this.deadAfterMs }, replyClaim.initialState());
    return claimResultOf([claimed!]);
  }

  /**
   * Records the outcome: an insert on `<messageId>#outcome`, which only the
   * first owner to commit wins. The decider's condition that the committer
   * holds generation `gen` is read only when this process did not insert that
   * claim itself (a claim record is never taken from its owner, so what this
   * process inserted stays true); an outcome already recorded shows up as the
   * insert's duplicate key, and is then read.
   */
  async commit(messageId: string, owner: string, gen: number, event: Uint8Array): Promise<boolean> {
    const claims = this.held.has(messageId, gen, owner) ? [{ gen, owner, released: false }] : await this.claimRecord(messageId, gen);
    this.held.delete(messageId);
    const events = replyClaim.decide({ type: 'Commit', owner, gen, event }, { claims, outcome: null, beats: {} });
    if (events[0]?.type !== 'Committed') return false;
    try {
      await this.coll.insertOne({ _id: `${messageId}#outcome`, messageId, gen, owner, event: Buffer.from(event), appended: false });
      return true;
    } catch (err) {
      if (!isDuplicateKeyError(err)) throw err;
      // Recorded first by someone else — or by this very commit, whose answer was lost: only then is it ours.
      const recorded = await this.coll.findOne({ _id: `${messageId}#outcome` });
      return recorded?.owner === owner && recorded.gen === gen;
    }
  }

  private async claimRecord(messageId: string, gen: number): Promise<ClaimRecord[]> {
    const d = await this.coll.findOne({ _id: `${messageId}#${gen}` });
    return d ? [{ gen: d.gen, owner: d.owner, released: d.released === true }] : [];
  }

  /**
   * One conditional update, decided by the decider: its filter is the
   * decider's condition (CONFIRM_APPENDED_IF: an outcome record not yet
   * appended), and what it sets is the decider's event evolved into the record
   * it would have, on the state that condition stands for. A record the filter
   * does not match is one the decider leaves alone. Idempotent, so FerretDB's
   * non-atomic conditional update cannot do harm here. The recorded event's
   * bytes are dropped once it is in the log (nobody appends it again).
   */
  async confirmAppended(messageId: string, now: number): Promise<void> {
    const matched: ReplyClaimState = { claims: [], beats: {}, outcome: { gen: 0, owner: '', event: new Uint8Array(), appended: CONFIRM_APPENDED_IF.outcomeAppended } };
    const events = replyClaim.decide({ type: 'ConfirmAppended', now }, matched);
    const after = events.reduce(replyClaim.evolve, matched).outcome;
    if (events.length === 0 || !after) return;
    await this.coll.updateOne(
      { _id: `${messageId}#outcome`, appended: CONFIRM_APPENDED_IF.outcomeAppended },
      { $set: { appended: after.appended, ...(after.appendedAt !== undefined ? { appendedAt: after.appendedAt } : {}) }, $unset: { event: '' } },
    );
  }

  async release(messageId: string, owner: string, gen: number): Promise<void> {
    const events = await this.decide(messageId, { type: 'Release', owner, gen });
    if (events.length > 0) await this.coll.updateOne({ _id: `${messageId}#${gen}`, owner }, { $set: { released: true } });
  }

  async beat(owner: string, now: number): Promise<void> {
    const [e] = replyClaim.decide({ type: 'Beat', owner, now }, replyClaim.initialState());
    if (e?.type === 'Beaten') await this.beats.updateOne({ _id: e.owner }, { $set: { at: e.at } }, { upsert: true });
  }

  /**
   * claimsPrunable as queries (each scans the collection on FerretDB v1, so it
   * runs seldom, not per message): the generations of each message go before
   * its outcome, so a prune cut short leaves an outcome that still answers
   * "answered" and is taken by the next prune. An outcome appended before
   * `appendedAt` was kept gets it now, and goes `keepMs` later.
   */
  async prune(now: number, keepMs: number): Promise<{ messages: number; heartbeats: number }> {
    await this.coll.updateMany({ appended: true, appendedAt: { $exists: false } }, { $set: { appendedAt: now } });
    const done = await this.coll.find({ appended: true, appendedAt: { $lte: now - keepMs } }, { projection: { messageId: 1 } }).limit(PRUNE_BATCH).toArray();
    if (done.length > 0) {
      const outcomes = done.map((d) => d._id);
      await this.coll.deleteMany({ messageId: { $in: done.map((d) => d.messageId) }, _id: { $nin: outcomes } });
      await this.coll.deleteMany({ _id: { $in: outcomes } });
    }
    const silent = (await this.beats.find({}).toArray()).filter((b) => beatPrunable(b.at, now, this.deadAfterMs, keepMs)).map((b) => b._id);
    // A worker beating again meanwhile is not removed (its beat is past the bound), or else recreated by its next beat.
    const gone = silent.length === 0 ? 0 : (await this.beats.deleteMany({ _id: { $in: silent }, at: { $lte: now - Math.max(keepMs, 10 * this.deadAfterMs) } })).deletedCount;
    return { messages: done.length, heartbeats: gone };
  }

  async close(): Promise<void> {}
}

/** Bounded: forgetting one only costs its commit a read. */
const HELD_MAX = 10_000;

class HeldClaims {
  private readonly byMessage = new RecentMap<string, { gen: number; owner: string }>(HELD_MAX);
  add(messageId: string, gen: number, owner: string): void {
    this.byMessage.set(messageId, { gen, owner });
  }
  has(messageId: string, gen: number, owner: string): boolean {
    const h = this.byMessage.get(messageId);
    return h?.gen === gen && h.owner === owner;
  }
  delete(messageId: string): void {
    this.byMessage.delete(messageId);
  }
}

function bytes(v: ClaimDoc['event']): Uint8Array {
  if (!v) return new Uint8Array();
  if (v instanceof Uint8Array) return v;
  return new Uint8Array(v.buffer);
}
