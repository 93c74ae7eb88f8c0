import type { Collection as MongoColl, Db } from 'mongodb';
import type { Logger } from 'pino';
import { WriteBatcher } from '../readstore/mongo-batch';
import { RecentMap } from '../domain/recent-map';
import { beatPrunable, replyClaim, type ClaimRecord, type OutcomeRecord, type ReplyClaimCommand, type ReplyClaimEvent, type ReplyClaimState } from '../domain/reply-claim';
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
  /** Outcome records written before the appended mark existed (see MarkDoc): set by an update then. */
  appended?: boolean;
  appendedAt?: number;
}

/**
 * `<messageId>#appended`: the message's outcome is in the log (since
 * `appendedAt`). Inserted, never updated: marking every outcome appended was
 * the workers' one update per message, and on FerretDB v1 updates wait for
 * one another (the process's update gate, FerretDB's pool) where inserts do
 * not (issue 15: stack saturate spent ~2.5 s p50 of each message's budget slot
 * waiting there).
 */
interface MarkDoc {
  _id: string;
  messageId: string;
  appendedAt: number;
}

const outcomeId = (messageId: string) => `${messageId}#outcome`;
const markId = (messageId: string) => `${messageId}#appended`;

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
 * other reads again and the decider decides again. The outcome is marked
 * appended by inserting a mark beside it (MarkDoc). The only update on the
 * way of a message is an owner marking its own claim released (a partition
 * moved). Heartbeats are one document per worker process.
 */
export class MongoReplyClaims implements ReplyClaims {
  private readonly coll: MongoColl<ClaimDoc>;
  /** The same collection, for the appended marks. */
  private readonly marks: MongoColl<MarkDoc>;
  private readonly beats: MongoColl<BeatDoc>;
  /** Claims, outcomes and marks inserted by messages handled together go in one command. */
  private readonly inserts: WriteBatcher<ClaimDoc | MarkDoc>;
  /** Claims this process inserted and has not committed yet: their commit need not read them back. */
  private readonly held = new HeldClaims();
  /** Outcomes this process recorded, or found recorded and not appended: their confirmation need not read them. */
  private readonly unappended = new RecentMap<string, OutcomeRecord>(HELD_MAX);
  readonly deadAfterMs: number;

  private constructor(db: Db, private readonly options: MongoReplyClaimsOptions) {
    this.coll = db.collection<ClaimDoc>(options.collection ?? REPLY_CLAIMS_COLLECTION);
    this.marks = db.collection<MarkDoc>(options.collection ?? REPLY_CLAIMS_COLLECTION);
    this.beats = db.collection<BeatDoc>(options.heartbeats ?? HEARTBEATS_COLLECTION);
    this.inserts = new WriteBatcher(this.coll as MongoColl<ClaimDoc | MarkDoc>);
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
   * which grows by a few documents per message): the outcome, its appended
   * mark and generation 1 at once, then generation after generation while
   * there is one.
   */
  private async state(messageId: string, withBeats: boolean): Promise<ReplyClaimState> {
    const byId = (id: string) => this.coll.findOne({ _id: id });
    const [outcome, first] = await Promise.all([this.outcome(messageId), byId(`${messageId}#1`)]);
    const claims: ClaimRecord[] = [];
    for (let d = first, gen = 1; d; d = await byId(`${messageId}#${++gen}`)) claims.push({ gen: d.gen, owner: d.owner, released: d.released === true });
    const owners = [...new Set([...claims.map((c) => c.owner), ...(outcome && outcome.owner !== '' ? [outcome.owner] : [])])];
    const beats = owners.length === 0 || !withBeats ? [] : await Promise.all(owners.map((o) => this.beats.findOne({ _id: o })));
    return { claims, outcome, beats: Object.fromEntries(beats.flatMap((b) => (b ? [[b._id, b.at]] : []))) };
  }

  /** The message's outcome record as the decider sees it: the record and its appended mark, read at once. */
  private async outcome(messageId: string): Promise<OutcomeRecord | null> {
    const [recorded, mark] = await Promise.all([this.coll.findOne({ _id: outcomeId(messageId) }), this.marks.findOne({ _id: markId(messageId) })]);
    return outcomeOf(recorded, mark);
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
      if (first?.type === 'Unconfirmed') this.unappended.set(messageId, first.outcome);
      if (first?.type !== 'Claimed') return claimResultOf(events);
      if (await this.inserts.insert({ _id: `${messageId}#${first.gen}`, messageId, gen: first.gen, owner })) {
        this.held.add(messageId, first.gen, owner);
        return claimResultOf(events);
      }
      // Ours already (a retry after a lost answer), or another claimer won this generation: read again.
      const mine = await this.coll.findOne({ _id: `${messageId}#${first.gen}` });
      if (mine?.owner === owner && !mine.released) return claimResultOf(events);
    }
    throw new Error(`claim of ${messageId}: no decision after ${MAX_ATTEMPTS} conflicting attempts`);
  }

  /**
   * The common case in one round trip: a message nobody has claimed. Inserting
   * generation 1 succeeds only then (unique `_id`), and with no claim there is no
   * outcome — read beside the insert all the same (with its mark), so records
   * a pruner left half-deleted still answer what the decider would, unless the
   * caller knows no prune has touched them (`intact`: one command). Null: there
   * were records; decide on them.
   */
  private async claimFirst(messageId: string, owner: string, intact: boolean): Promise<ClaimResult | null> {
    const [inserted, recorded] = await Promise.all([
      this.inserts.insert({ _id: `${messageId}#1`, messageId, gen: 1, owner }),
      intact ? null : this.outcome(messageId),
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
    const mine = (): true => {
      this.unappended.set(messageId, { gen, owner, event: NO_BYTES, appended: false });
      return true;
    };
    if (await this.inserts.insert({ _id: outcomeId(messageId), messageId, gen, owner, event: Buffer.from(event) })) return mine();
    // Recorded first by someone else — or by this very commit, whose answer was lost: only then is it ours.
    const recorded = await this.coll.findOne({ _id: outcomeId(messageId) });
    return recorded?.owner === owner && recorded.gen === gen ? mine() : false;
  }

  private async claimRecord(messageId: string, gen: number): Promise<ClaimRecord[]> {
    const d = await this.coll.findOne({ _id: `${messageId}#${gen}` });
    return d ? [{ gen: d.gen, owner: d.owner, released: d.released === true }] : [];
  }

  /**
   * The decider's ConfirmAppended on the message's outcome, as one insert of
   * its appended mark. The outcome is read first only when this process did
   * not record it or find it unconfirmed itself (an outcome record is never
   * removed before it is appended, so what it knows stays true). A mark that
   * exists already (duplicate key) is the decider's "nothing to do": the
   * outcome was appended. The recorded event's bytes stay until the records
   * are pruned.
   */
  async confirmAppended(messageId: string, now: number): Promise<void> {
    const known = this.unappended.get(messageId);
    const state: ReplyClaimState = { claims: [], beats: {}, outcome: known ?? (await this.outcome(messageId)) };
    const events = replyClaim.decide({ type: 'ConfirmAppended', now }, state);
    const after = events.reduce(replyClaim.evolve, state).outcome;
    // A mark already there (false) was inserted by whoever confirmed first: nothing to do.
    if (events.length > 0 && after?.appended) await this.inserts.insert({ _id: markId(messageId), messageId, appendedAt: after.appendedAt ?? now });
    this.unappended.delete(messageId);
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
   * runs seldom, not per message): a message's generations go first, then its
   * outcome, then its appended mark, so a prune cut short leaves records that
   * still answer "answered" (a mark alone does) and are taken by the next
   * prune. An outcome appended by an update (before the marks) without
   * `appendedAt` gets it now, and goes `keepMs` later.
   */
  async prune(now: number, keepMs: number): Promise<{ messages: number; heartbeats: number }> {
    await this.coll.updateMany({ appended: true, appendedAt: { $exists: false } }, { $set: { appendedAt: now } });
    const done = await this.coll.find({ appendedAt: { $lte: now - keepMs } }, { projection: { messageId: 1 } }).limit(PRUNE_BATCH).toArray();
    const messages = [...new Set(done.map((d) => d.messageId))];
    if (messages.length > 0) {
      const outcomes = messages.map(outcomeId);
      const marks = messages.map(markId);
      await this.coll.deleteMany({ messageId: { $in: messages }, _id: { $nin: [...outcomes, ...marks] } });
      await this.coll.deleteMany({ _id: { $in: outcomes } });
      await this.coll.deleteMany({ _id: { $in: marks } });
    }
    const silent = (await this.beats.find({}).toArray()).filter((b) => beatPrunable(b.at, now, this.deadAfterMs, keepMs)).map((b) => b._id);
    // A worker beating again meanwhile is not removed (its beat is past the bound), or else recreated by its next beat.
    const gone = silent.length === 0 ? 0 : (await this.beats.deleteMany({ _id: { $in: silent }, at: { $lte: now - Math.max(keepMs, 10 * this.deadAfterMs) } })).deletedCount;
    return { messages: messages.length, heartbeats: gone };
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

const NO_BYTES = new Uint8Array(0);

/**
 * The outcome as the decider sees it: the record, appended if it has a mark
 * (or was marked by an update before the marks). A mark without its record is
 * a prune cut short between the two (the mark goes last): the outcome was
 * appended, and that is all that still decides anything.
 */
function outcomeOf(recorded: ClaimDoc | null, mark: MarkDoc | null): OutcomeRecord | null {
  const appendedAt = mark?.appendedAt ?? recorded?.appendedAt;
  const at = appendedAt !== undefined ? { appendedAt } : {};
  if (recorded) return { gen: recorded.gen, owner: recorded.owner, event: bytes(recorded.event), appended: mark !== null || recorded.appended === true, ...at };
  return mark ? { gen: 0, owner: '', event: NO_BYTES, appended: true, ...at } : null;
}

function bytes(v: ClaimDoc['event']): Uint8Array {
  if (!v) return NO_BYTES;
  if (v instanceof Uint8Array) return v;
  return new Uint8Array(v.buffer);
}
