import { randomUUID } from 'node:crypto';
import type { Collection as MongoColl, Db, MongoClient } from 'mongodb';
import type { Logger } from 'pino';
import type { Subscription } from '../bus/port';
import { closeMongo, connectMongo, isDuplicateKeyError, type MongoConnectOptions } from '../readstore/mongo-client';
import { freeSlot, homeSlot, pickSlot, type Walk } from './slot-pick';
import { admission, admissionStateOf, heartbeatPrunable, holderOf, leaseAsHeld, renewalKeptAll, renewedSessions, type AdmissionState, type LeaseState } from '../domain/admission';
import { orLate } from '../resilience/late';
import { acquireResultOf, type AcquireRequest, type AcquireResult, type ConnectionRegistry, type Lease, type ReleaseBus, type Renewal } from './port';

/** One held slot: a lease document, keyed by its session. */
interface SlotClaim extends Lease {
  /** `sessionId`: never reused, so a delete by `_id` can never hit a later lease. */
  _id: string;
  /** Slot number, 0 ≤ n < maxClients; unique. */
  n: number;
}

/**
 * The slots' release marker: one document, a new random `v` after each
 * release (see markFreed), and a new random `foreign` before each release of a
 * slot through another registry than its holder's (see markForeign).
 */
interface FreesMarker {
  _id: string;
  v: string;
  foreign?: string;
}
type Marker = { v: string; foreign: string };
const FREES_ID = 'freed';

/** A holder's heartbeat: its leases are held until `expiresAt`, pushed forward by each renewal. */
interface Heartbeat {
  /** The holder (a gateway process). */
  _id: string;
  expiresAt: number;
  /** When its last renewal was sent (absent on heartbeats written before it was kept). */
  renewedAt?: number;
  /**
   * How many slots the holder held when it last renewed, counted after it read
   * the release marker as `freesSeen`: while the marker is still that, none of
   * them was freed, so they are all still held (see heldAtLeast). Absent on
   * heartbeats written before it was kept.
   */
  held?: number;
  freesSeen?: string;
}

export const CONNECTIONS_COLLECTION = 'active_connections';
export const GATEWAY_HEARTBEATS_COLLECTION = 'gateway_heartbeats';
/**
 * A gateway whose heartbeat is this old is dead: its clients get back in within
 * about this long. A live gateway stops trusting its slots (and closes its
 * sessions) when no renewal succeeded for about 60 % of it. Shorter windows
 * (3 s, then 5 s) let a loaded FerretDB — answering renewals late while the
 * workers' reply claims kept it busy (CI's 500-in-processing stack test) —
 * make a live gateway close all its sessions.
 */
export const DEAD_HOLDER_MS = 8_000;
/**
 * An admission decides on a view of the slots read at most this long ago, and
 * reads it again in the background once it is older than VIEW_REFRESH_MS. What
 * a stale view misses costs little (a number claimed elsewhere: one lost insert,
 * the number marked; "full" and a duplicate are checked afresh), while on
 * FerretDB v1 each read scans the slots (1–3 s of its CPU at 7,000 under load):
 * at 2 s / 8 s the two gateways of the stack's scale run read them nearly
 * without pause during the opening.
 */
const VIEW_MAX_AGE_MS = 30_000;
const VIEW_REFRESH_MS = 10_000;
/** Conflicting acquires are retried this many times (each re-reads the slots) before giving up. */
const MAX_ATTEMPTS = 50;
/**
 * An admission whose claim lost this many races reads the slots again (the
 * losses before: the number was taken, it tries another). One loss in a row
 * is the common case of two gateways claiming at once; a duplicate client
 * (connected elsewhere since the view) costs the losses before the read.
 */
const LOSSES_BEFORE_READ = 3;
/**
 * The registry's writes of slots (claims, releases, evictions, sweeps) in
 * flight at once; the rest wait in the process, in order. The gateway's
 * registry pool holds 8 connections (src/composition/engines.ts): the others
 * stay free for the lease renewal, the sweep's and the view's reads. Before
 * this bound a wave of 125 admissions queued 125 inserts in the pool, and the
 * renewal waited behind them (10 s on a loaded FerretDB, then failed).
 */
const SLOT_WRITES_AT_ONCE = 4;
/** Where registries tell each other of releases (the new release marker), see hearReleases. */
export const RELEASES_SUBJECT = 'chatflow.registry.released';
/**
 * A full view refuses without a round trip (see refusedAsTold) while it was
 * checked against the release marker at most this long ago and no release was
 * heard of since: a notice the bus lost costs at most this long of refusals
 * while a slot is free (a client refused retries after `retry-after-ms`).
 */
const TOLD_MAX_AGE_MS = 2_000;
/** Such a view is checked again in the background, one marker read, once this old: refusals never wait for it. */
const TOLD_CHECK_MS = 500;
/**
 * Where each registry tells the others of the claims it made, once committed
 * (`{ from, claims: [clientId, sessionId][] }`, one notice per tick): a house
 * proven full by the gateways' counts says nothing of whose slots they are,
 * and a client connected through another gateway is `duplicate`, not `full`
 * (see heldElsewhere).
 */
export const CLAIMS_SUBJECT = 'chatflow.registry.claimed';
/** An admission waits at most this long for its claim's notice to reach the bus's server (a bus that stalls must not stall admissions). */
const CLAIM_TOLD_WAIT_MS = 1_000;
/** Claims heard of and kept at most (forged notices must not grow the process): beyond, they are forgotten and the store is searched instead. */
const CLAIMS_HEARD_MAX = 100_000;

export interface MongoRegistryOptions {
  logger: Logger;
  collection?: string;
  heartbeats?: string;
  /** The slots' release marker (see markFreed); default the slots' collection name + `_frees`. */
  frees?: string;
  /** See ConnectionRegistry.deadHolderMs; default DEAD_HOLDER_MS. */
  deadHolderMs?: number;
  /** Where a slot number is looked for after a lost race (tests pin it); default Math.random. */
  random?: () => number;
  /**
   * Measures how long an admission has been trying, added to the request's `now` to stamp its claim (see acquire);
   * and to a renewal's `now` to judge whether the heartbeat was still live when the store answered (see renew);
   * default Date.now. Tests move it, or stop it to speak the caller's logical time. Only those read it: the
   * registry orders its own reads (a view's `sentAt` against an admission's start) on Date.now, whatever it says.
   */
  clock?: () => number;
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
 *
 * Liveness is per gateway process, not per lease: each holder keeps one
 * heartbeat document, and its leases live as long as it does (the decider sees
 * each lease with its holder's expiry). A renewal is one upsert of that
 * document whatever the number of sessions, a sweep never frees the slot of a
 * gateway that is renewing, and a dead gateway's slots come back once its
 * heartbeat lapses (deadHolderMs), however long CHATFLOW_LEASE_MS is.
 */
export class MongoConnectionRegistry implements ConnectionRegistry {
  readonly leasesOutliveProcess = true;
  private readonly coll: MongoColl<SlotClaim>;
  private readonly beats: MongoColl<Heartbeat>;
  private readonly frees: MongoColl<FreesMarker>;
  readonly deadHolderMs: number;
  private ready?: Promise<void>;
  /** The held slots as this registry last read them, with its own claims and deletes since (see slotView). */
  private view?: SlotView;
  /** This registry's claims, deletes and lost races made while a read of the slots is out, applied to it when it lands. */
  private journal: ((view: SlotView) => void)[] = [];
  private nextRead?: Promise<SlotView>;
  private reading?: Promise<unknown>;
  /** Every holder's heartbeat, read after this call; acquires of one tick share the read (a small collection: one document per gateway process). */
  private readonly heartbeatsNow = sharedPerTick(() => this.heartbeats());
  /** The release marker, read after this call; the admissions of one tick share the read. */
  private readonly markerNow = sharedPerTick(() => this.freesNow());
  /** Slot numbers this process is inserting claims on right now. */
  private readonly claiming = new Map<number, Promise<unknown>>();
  /** When this registry's sweep last looked at the leases of holders with no heartbeat (see expire). */
  private lookedAtAll?: number;
  /** Expired leases this registry evicted to admit someone: reported by the next expire(). */
  private evicted: Lease[] = [];
  private readonly writes = new Places(SLOT_WRITES_AT_ONCE);
  /** Look-ups of single slots for heldElsewhere, one at a time: a search by client id scans every slot on FerretDB v1. */
  private readonly lookups = new Places(1);
  /** Releases heard over the bus (hearReleases): since when every notice reaches this registry, and when one last said a slot was freed. */
  private told?: Told;
  /** The heartbeats as last read: expiries only move forward, so a house full by these is full by the store's. */
  private beatsSeen?: Map<string, Heartbeat>;
  private checking?: Promise<void>;
  /** The claims this registry made and has not given back, by holder: what its heartbeats count (see renew). */
  private readonly mine = new Map<string, Set<string>>();
  /** Sessions whose slot went back with their holder's (releaseHolder): their own release has nothing to do. */
  private readonly givenBack = new Set<string>();
  /** Per holder, the release marker's `foreign` when its slots were last read (see markForeign). */
  private readonly foreignSeen = new Map<string, string>();
  /** Until when each holder's heartbeat was last written live, as far as this registry knows (see renew). */
  private readonly beatUntil = new Map<string, number>();
  /**
   * The last proof by counts (see heldAtLeast): when its marker read was sent, and the other holders' counts it
   * took. While there is one, an admission reads the marker beside the heartbeats; see also refusedAsTold.
   */
  private countedFull?: { at: number; others: Map<string, number> };
  /**
   * The house size the last admission asked for (`maxClients`): each sweep proves the house full against it
   * when it is (see keepFullProof), so that a refusal finds the proof ready.
   */
  private houseSize?: number;
  /** This registry on the bus: its own claims' notices are no news to it. */
  private readonly id = randomUUID();
  /**
   * Claims the other registries told of (CLAIMS_SUBJECT) since this one's view was read, by client: the session,
   * and when it was heard (one heard before a read was sent is in that read, if still held).
   */
  private readonly claimsHeard = new Map<string, { sessionId: string; at: number }>();
  /** The claims of this tick, told once it ends; their admissions wait for the notice to reach the bus's server. */
  private nextTelling?: { claims: [string, string][]; told: Promise<void> };

  constructor(
    db: Db,
    private readonly options: MongoRegistryOptions,
    private readonly client?: MongoClient,
  ) {
    this.coll = db.collection<SlotClaim>(options.collection ?? CONNECTIONS_COLLECTION);
    this.beats = db.collection<Heartbeat>(options.heartbeats ?? GATEWAY_HEARTBEATS_COLLECTION);
    this.frees = db.collection<FreesMarker>(options.frees ?? `${this.coll.collectionName}_frees`);
    this.deadHolderMs = options.deadHolderMs ?? DEAD_HOLDER_MS;
    this.random = options.random ?? Math.random;
    this.clock = options.clock ?? Date.now;
  }

  private readonly random: () => number;
  private readonly clock: () => number;

  static async connect(opts: MongoConnectOptions & Omit<MongoRegistryOptions, 'logger'>): Promise<MongoConnectionRegistry> {
    const { client, db } = await connectMongo(opts);
    return MongoConnectionRegistry.on(db, opts, client);
  }

  /** A registry on a database connection opened elsewhere; closed by this registry only when `client` is given. */
  static async on(db: Db, opts: MongoRegistryOptions, client?: MongoClient): Promise<MongoConnectionRegistry> {
    const registry = new MongoConnectionRegistry(db, { logger: opts.logger, collection: opts.collection, heartbeats: opts.heartbeats, frees: opts.frees, deadHolderMs: opts.deadHolderMs, random: opts.random, clock: opts.clock }, client);
    await registry.indexed();
    opts.logger.info({ engine: 'mongodb', db: db.databaseName }, 'connection registry on MongoDB');
    return registry;
  }

  /**
   * Lets the admission decider decide on the held slots, and carries out its
   * events: expired leases it names are deleted (each by exactly one caller),
   * an admission inserts a claim on a free slot number. The insert is the
   * atomic commit; when it loses a race (duplicate key on the slot number or
   * the client id) the slots are read again and the decider decides again.
   *
   * The heartbeats are read for each decision (one per gateway process), the
   * slots are this registry's view (see view): read when it has none or lost
   * a race, kept up to date with its own claims and deletes, and read again in
   * the background once older than VIEW_REFRESH_MS. Nothing it could miss
   * breaks a rule: a slot number or client taken elsewhere fails the insert
   * (and the view is read again), a lease the view names as the client's is
   * looked up by `_id` before the client is refused, and an expiry is judged
   * on fresh heartbeats. "Full" is said only on a read made after the
   * admission began: a slot freed by another gateway is never refused. That
   * read is of the release marker (one document by `_id`, see markFreed):
   * unchanged since the view was read, nothing was freed that the view
   * misses; changed, the slots are read again. Where the registries tell each
   * other of releases over the bus (hearReleases), a full house refuses
   * without that read (refusedAsTold): a slot freed through another gateway
   * is then refused until its notice arrives, or for at most TOLD_MAX_AGE_MS
   * if the bus lost it.
   *
   * A claim that loses its slot number (another gateway took it after this
   * registry's view was read) marks the number taken and tries another, with
   * no read: only the LOSSES_BEFORE_READ-th loss of one admission reads the
   * slots again (the duplicate may have been the client's: FerretDB's error
   * does not say which index). A registry fills numbers from its home on while they are its own,
   * and where that walk meets a number held elsewhere it looks at random
   * instead: a walk on from there would pick the numbers the other gateway is
   * claiming right now (its stretch's end), and lose to it wave after wave.
   */
  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    this.houseSize = request.maxClients;
    const began = this.clock();
    const stamp = () => request.now + (this.clock() - began);
    await this.indexed();
    const told = await this.refusedAsTold(request);
    if (told) return told;
    const startedAt = Date.now();
    let fresh = false;
    let lost = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; ) {
      // Each attempt is decided at the time it starts, on the caller's clock (see `stamp` for its claim's).
      const r: AcquireRequest = { ...request, now: stamp() };
      // A house this registry last saw full: the release marker is read beside the heartbeats, so that
      // refusing costs one round trip, not two (the stack's scale run: the 10,001st waited for both in a row).
      const full = fresh || !this.view || this.view.claims.size < r.maxClients ? undefined : this.view;
      const markerAt = Date.now();
      const marker = full || this.countedFull ? this.markerNow() : undefined;
      marker?.catch(() => undefined); // unused when the decider finds room after all
      let view: SlotView, beats: Map<string, Heartbeat>, heldAtLeast: number | undefined;
      if (full) {
        // A full view is decided on as it stands, however old: the marker says whether it still holds (see below).
        [view, beats] = [full, await this.heartbeatsNow()];
      } else {
        // A view short of the house may miss the other gateways' claims: their counts may still prove it full, and
        // then the slots are not read, not even in the background (the stack's scale run: a read of 10,000 slots
        // out while the first refusals came slowed them to 20–90 ms).
        beats = await this.heartbeatsNow();
        heldAtLeast = await this.heldAtLeast(beats, r.maxClients, marker && { read: marker, sentAt: markerAt });
        view = heldAtLeast !== undefined && this.view ? this.view : await this.slotView(fresh);
      }
      fresh = false;
      // The decider reads only what it needs of the view (the client's lease, the count; every lease only when a
      // holder's heartbeat is not live): no copy of 10,000 leases per admission.
      const events = admission.decide({ type: 'Acquire', ...r }, { ...view.state(beats), ...(heldAtLeast !== undefined ? { heldAtLeast } : {}) });
      const outcome = acquireResultOf(events);
      // Full by counts checked against a marker read after this admission began: no slot was freed since they were
      // taken. Unless the client holds one of them, claimed through another gateway since the view was read: then it
      // is decided again on the view, which now lists that slot (one connection per client: ALREADY_EXISTS, not full).
      if (!outcome.ok && outcome.reason === 'full' && heldAtLeast !== undefined) {
        // Found, it was just read by `_id`: decided again on the view that now lists it, with no read more.
        if (!view.byClient.has(r.clientId) && (await this.heldElsewhere(r.clientId, beats))) return acquireResultOf(admission.decide({ type: 'Acquire', ...r }, { ...this.view!.state(beats), heldAtLeast }));
        return outcome;
      }
      if (!outcome.ok) {
        // Full in a view read before this admission began: a slot freed through another gateway since may be
        // missing from it. The release marker, read now, says whether one was; if so the slots are read again
        // (admissions waiting together share the read) before deciding again.
        if (outcome.reason === 'full' && view.sentAt < startedAt) {
          const checkedAt = marker ? markerAt : Date.now();
          if ((await (marker ?? this.markerNow())).v !== view.freesAt) {
            fresh = true;
            continue;
          }
          // Nothing freed since it was read and full: it is the house as of that marker read, so it needs no
          // read of the slots (a scan of 10,000 on FerretDB v1, which refusals in a full house made every 10 s and
          // waited for every 30 s: the stack's scale run, 2026-11-25, 7.5 s for one refusal).
          view.confirmed(checkedAt);
        }
        // The view may be older than the client's last disconnect elsewhere: is that lease still there (one read by _id)?
        if (outcome.reason !== 'full' && (await this.writes.run(() => this.coll.findOne({ _id: outcome.holder.sessionId }, { projection: { _id: 1 } }))) === null) {
          this.noteGone(outcome.holder.sessionId);
          continue;
        }
        return outcome;
      }
      const expired = events.flatMap((e) => {
        const claim = e.type === 'Expired' ? view.claims.get(e.lease.sessionId) : undefined;
        return claim ? [withHolderExpiry(claim, beats)] : [];
      });
      // Sweeps free expired slots; an admission removes only what stands in its way: this client's own
      // expired lease (one lease per client), and one other expired lease when no slot number is free.
      const taken = (n: number) => view.byN.has(n) || view.marked.has(n) || this.claiming.has(n);
      const holder = holderOf(outcome.lease);
      const ours = (n: number) => this.claiming.has(n) || view.holderOf(n) === holder;
      const home = homeSlot(holder, r.maxClients);
      const inTheWay = expired.filter((h) => h.clientId === r.clientId);
      const spare = expired.find((h) => h.clientId !== r.clientId && !this.claiming.has(h.n));
      if (spare && !inTheWay.some((h) => !this.claiming.has(h.n)) && freeSlot(r.maxClients, taken, 0) === undefined) inTheWay.push(spare);
      if (inTheWay.length > 0) await Promise.all(inTheWay.map((h) => this.evict(h)));
      // Chosen after any await, and claimed (below) before the next: concurrent admissions never pick the same number.
      const walk: Walk = { from: view.walks.get(holder) ?? 0 };
      let free = pickSlot(r.maxClients, taken, ours, home, this.random, walk);
      if (walk.reached !== undefined) view.walks.set(holder, walk.reached);
      for (const h of inTheWay) if (free === undefined && !this.claiming.has(h.n) && h.n < r.maxClients) free = h.n;
      if (free === undefined) {
        // Every free number is being claimed by this process right now: decide again after those. (None being
        // claimed: the view is behind, e.g. a number freed elsewhere; read it again.)
        if (this.claiming.size === 0) {
          fresh = true;
          attempt++;
        } else await Promise.race(this.claiming.values());
        continue;
      }
      const n = free;
      let doc: SlotClaim = { _id: r.sessionId, n, ...outcome.lease, holder: holderOf(outcome.lease) };
      const claim = this.writes.run(() => {
        // A claim is stamped (acquiredAt, and its expiry counted from it) as it is sent, on the caller's clock: its
        // gateway judges it on that stamp (mayKeepClaim), as other gateways do until they see it renewed. Stamped
        // when the admission began, its lost races, reads of the slots and wait for a write place counted against
        // it: near a full house in the stack's scale run (2026-11-27) 2–11 claims came back 5–8 s after that and
        // were given back (registry_late).
        const at = stamp();
        doc = { ...doc, acquiredAt: at, expiresAt: at + r.leaseMs };
        return this.coll.insertOne(doc);
      });
      this.claiming.set(n, claim.catch(() => undefined));
      try {
        await claim;
        this.noteClaimed(doc);
        this.noteMine(doc);
        // Returned once the other registries can hear of it (see heldElsewhere).
        await this.tellClaimed(doc);
        return { ok: true, lease: { ...outcome.lease, acquiredAt: doc.acquiredAt, expiresAt: doc.expiresAt } };
      } catch (err) {
        // The slot number was just taken elsewhere, or the client connected elsewhere. The first times: the number
        // is taken, try another. Then: read the slots, decide again.
        if (!isDuplicateKeyError(err)) throw err;
        if (++lost < LOSSES_BEFORE_READ) this.noteTaken(n);
        else fresh = true;
        attempt++;
      } finally {
        this.claiming.delete(n);
      }
    }
    throw new Error(`admission of ${request.clientId}: no decision after ${MAX_ATTEMPTS} conflicting attempts`);
  }

  async release(sessionId: string): Promise<boolean> {
    // Given back with its holder's slots (releaseHolder): nothing left to do, and no place taken from the others.
    if (this.givenBack.delete(sessionId)) return false;
    return this.writes.run(async () => (this.givenBack.delete(sessionId) ? false : this.releaseNow(sessionId)));
  }

  /**
   * A read of the holder's slots, one delete of them all, its heartbeat
   * removed, one marker (and one notice). Not in line behind the single
   * releases (SLOT_WRITES_AT_ONCE): at a shutdown those are the sessions that
   * just ended, thousands of them, four writes each; the ones still waiting
   * then end here without a round trip.
   */
  async releaseHolder(holder: string): Promise<number> {
    const held = await this.coll.find({ holder }).toArray();
    const events = admission.decide({ type: 'ReleaseHolder', holder }, admissionStateOf(held.map(toLease)));
    const ids = events.flatMap((e) => (e.type === 'Released' ? [e.lease.sessionId] : []));
    this.mine.delete(holder); // before the delete: a heartbeat never counts a slot being freed (its claims were only there)
    await this.beats.deleteOne({ _id: holder });
    const { deletedCount } = ids.length ? await this.coll.deleteMany({ _id: { $in: ids } }) : { deletedCount: 0 };
    // Only once deleted: if the delete fails, the sessions' own releases still try.
    for (const id of ids) {
      this.givenBack.add(id);
      this.noteGone(id);
    }
    this.beatUntil.delete(holder);
    this.foreignSeen.delete(holder);
    if (ids.length) await this.markFreed();
    return deletedCount;
  }

  /**
   * Publishes each release marker this registry writes on RELEASES_SUBJECT,
   * and hears the others' (every gateway's registry does): a full view
   * checked against the marker, with no notice of another marker since, is
   * the house without a round trip (refusedAsTold). The stack's scale run,
   * 2026-11-25: refusals that read the marker and the heartbeats took 15.8 /
   * 97.7 ms p50 / p99 on a FerretDB busy with the chat. The bus delivers at
   * most once: after it reconnects, views checked before are not trusted, and
   * a notice lost otherwise costs at most TOLD_MAX_AGE_MS of refusals.
   * The registries also tell each other of their claims on CLAIMS_SUBJECT:
   * a refusal on the gateways' counts then knows a client connected through
   * another gateway (see heldElsewhere).
   */
  async hearReleases(bus: ReleaseBus): Promise<Subscription> {
    const told: Told = { bus, since: Infinity, freedAt: 0, claimsSince: Infinity };
    const heard = bus.subscribe(RELEASES_SUBJECT, (payload) => {
      // Another marker than the view's: a slot was freed since that view was checked (its own marker is no news).
      if (Buffer.from(payload).toString('utf8') !== this.view?.freesAt) told.freedAt = Date.now();
    });
    const back = bus.onReconnect(() => {
      told.since = told.claimsSince = Date.now();
      told.reread = undefined;
    });
    const claimed = bus.subscribe(CLAIMS_SUBJECT, (payload) => this.heardClaims(payload, told));
    await bus.flush(); // from here on every notice reaches this registry
    told.since = told.claimsSince = Date.now();
    this.told = told;
    return {
      unsubscribe: () => {
        heard.unsubscribe();
        back.unsubscribe();
        claimed.unsubscribe();
        if (this.told === told) this.told = undefined;
      },
    };
  }

  /**
   * A refusal decided on what this registry knows, with no round trip: its
   * view is full, was checked against the release marker after the bus's
   * notices began to reach it and at most TOLD_MAX_AGE_MS ago, no notice of a
   * release came since, and the decider finds it full with the heartbeats as
   * last read (expiries only move forward: a house full by them is full).
   * Anything else (room, the client's own lease, a lapsed holder) takes the
   * usual way. A view older than TOLD_CHECK_MS is checked again meanwhile.
   */
  private async refusedAsTold(r: AcquireRequest): Promise<AcquireResult | undefined> {
    const { view, told, beatsSeen } = this;
    if (!view || !told || !beatsSeen) return undefined;
    // A view short of the house may stand on the last proof by counts instead (see heldAtLeast).
    const counted = view.claims.size < r.maxClients ? this.countedFull : undefined;
    if (view.claims.size < r.maxClients && !counted) return undefined;
    const checkedAt = counted ? counted.at : view.currentAt;
    const age = Date.now() - checkedAt;
    if (checkedAt < told.since || told.freedAt >= checkedAt || age > TOLD_MAX_AGE_MS) return undefined;
    const decided = () => acquireResultOf(admission.decide({ type: 'Acquire', ...r }, { ...this.view!.state(beatsSeen), ...(counted ? { heldAtLeast: this.countedNow() } : {}) }));
    const outcome = decided();
    if (outcome.ok || outcome.reason !== 'full') return undefined;
    // A full view lists every slot (a full house takes no claim); counts do not say whose slots they are. A client
    // holding one of them, claimed elsewhere since the view was read, is decided again on the view that now lists it
    // (the slot was just read by `_id`).
    if (counted && !view.byClient.has(r.clientId) && (await this.heldElsewhere(r.clientId, beatsSeen))) {
      const again = decided();
      return again.ok ? undefined : again;
    }
    if (age > TOLD_CHECK_MS) this.proveInBackground(r.maxClients);
    return outcome;
  }

  /**
   * Whether another gateway holds the client's slot, which this registry's
   * view misses (claimed there since it was read); if so the slot, as stored,
   * is added to the view. A house proven full by the gateways' counts
   * (heldAtLeast) would otherwise refuse such a client as full.
   *
   * Every registry tells the others of its claims (tellClaimed), and an
   * admission returns only once its notice reached the bus's server. So once
   * this registry's bus is flushed (one round trip to the server), it has
   * heard of every claim whose admission returned before: the view and the
   * claims heard since it was read name
   * the client's slot, if it has one. The session named is read by `_id` (a
   * notice is a hint: anyone on the bus can publish). A bus that reconnected
   * since the view was read (notices may have been lost) has the slots read
   * again first, once for all the admissions waiting. With no bus, or one
   * that does not flush in time, the store is searched by client id: a scan
   * on FerretDB v1.
   */
  private async heldElsewhere(clientId: string, beats: ReadonlyMap<string, Heartbeat>): Promise<boolean> {
    const now = Date.now();
    // Only live holders' slots count (a lapsed holder's is free to take), and this registry's own are in its view.
    if (![...beats.values()].some((b) => b.expiresAt > now && !this.mine.has(b._id) && !this.beatUntil.has(b._id))) return false;
    const told = this.told;
    const covered = () => told !== undefined && this.told === told && this.view !== undefined && told.claimsSince <= this.view.sentAt;
    // Notices may have been lost since the view was read: one read of the slots, shared by the admissions waiting.
    if (told && !covered()) {
      const reread = (told.reread ??= this.slotView(true).then(() => undefined, () => undefined));
      await reread;
      if (told.reread === reread) told.reread = undefined;
    }
    let claim: SlotClaim | null;
    // A flush sent now, not one shared with the admissions of the tick: under load, the end of a tick waits for
    // every callback ready in it.
    if (covered() && (await withinMs(told!.bus.flush(), CLAIM_TOLD_WAIT_MS)) && covered()) {
      const sessionId = this.view!.byClient.get(clientId)?._id ?? this.claimsHeard.get(clientId)?.sessionId;
      claim = sessionId === undefined ? null : await this.lookups.run(() => this.coll.findOne({ _id: sessionId }));
    } else claim = await this.lookups.run(() => this.coll.findOne({ clientId }));
    if (!claim || claim.clientId !== clientId) return false;
    this.noteClaimed(claim);
    return true;
  }

  /**
   * Tells the other registries of a claim just committed (see heldElsewhere):
   * the claims of one tick in one notice, and resolves once it reached the
   * bus's server, or after CLAIM_TOLD_WAIT_MS (a warning: another gateway
   * could then refuse such a client as full, not duplicate).
   */
  private tellClaimed(claim: SlotClaim): Promise<void> {
    const told = this.told;
    if (!told) return Promise.resolve();
    let t = this.nextTelling;
    if (!t) {
      const next: { claims: [string, string][]; told: Promise<void> } = { claims: [], told: Promise.resolve() };
      next.told = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        if (this.nextTelling === next) this.nextTelling = undefined;
        const sent = told.bus.publish(CLAIMS_SUBJECT, Buffer.from(JSON.stringify({ from: this.id, claims: next.claims }), 'utf8')).then(() => told.bus.flush());
        if (!(await withinMs(sent, CLAIM_TOLD_WAIT_MS))) {
          this.options.logger.warn({ claims: next.claims.length }, 'the bus did not take the notice of new connection slots in time; a full house may refuse these clients as full elsewhere, not as connected');
        }
      });
      this.nextTelling = t = next;
    }
    t.claims.push([claim.clientId, claim._id]);
    return t.told;
  }

  /** Another registry's claims (see tellClaimed), kept until a read of the slots holds them. */
  private heardClaims(payload: Uint8Array, told: Told): void {
    const notice = parseClaims(payload);
    if (!notice || notice.from === this.id) return;
    const at = Date.now();
    for (const [clientId, sessionId] of notice.claims) this.claimsHeard.set(clientId, { sessionId, at });
    if (this.claimsHeard.size > CLAIMS_HEARD_MAX) {
      // Forgotten: until the next read of the slots, the store is searched instead.
      this.claimsHeard.clear();
      told.claimsSince = at;
      told.reread = undefined;
    }
  }

  /** keepFullProof after a read of the heartbeats, in the background: the refusal that asked does not wait for it. */
  private proveInBackground(maxClients: number): void {
    if (this.checking) return;
    this.checking = this.heartbeatsNow()
      .then((beats) => this.keepFullProof(beats, maxClients))
      .catch((err: unknown) => this.options.logger.warn({ err }, 'proving the house full again (heartbeats, release marker) failed'))
      .finally(() => (this.checking = undefined));
  }

  /**
   * A full house proven again at each sweep (and by a refusal whose proof is older than TOLD_CHECK_MS, in the
   * background), not only by a refusal that has none: a proof (a full view confirmed by the
   * marker, or the counts, see heldAtLeast) is used for 2 s (TOLD_MAX_AGE_MS), and a refusal without one reads the
   * heartbeats and the marker first. The stack's scale run (2026-11-27): each gateway's first refusal after the
   * house filled took 24–85 ms that way, the slowest of the probe's 200 where most took ~4 ms; so did any refusal
   * more than 2 s after the last. A sweep comes every 1.25 s at the default lease and has just read the heartbeats;
   * the marker is read only when the view or the counts make the house (a slot this sweep freed changed it).
   */
  private async keepFullProof(beats: ReadonlyMap<string, Heartbeat>, maxClients: number): Promise<void> {
    const view = this.view;
    if (!view || view.claims.size < maxClients) return void (await this.heldAtLeast(beats, maxClients));
    const at = Date.now();
    if ((await this.markerNow()).v === view.freesAt) view.confirmed(at);
  }

  private async releaseNow(sessionId: string): Promise<boolean> {
    this.forget(sessionId); // before the delete: a heartbeat never counts a slot being freed
    const held = await this.coll.find({ _id: sessionId }).toArray();
    const events = admission.decide({ type: 'Release', sessionId }, admissionStateOf(held.map(toLease)));
    if (events.length > 0 && !this.mine.has(holderOf(held[0]!))) await this.markForeign();
    const deleted = events.length > 0 && (await this.coll.deleteOne({ _id: sessionId })).deletedCount === 1;
    this.noteGone(sessionId);
    // Also when the lease was gone already: a release retried after its marker failed (it throws) marks it then.
    await this.markFreed();
    return deleted;
  }

  /**
   * One upsert of the holder's heartbeat, pushed forward (never back: a late
   * answer of an older renewal cannot shorten it), whatever the number of its
   * sessions. When the heartbeat it replaced was still live, every lease of the
   * holder is still held (renewalKeptAll) and none is read: on FerretDB v1 any
   * query but one by `_id` scans the whole collection (~0.5 s at 10,000 leases).
   * Only after a lapse, or before the first heartbeat, are the holder's leases
   * read and the live ones named.
   */
  async renew(holder: string, now: number, leaseMs: number): Promise<Renewal> {
    const sent = this.clock();
    // The holder's count of slots, taken after reading the release marker (see Heartbeat.held). Zero while its
    // heartbeat may have lapsed: another gateway may have swept those slots, and the count could then name slots
    // no longer held under a marker read after their sweep.
    const marker = await this.freesNow();
    const freesSeen = marker.v;
    const live = (this.beatUntil.get(holder) ?? -Infinity) > Date.now();
    if (live && marker.foreign !== (this.foreignSeen.get(holder) ?? '')) {
      // A slot was released through another registry: this holder's may be among them. Its slots are read again
      // (a scan on FerretDB v1; a gateway releases only its own, so this follows tests and tools, not traffic).
      const ids = await this.coll.find({ holder }, { projection: { _id: 1 } }).toArray();
      this.mine.set(holder, new Set(ids.map((d) => d._id)));
      this.foreignSeen.set(holder, marker.foreign);
    }
    const count = live ? (this.mine.get(holder)?.size ?? 0) : 0;
    const before = await this.beats.findOneAndUpdate(
      { _id: holder },
      { $max: { expiresAt: now + leaseMs, renewedAt: now }, $set: { held: count, freesSeen } },
      { upsert: true, returnDocument: 'before' },
    );
    // Judged at the answer, not at `now` (when it was sent): the upsert ran somewhere in between, and a sweep that
    // read the heartbeat just before it may have found it lapsed if it lapsed before the upsert ran. The time it
    // took is measured on the caller's clock, as a claim's stamp is: `now` is on that clock.
    const keptAll = renewalKeptAll(before, now + (this.clock() - sent));
    this.beatUntil.set(holder, Math.max(this.beatUntil.get(holder) ?? -Infinity, now + leaseMs));
    if (keptAll) return 'all';
    const held = await this.coll.find({ holder }).toArray();
    // The decider sees the leases as they stood before this renewal: those of a holder that had lapsed are lost.
    const beat = new Map(before ? [[holder, before]] : []);
    const renewed = renewedSessions(admissionStateOf(held.map((h) => withHolderExpiry(h, beat))), holder, now);
    this.mine.set(holder, new Set(renewed));
    return renewed;
  }

  /**
   * Slots held now, at least, when this registry's own claims and the other
   * live holders' counts (Heartbeat.held) reach `maxClients` and the release marker (read now, or `marker` read
   * after the admission began) is still the one each count was taken under:
   * nothing was freed since, so every slot counted is held. Otherwise
   * undefined (the view decides, as without counts). On FerretDB v1 this
   * costs one read by `_id`, where the view's way reads every slot.
   */
  private async heldAtLeast(beats: ReadonlyMap<string, Heartbeat>, maxClients: number, marker?: { read: Promise<Marker>; sentAt: number }): Promise<number | undefined> {
    const now = Date.now();
    // This registry's own holders: its claims as it knows them now, while their heartbeat is live (none was swept)
    // and no slot was released through another registry since it last read them.
    const own = this.ownLive(now);
    const others = [...beats.values()].filter((b) => !this.mine.has(b._id) && b.expiresAt > now && typeof b.held === 'number' && typeof b.freesSeen === 'string');
    const total = (m?: Marker) =>
      own.reduce((sum, [holder, ids]) => sum + (!m || m.foreign === (this.foreignSeen.get(holder) ?? '') ? ids.size : 0), 0) +
      others.reduce((sum, b) => sum + (!m || b.freesSeen === m.v ? b.held! : 0), 0);
    if (total() < maxClients) {
      this.countedFull = undefined;
      return undefined;
    }
    const sentAt = marker?.sentAt ?? Date.now();
    const m = await (marker?.read ?? this.markerNow());
    const held = total(m);
    const proven = held >= maxClients && own.every(([holder]) => m.foreign === (this.foreignSeen.get(holder) ?? ''));
    // Kept for refusals with no round trip while the bus tells releases (see refusedAsTold).
    this.countedFull = proven ? { at: sentAt, others: new Map(others.filter((b) => b.freesSeen === m.v).map((b) => [b._id, b.held!])) } : undefined;
    return held >= maxClients ? held : undefined;
  }

  /**
   * The slots the last proof by counts (heldAtLeast) still vouches for: this
   * registry's own claims as they stand (claims only add; a release through
   * another registry is told like any other), and the other holders' counts
   * while their heartbeats, as last read, are live.
   */
  private countedNow(): number {
    const now = Date.now();
    let held = 0;
    for (const [, ids] of this.ownLive(now)) held += ids.size;
    for (const [holder, n] of this.countedFull?.others ?? []) if ((this.beatsSeen?.get(holder)?.expiresAt ?? -Infinity) > now) held += n;
    return held;
  }

  /** This registry's claims by holder, of the holders whose heartbeat it last wrote live until after `now` (none was swept). */
  private ownLive(now: number): [string, Set<string>][] {
    return [...this.mine].filter(([holder]) => (this.beatUntil.get(holder) ?? -Infinity) > now);
  }

  /**
   * Sweeps expired slots, and removes the heartbeats of holders gone for good
   * (see heartbeatPrunable). The heartbeats are read first (one per gateway
   * process); a lease held by a holder whose heartbeat is live at `now` cannot
   * have expired, so only the leases of the other holders are read — none while
   * every gateway renews, the usual case — and the query is skipped entirely
   * when every heartbeat is live, but for one look every deadHolderMs at the
   * leases of holders with no heartbeat at all (a process that claimed slots
   * and died before its first renewal; its slots come back that much later).
   */
  async expire(now: number): Promise<Lease[]> {
    // One sweep at a time: a sweep called while one is out (the gateway's timer does not wait) waits for it and
    // reports nothing of its own — the one out read the same leases and deletes them; a second would delete each
    // again (thousands of deletes per second after a gateway with thousands of slots died).
    if (this.sweeping) {
      await this.sweeping.catch(() => undefined);
      return [];
    }
    const sweep = this.sweepNow(now);
    this.sweeping = sweep;
    try {
      return await sweep;
    } finally {
      this.sweeping = undefined;
    }
  }

  private sweeping?: Promise<Lease[]>;

  private async sweepNow(now: number): Promise<Lease[]> {
    const beats = await this.heartbeats();
    const live = [...beats.values()].filter((b) => b.expiresAt > now).map((b) => b._id);
    const look = live.length < beats.size || !(this.lookedAtAll !== undefined && this.lookedAtAll > now - this.deadHolderMs);
    const held = look ? await this.coll.find({ holder: { $nin: live } }).toArray() : [];
    if (look) this.lookedAtAll = now;
    const candidates = held.map((h) => withHolderExpiry(h, beats));
    const decided = admission.decide({ type: 'Expire', now }, admissionStateOf(candidates.map(toLease)));
    const ids = new Set(decided.flatMap((e) => (e.type === 'Expired' ? [e.lease.sessionId] : [])));
    const mine = await Promise.all(candidates.filter((c) => ids.has(c._id)).map(async (c) => ((await this.remove(c)) ? toLease(c) : null)));
    if (mine.some((l) => l !== null)) await this.markFreedOrWarn();
    // Every lease of a holder whose heartbeat is not live was read: those still held say who holds slots.
    const holding = new Set(held.filter((h) => !ids.has(h._id)).map(holderOf));
    const gone = look ? [...beats.values()].filter((b) => heartbeatPrunable(b.expiresAt, holding.has(b._id), now, this.deadHolderMs)).map((b) => b._id) : [];
    // The bound again in the filter: a holder renewing meanwhile keeps its heartbeat.
    if (gone.length > 0) await this.beats.deleteMany({ _id: { $in: gone }, expiresAt: { $lte: now - this.deadHolderMs } });
    if (this.houseSize !== undefined) await this.keepFullProof(beats, this.houseSize).catch(() => undefined);
    const evicted = this.evicted;
    this.evicted = [];
    return [...evicted, ...mine.filter((l): l is Lease => l !== null)];
  }

  async count(): Promise<number> {
    return this.coll.countDocuments({});
  }

  async close(): Promise<void> {
    if (this.client) await closeMongo(this.client, this.options.logger);
  }

  /**
   * This registry's view of the held slots (as stored, by `_id`): read afresh
   * when `fresh`, when there is none or it is older than VIEW_MAX_AGE_MS;
   * otherwise the view as it stands, read again in the background once older
   * than VIEW_REFRESH_MS. On FerretDB v1 a read of every slot scans the
   * collection (~1 s of its CPU at 10,000), so admissions must not read them
   * each: a wave of 250 shares one read (a full house's refusals share one too).
   */
  private async slotView(fresh: boolean): Promise<SlotView> {
    const age = this.view ? Date.now() - this.view.currentAt : Infinity;
    if (!fresh && this.view && age <= VIEW_MAX_AGE_MS) {
      if (age > VIEW_REFRESH_MS && !this.reading && !this.nextRead) this.read().catch((err: unknown) => this.options.logger.warn({ err }, 'reading the connection slots failed'));
      return this.view;
    }
    return this.read();
  }

  /**
   * Every held slot, read after this call, one read at a time: acquires
   * arriving while a read is out share the next, sent once it returns (reads
   * sent side by side only slowed each other and every other statement). Claims
   * and deletes this registry made while it was out are applied to it.
   */
  private read(): Promise<SlotView> {
    this.nextRead ??= (this.reading ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(async () => {
        this.nextRead = undefined;
        const sentAt = Date.now();
        // The marker before the slots: a release whose marker is written after this read is seen as a change.
        const reading = this.freesNow().then(async ({ v: freesAt }) => ({ freesAt, docs: await this.coll.find({}).toArray() }));
        this.reading = reading;
        try {
          const { freesAt, docs } = await reading;
          const view = new SlotView(sentAt, freesAt, docs);
          // What this registry changed while the read was out may be missing from it.
          for (const j of this.journal.splice(0)) j(view);
          if (!this.view || this.view.sentAt <= sentAt) {
            this.view = view;
            // Claims heard of before this read was sent are in it, if still held.
            for (const [clientId, heard] of this.claimsHeard) if (heard.at < sentAt) this.claimsHeard.delete(clientId);
          }
          return view;
        } finally {
          this.journal = [];
          if (this.reading === reading) this.reading = undefined;
        }
      });
    return this.nextRead;
  }

  /** A claim in the store (this registry's, or one found made elsewhere): in its view from now on, and in any read already out. */
  private noteClaimed(claim: SlotClaim): void {
    this.view?.add(claim);
    if (this.reading) this.journal.push((v) => v.add(claim));
  }

  /** A claim no longer in the store (deleted here, or found gone). */
  private noteGone(id: string): void {
    this.forget(id);
    this.view?.remove(id);
    if (this.reading) this.journal.push((v) => v.remove(id));
  }

  /** A claim this registry made: counted in its holder's heartbeats until given back. */
  private noteMine(claim: SlotClaim): void {
    const holder = holderOf(claim);
    let ids = this.mine.get(holder);
    if (!ids) this.mine.set(holder, (ids = new Set()));
    ids.add(claim._id);
  }

  /** A claim given back or gone: no longer counted. */
  private forget(id: string): void {
    for (const ids of this.mine.values()) ids.delete(id);
  }

  /** A slot number a claim of this registry lost (held elsewhere, most likely): skipped until the next read. */
  private noteTaken(n: number): void {
    this.view?.mark(n);
    if (this.reading) this.journal.push((v) => v.mark(n));
  }

  /** Every holder's heartbeat. */
  private async heartbeats(): Promise<Map<string, Heartbeat>> {
    const docs = await this.beats.find({}).toArray();
    const beats = new Map(docs.map((d) => [d._id, d]));
    this.beatsSeen = beats;
    return beats;
  }

  /** Frees an expired slot to admit someone; the lease is reported by the next expire(). */
  private async evict(claim: SlotClaim): Promise<void> {
    if (!(await this.remove(claim))) return;
    this.evicted.push(toLease(claim));
    await this.markFreedOrWarn();
  }

  /**
   * Says that a slot was freed: a new random value in the release marker,
   * written after the delete. A registry reads the marker before each read of
   * the slots; an admission its view finds full reads it again, and only
   * if it changed reads the slots (a scan of the collection on FerretDB v1,
   * ~1.4 s at 10,000: the stack's 10,001st client waited 11.9 / 17.6 s
   * p50 / p99 to be refused). A release is complete once its marker is
   * written, so a slot whose release returned before an admission began is
   * never refused; random values, not a counter, so that no two writes
   * (FerretDB v1 reads an update's document before its write) can leave it
   * as a reader saw it earlier.
   */
  private async markFreed(): Promise<void> {
    const v = randomUUID();
    await this.frees.updateOne({ _id: FREES_ID }, { $set: { v } }, { upsert: true }).catch(async (err: unknown) => {
      // Two first writes at once: the other created it; write ours over it.
      if (!isDuplicateKeyError(err)) throw err;
      await this.frees.updateOne({ _id: FREES_ID }, { $set: { v } });
    });
    // Told once written (see hearReleases); a notice that fails to go out costs the others at most TOLD_MAX_AGE_MS.
    await this.told?.bus.publish(RELEASES_SUBJECT, Buffer.from(v, 'utf8')).catch(() => undefined);
  }

  /** After a sweep or an eviction: the slots it freed had expired, which every view finds on its own; the marker only hurries that. */
  private async markFreedOrWarn(): Promise<void> {
    await this.markFreed().catch((err: unknown) => this.options.logger.warn({ err }, 'could not write the connection slots\' release marker'));
  }

  /** The release marker as it is now ('' before any slot was freed). */
  private async freesNow(): Promise<Marker> {
    const doc = await this.frees.findOne({ _id: FREES_ID });
    return { v: doc?.v ?? '', foreign: doc?.foreign ?? '' };
  }

  /**
   * Said before a slot is freed through another registry than its holder's
   * (the port allows it; a gateway releases only its own): the holder's count
   * of its slots (Heartbeat.held) would still name it, so a holder that finds
   * `foreign` changed reads its slots again before counting them (see renew).
   */
  private async markForeign(): Promise<void> {
    const foreign = randomUUID();
    await this.frees.updateOne({ _id: FREES_ID }, { $set: { foreign } }, { upsert: true }).catch(async (err: unknown) => {
      if (!isDuplicateKeyError(err)) throw err;
      await this.frees.updateOne({ _id: FREES_ID }, { $set: { foreign } });
    });
  }

  /**
   * Deletes a claim the decider found expired; true for exactly one of any
   * concurrent callers. (Its holder cannot come back to it: a gateway stops
   * trusting its leases, and closes their sessions, before they can lapse.)
   */
  private async remove(claim: SlotClaim): Promise<boolean> {
    this.forget(claim._id);
    const deleted = (await this.writes.run(() => this.coll.deleteOne({ _id: claim._id }))).deletedCount === 1;
    this.noteGone(claim._id);
    return deleted;
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

/** What a registry keeps of the bus it tells and hears releases and claims on (see hearReleases). */
interface Told {
  bus: ReleaseBus;
  /** Since when every release notice reaches this registry (reset when the bus reconnects). */
  since: number;
  /** When a notice last said a slot was freed. */
  freedAt: number;
  /** Since when every claim notice reached it, and was kept (see heldElsewhere). */
  claimsSince: number;
  /** The read of the slots sent since claimsSince, that heldElsewhere's callers wait for together. */
  reread?: Promise<void>;
}

/** A claims notice as published on CLAIMS_SUBJECT, or undefined for anything else (anyone on the bus can publish there). */
function parseClaims(payload: Uint8Array): { from: string; claims: [string, string][] } | undefined {
  let n: unknown;
  try {
    n = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(n) || typeof n.from !== 'string' || !Array.isArray(n.claims)) return undefined;
  const claims = n.claims.filter((p): p is [string, string] => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string');
  return { from: n.from, claims };
}

/** Whether `p` resolved within `ms` (false when it failed or took longer). */
async function withinMs(p: Promise<unknown>, ms: number): Promise<boolean> {
  return (await orLate(p.then(() => true, () => false), ms)) === true;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function toLease(c: SlotClaim): Lease {
  return {
    clientId: c.clientId, sessionId: c.sessionId, gatewayId: c.gatewayId, ...(c.holder ? { holder: c.holder } : {}), conversationId: c.conversationId,
    acquiredAt: c.acquiredAt, expiresAt: c.expiresAt, ...(c.renewedAt !== undefined ? { renewedAt: c.renewedAt } : {}),
  };
}

/**
 * A claim as the decider sees it: held as long as its holder's heartbeat once
 * that renewed it, last heard of at the heartbeat's last renewal; the expiry
 * written with the claim, and its acquiry, before (the rule's `leaseAsHeld`).
 * A claim made after the last renewal a reader saw keeps its own expiry: a
 * sweep that read a heartbeat lapsed (the store just back from an outage) must
 * not free a slot its holder claimed since. The store keeps no `since` (when
 * a run of renewals began), so a heartbeat renewed again after a lapse covers
 * the holder's older claims too; its gateway closed their sessions before the
 * lapse (LeaseKeeper) and gives their slots back. A heartbeat written before
 * `renewedAt` was kept covers every claim.
 */
function withHolderExpiry(c: SlotClaim, beats: ReadonlyMap<string, Heartbeat>): SlotClaim {
  const beat = beats.get(holderOf(c));
  if (beat === undefined) return c;
  const asHeld = leaseAsHeld(c, new Map([[holderOf(c), { since: Number.NEGATIVE_INFINITY, expiresAt: beat.expiresAt, renewedAt: beat.renewedAt ?? Number.POSITIVE_INFINITY }]]));
  return asHeld === c ? c : { ...c, expiresAt: asHeld.expiresAt, ...(beat.renewedAt !== undefined ? { renewedAt: beat.renewedAt } : {}) };
}

/** At most `limit` operations at once; the others wait, first come first served. */
class Places {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await op();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** One read shared by the callers of a tick, sent after each of them called (so it sees what happened before any of them). */
function sharedPerTick<T>(read: () => Promise<T>): () => Promise<T> {
  let next: Promise<T> | undefined;
  return () =>
    (next ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      next = undefined;
      return read();
    }));
}

/**
 * A registry's view of the held slots (as stored), indexed so an admission
 * reads only what the decider needs: by session (`_id`), by client, by slot
 * number, and how many each holder holds.
 */
class SlotView {
  readonly claims = new Map<string, SlotClaim>();
  readonly byClient = new Map<string, SlotClaim>();
  readonly byN = new Map<number, string>();
  /** Numbers a claim of this registry lost since this view was read (taken elsewhere, or free: skipped either way until the next read). */
  readonly marked = new Set<number>();
  private readonly holders = new Map<string, number>();
  /** Per holder, where its next walk for a free number may start (see Walk): forgotten once a slot is freed or a number marked. */
  readonly walks = new Map<string, number>();

  /** When it was last known to be the house (see confirmed): its read, or a later check. */
  private checkedAt: number;

  /** `freesAt`: the release marker, read just before the slots. */
  constructor(readonly sentAt: number, readonly freesAt: string, docs: Iterable<SlotClaim>) {
    this.checkedAt = sentAt;
    for (const d of docs) this.add(d);
  }

  get currentAt(): number {
    return this.checkedAt;
  }

  /**
   * A full view whose release marker was still `freesAt` in a read sent at
   * `at`: no slot was freed since it was read, and a full house takes no
   * claim, so the store held what it holds (with this registry's own changes
   * applied to both) — as current as a read sent then.
   */
  confirmed(at: number): void {
    this.checkedAt = Math.max(this.checkedAt, at);
  }

  add(c: SlotClaim): void {
    this.remove(c._id);
    // One claim per client in the store (its unique index): an older one in the view is gone.
    const previous = this.byClient.get(c.clientId);
    if (previous) this.remove(previous._id);
    this.claims.set(c._id, c);
    this.byClient.set(c.clientId, c);
    this.byN.set(c.n, c._id);
    this.holders.set(holderOf(c), (this.holders.get(holderOf(c)) ?? 0) + 1);
  }

  /** Who holds slot number `n` in this view. */
  holderOf(n: number): string | undefined {
    const id = this.byN.get(n);
    const c = id === undefined ? undefined : this.claims.get(id);
    return c && holderOf(c);
  }

  /** A number a claim of this registry lost (see marked). */
  mark(n: number): void {
    this.marked.add(n);
    this.walks.clear();
  }

  remove(id: string): void {
    const c = this.claims.get(id);
    if (!c) return;
    this.walks.clear();
    this.claims.delete(id);
    if (this.byClient.get(c.clientId) === c) this.byClient.delete(c.clientId);
    if (this.byN.get(c.n) === id) this.byN.delete(c.n);
    const left = (this.holders.get(holderOf(c)) ?? 1) - 1;
    if (left > 0) this.holders.set(holderOf(c), left);
    else this.holders.delete(holderOf(c));
  }

  /**
   * The view as the decider sees it, each lease with its holder's expiry
   * (applied when read), and `noneExpireBefore` when every holder in it has a
   * heartbeat: the earliest of theirs (else the decider looks at every lease).
   */
  state(beats: ReadonlyMap<string, Heartbeat>): AdmissionState {
    let noneExpireBefore: number | undefined = Infinity;
    for (const h of this.holders.keys()) {
      const beat = beats.get(h);
      if (beat === undefined) {
        noneExpireBefore = undefined;
        break;
      }
      noneExpireBefore = Math.min(noneExpireBefore, beat.expiresAt);
    }
    const byClient = this.byClient;
    const asHeld = (c: SlotClaim): LeaseState => toLease(withHolderExpiry(c, beats));
    const leases = {
      get size() {
        return byClient.size;
      },
      get: (clientId: string) => {
        const c = byClient.get(clientId);
        return c && asHeld(c);
      },
      has: (clientId: string) => byClient.has(clientId),
      *entries() {
        for (const [k, c] of byClient) yield [k, asHeld(c)] as [string, LeaseState];
      },
      *values() {
        for (const c of byClient.values()) yield asHeld(c);
      },
      keys: () => byClient.keys(),
      forEach(cb: (v: LeaseState, k: string, m: ReadonlyMap<string, LeaseState>) => void) {
        for (const [k, c] of byClient) cb(asHeld(c), k, leases as unknown as ReadonlyMap<string, LeaseState>);
      },
      [Symbol.iterator]() {
        return this.entries();
      },
    };
    return { leases: leases as unknown as ReadonlyMap<string, LeaseState>, ...(noneExpireBefore !== undefined ? { noneExpireBefore } : {}) };
  }
}
