import { MongoBulkWriteError, MongoServerError, type Collection, type Document, type Filter, type OptionalUnlessRequiredId, type UpdateFilter } from 'mongodb';

/** Statements per command at most (MongoDB accepts 100,000; smaller keeps one command's answer prompt). */
const MAX_STATEMENTS = 500;

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Writes to one collection issued in the same turn of the event loop, sent as
 * one command per kind: the inserts as one unordered `insert`, the updates as
 * one unordered `update`. Each statement of an unordered command is carried out
 * on its own, exactly as if it had been sent alone — the same per-document
 * atomicity, a duplicate `_id` failing only its own insert — so callers keep
 * their semantics and only the round trips are shared (issue 15: the stack
 * spent one round trip per statement, hundreds at once under load). A failure
 * of the command itself (a timeout, a lost connection) fails every statement
 * of it, which each caller already handles as a lost answer.
 *
 * Only writes whose caller needs no per-statement count go here: an insert
 * (its own error says whether it was a duplicate), an update or delete whose
 * result is not read. A conditional write that must know whether it matched
 * stays a command of its own.
 */
export class BatchedWrites<T extends Document> {
  private inserts: Pending<OptionalUnlessRequiredId<T>>[] = [];
  private updates: Pending<{ filter: Filter<T>; update: UpdateFilter<T> }>[] = [];
  private deletes: Pending<Filter<T>>[] = [];
  private scheduled = false;

  constructor(private readonly coll: Collection<T>) {}

  /** Inserts `doc`; rejects with a MongoServerError (code 11000 for a duplicate key) if this document's insert failed. */
  insertOne(doc: OptionalUnlessRequiredId<T>): Promise<void> {
    return this.queue(this.inserts, doc);
  }

  /** Updates the first document matching `filter` (no upsert); whether one matched is not told. */
  updateOne(filter: Filter<T>, update: UpdateFilter<T>): Promise<void> {
    return this.queue(this.updates, { filter, update });
  }

  /** Deletes the first document matching `filter`; whether one matched is not told. */
  deleteOne(filter: Filter<T>): Promise<void> {
    return this.queue(this.deletes, filter);
  }

  private queue<I>(list: Pending<I>[], item: I): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      list.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const [inserts, updates, deletes] = [this.inserts, this.updates, this.deletes];
    this.inserts = [];
    this.updates = [];
    this.deletes = [];
    for (const part of chunks(inserts)) void send(part, () => this.coll.insertMany(part.map((p) => p.item), { ordered: false }));
    for (const part of chunks(updates)) void send(part, () => this.coll.bulkWrite(part.map((p) => ({ updateOne: p.item })), { ordered: false }));
    for (const part of chunks(deletes)) void send(part, () => this.coll.bulkWrite(part.map((p) => ({ deleteOne: { filter: p.item } })), { ordered: false }));
  }
}

function* chunks<I>(list: Pending<I>[]): Generator<Pending<I>[]> {
  for (let i = 0; i < list.length; i += MAX_STATEMENTS) yield list.slice(i, i + MAX_STATEMENTS);
}

/** Sends one command for `part` and settles each statement with its own outcome. */
async function send<I>(part: Pending<I>[], command: () => Promise<unknown>): Promise<void> {
  try {
    await command();
    for (const p of part) p.resolve();
  } catch (err) {
    if (!(err instanceof MongoBulkWriteError) || err.writeErrors === undefined) {
      for (const p of part) p.reject(err);
      return;
    }
    // Some statements failed on their own (the others were carried out): each is told its own error.
    const failed = new Map((Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]).map((w) => [w.index, w]));
    part.forEach((p, i) => {
      const w = failed.get(i);
      if (!w) p.resolve();
      else p.reject(new MongoServerError({ message: w.errmsg ?? `write error ${w.code}`, errmsg: w.errmsg, code: w.code }));
    });
  }
}
