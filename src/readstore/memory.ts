import type { ApplyStep, Collection, Doc, FindQuery, Position, ReadStore, Scalar } from './port';

export interface MemoryReadStoreOptions {
  /**
   * Freezes every stored document, so an evolve that changes the document it
   * is given (instead of returning a new one) throws. For tests (the
   * projections' suites turn it on), like React's development-only freezing:
   * at saturation it cost ~12 % of projecting a message (projection-bench).
   */
  checkPurity?: boolean;
}

/**
 * In-memory read models for the embedded default: rebuilt by replaying the
 * log at start. Equality indexes keep history queries proportional to one
 * client's or one conversation's data, not to the whole store.
 */
export class MemoryReadStore implements ReadStore {
  readonly persistent = false;
  private readonly collections = new Map<string, MemoryCollection<Doc>>();
  /** Values of indexed fields, every collection's: one string each however many documents hold it (see MemoryCollection.share). */
  private readonly shared = new Map<string, string>();

  constructor(private readonly options: MemoryReadStoreOptions = {}) {}

  collection<D extends Doc>(name: string, indexes: readonly (keyof D & string)[] = [], orderedBy?: keyof D & string): Collection<D> {
    let c = this.collections.get(name);
    if (!c) {
      c = new MemoryCollection<Doc>(indexes, this.shared, this.options.checkPurity ?? false, orderedBy);
      this.collections.set(name, c);
    }
    return c as unknown as Collection<D>;
  }

  async drop(names: readonly string[]): Promise<void> {
    for (const name of names) this.collections.get(name)?.clear();
  }

  async close(): Promise<void> {}
}

const APPLIED = Promise.resolve();

/** Values of a field looked up before share() gives up on a field that never shared one. */
const SHARE_TRIES = 256;

/**
 * A document and the last position it saw per stream. Nearly every document
 * is written from one stream only (the messages, from `conversations/0`), so
 * that one is kept in two fields, not in an object of its own per document.
 */
interface Stored<D> {
  doc: D;
  stream: string;
  offset: number;
  /** Positions on other streams (a conversation: opened on `sessions/0`, written on `conversations/0`). */
  more?: Record<string, number>;
}

class MemoryCollection<D extends Doc> implements Collection<D> {
  private readonly docs = new Map<string, Stored<D>>();
  /** Per field: how often its value was looked up for sharing, and found (see share). */
  private readonly sharing = new Map<string, { tries: number; hits: number }>();
  /**
   * field → value → ids, in the order they were indexed, or by `orderedBy` when
   * the collection has one (a conversation's messages by seq, which is nearly
   * always the order they come in: an insertion is then an append). An array,
   * not a Set: a conversation's index entry grows by two ids per message, and a
   * Set's growth (rehashing every entry) cost ~10 % of projecting a message.
   * Removal is a linear search, and rare: no projection deletes a document or
   * changes an indexed field after its first write.
   */
  private readonly indexes = new Map<string, Map<Scalar, string[]>>();

  constructor(
    indexFields: readonly string[],
    private readonly shared: Map<string, string>,
    private readonly checkPurity: boolean,
    private readonly orderedBy?: string,
  ) {
    for (const f of indexFields) this.indexes.set(f, new Map());
  }

  clear(): void {
    this.docs.clear();
    for (const index of this.indexes.values()) index.clear();
  }

  async get(id: string): Promise<D | null> {
    const s = this.docs.get(id);
    return s ? copyOf(s.doc) : null;
  }

  async find(query: FindQuery<D>): Promise<D[]> {
    const inOrder = this.inOrder(query);
    if (inOrder) return inOrder.map(copyOf);
    let docs = this.candidates(query.where).filter((d) => matches(d, query));
    if (query.sort) {
      const { field, direction } = query.sort;
      docs.sort((a, b) => compare(a[field], b[field]) * direction);
    }
    if (query.limit !== undefined) docs = docs.slice(0, query.limit);
    return docs.map(copyOf);
  }

  async count(where?: FindQuery<D>['where']): Promise<number> {
    // On one indexed field alone (a conversation's messages, for each conversation ListConversations lists): its index's length.
    const ids = this.indexed(where);
    if (ids && Object.values(where!).filter((v) => v !== undefined).length === 1) return ids.length;
    return this.candidates(where).filter((d) => matches(d, { where })).length;
  }

  apply(id: string, position: Position, evolve: (doc: D | null) => D | null): Promise<void> {
    return this.applyMany(id, [{ position, evolve }]);
  }

  /** Applied at once; the promise is one already settled (not a new one per write: the projector makes ~5 per message). */
  applyMany(id: string, steps: readonly ApplyStep<D>[]): Promise<void> {
    try {
      this.applyNow(id, steps);
      return APPLIED;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private applyNow(id: string, steps: readonly ApplyStep<D>[]): void {
    const stored = this.docs.get(id);
    // The stored document itself: evolves are pure (see Collection.apply; checkPurity makes sure), so no copy is made for them.
    let doc = stored ? stored.doc : null;
    let stream = stored?.stream;
    let offset = stored?.offset ?? 0;
    let more = stored?.more;
    let changed = false;
    for (const { position, evolve } of steps) {
      const seen = stream === position.stream ? offset : more?.[position.stream];
      if (seen !== undefined && seen >= position.offset) continue;
      doc = evolve(doc);
      changed = true;
      if (stream === undefined || stream === position.stream) {
        stream = position.stream;
        offset = position.offset;
      } else {
        more = { ...more, [position.stream]: position.offset };
      }
    }
    if (!changed) return;
    if (doc === null) {
      if (stored) {
        this.unindex(stored.doc);
        this.docs.delete(id);
      }
      return;
    }
    let next = doc;
    if (next !== stored?.doc) {
      // What evolve returned is the store's now (a frozen one, not its own, is copied first).
      if (Object.isFrozen(next)) next = { ...next };
      (next as { _id: string })._id = stored?.doc._id ?? this.shared.get(id) ?? id;
      this.share(next);
      if (this.checkPurity) Object.freeze(next);
      if (stored) this.reindex(stored.doc, next);
      else this.index(next);
    }
    if (stored) {
      // Updated in place: no second lookup in a map of every document, and no new record per write.
      stored.doc = next;
      stored.stream = stream!;
      stored.offset = offset;
      if (more) stored.more = more;
      return;
    }
    this.docs.set(next._id, more ? { doc: next, stream: stream!, offset, more } : { doc: next, stream: stream!, offset });
  }

  /**
   * The stored form of a document: string fields whose value another stored
   * document or an index already holds point at that one string (a message's
   * conversationId and clientId, a reply's inReplyTo). The read models hold
   * every message; a string copy per field per document was a third of their
   * heap (loadtest/memory-per-message.ts).
   */
  private share(doc: D): D {
    const fields = doc as Record<string, unknown>;
    for (const k in fields) {
      const v = fields[k];
      if (typeof v !== 'string' || k === '_id') continue;
      // A field that never shared in its first SHARE_TRIES values (a text, a hash) is not looked up again:
      // the lookups hash the whole string and cost ~3 µs per document otherwise.
      let stats = this.sharing.get(k);
      if (!stats) this.sharing.set(k, (stats = { tries: 0, hits: 0 }));
      if (stats.hits === 0 && stats.tries >= SHARE_TRIES) continue;
      stats.tries++;
      const same = this.shared.get(v) ?? this.docs.get(v)?.doc._id;
      if (same !== undefined) {
        fields[k] = same;
        stats.hits++;
      }
    }
    return doc;
  }

  private candidates(where: FindQuery<D>['where']): D[] {
    const ids = this.indexed(where);
    if (ids) return ids.map((id) => this.docs.get(id)!.doc);
    return [...this.docs.values()].map((s) => s.doc);
  }

  /** The ids under the first indexed field `where` names (`[]`: none has its value); undefined: it names none. */
  private indexed(where: FindQuery<D>['where']): readonly string[] | undefined {
    if (!where) return undefined;
    for (const [field, value] of Object.entries(where)) {
      const index = this.indexes.get(field);
      if (index && value !== undefined) return index.get(value as Scalar) ?? [];
    }
    return undefined;
  }

  /**
   * A query on an index that sorts by `orderedBy`, answered by walking that index in order from where its range
   * begins (a binary search) until `limit` documents matched: a page of a conversation of 100,000 messages took
   * ~85 ms on the event loop (every document filtered, then all sorted), ~0.1 ms now. undefined: not such a query.
   */
  private inOrder(query: FindQuery<D>): D[] | undefined {
    const { sort, range } = query;
    if (!sort || sort.field !== this.orderedBy) return undefined;
    const ids = this.indexed(query.where);
    if (!ids) return undefined;
    const doc = (i: number) => this.docs.get(ids[i]!)!.doc;
    const key = (i: number) => doc(i)[sort.field];
    let from = 0;
    let to = ids.length;
    if (range?.field === sort.field) {
      if (range.gt !== undefined) from = firstAfter(ids.length, (i) => compare(key(i), range.gt) > 0);
      if (range.lt !== undefined) to = firstAfter(ids.length, (i) => compare(key(i), range.lt) >= 0);
    }
    const limit = query.limit ?? Infinity;
    const out: D[] = [];
    for (let i = sort.direction === 1 ? from : to - 1; i >= from && i < to && out.length < limit; i += sort.direction) {
      const d = doc(i);
      if (matches(d, query)) out.push(d);
    }
    return out;
  }

  private index(doc: D): void {
    for (const [field, index] of this.indexes) this.indexValue(index, doc[field] as Scalar | undefined, doc);
  }

  private unindex(doc: D): void {
    for (const [field, index] of this.indexes) this.unindexValue(index, doc[field] as Scalar | undefined, doc._id);
  }

  /** A document written again: only the indexes whose field changed are touched (its _id stays), all of them when its place in their order did. */
  private reindex(before: D, after: D): void {
    const moved = this.orderedBy !== undefined && compare(before[this.orderedBy], after[this.orderedBy]) !== 0;
    for (const [field, index] of this.indexes) {
      const was = before[field] as Scalar | undefined;
      const now = after[field] as Scalar | undefined;
      if (was === now && !moved) continue;
      this.unindexValue(index, was, before._id);
      this.indexValue(index, now, after);
    }
  }

  /** Called only for a document not under this value yet (a new one, or one whose field or place changed). */
  private indexValue(index: Map<Scalar, string[]>, value: Scalar | undefined, doc: D): void {
    if (value === undefined) return;
    const id = doc._id;
    const ids = index.get(value);
    if (ids) {
      const by = this.orderedBy;
      // After every id it does not come before (among equals, in the order indexed): nearly always the last.
      const comesAfter = (i: number) => by !== undefined && compare(this.docs.get(ids[i]!)!.doc[by], doc[by]) > 0;
      if (!comesAfter(ids.length - 1)) ids.push(id);
      else ids.splice(firstAfter(ids.length, comesAfter), 0, id);
      return;
    }
    index.set(value, [id]);
    if (typeof value === 'string' && !this.shared.has(value)) this.shared.set(value, value);
  }

  private unindexValue(index: Map<Scalar, string[]>, value: Scalar | undefined, id: string): void {
    if (value === undefined) return;
    const ids = index.get(value);
    if (!ids) return;
    const at = ids.lastIndexOf(id);
    if (at >= 0) ids.splice(at, 1);
    if (ids.length === 0) index.delete(value);
  }
}

/**
 * A deep copy of a read-model document (plain JSON-like data: objects,
 * arrays, primitives). Callers get their own copy, as from a database; this
 * is ~10× cheaper than structuredClone, which cost ~6 % of the event loop at
 * saturation (four copies per message).
 */
function copyOf<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(copyOf) as T;
  if (ArrayBuffer.isView(value) || value instanceof Date) return structuredClone(value);
  const out: Record<string, unknown> = {};
  for (const k in value) out[k] = copyOf((value as Record<string, unknown>)[k]);
  return out as T;
}

function matches<D extends Doc>(doc: D, query: FindQuery<D>): boolean {
  if (query.where) {
    for (const [field, value] of Object.entries(query.where)) {
      if (value !== undefined && doc[field] !== value) return false;
    }
  }
  if (query.range) {
    const v = doc[query.range.field] as number;
    if (query.range.gt !== undefined && !(v > query.range.gt)) return false;
    if (query.range.lt !== undefined && !(v < query.range.lt)) return false;
  }
  return true;
}

/** The first of 0…n-1 for which `after` holds, `after` being false then true along them (n when it never holds). */
function firstAfter(n: number, after: (i: number) => boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (after(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  return (a as number) < (b as number) ? -1 : 1;
}
