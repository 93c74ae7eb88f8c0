import { MongoBulkWriteError, MongoServerError, type Collection, type Document, type Filter, type OptionalUnlessRequiredId } from 'mongodb';

/** Statements per command at most (FerretDB v1 writes inserts 100 per SQLite transaction; MongoDB takes 100,000). */
const MAX_STATEMENTS = 500;

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Inserts and deletes-by-id to one collection issued in the same turn of the
 * event loop, sent as one command per kind (issue 15: the stack spent one
 * round trip — and on FerretDB v1's SQLite backend one write transaction —
 * per statement, hundreds at once under load; FerretDB writes up to 100
 * inserted documents in one transaction).
 *
 * The inserts go as one unordered `insert`: each document is inserted on its
 * own, exactly as if sent alone — a duplicate `_id` fails only its own insert,
 * and its caller gets that error (code 11000) — so callers keep their
 * semantics and only the round trips are shared. A failure of the command
 * itself (a timeout, a lost connection) fails every statement of it, which
 * each caller already handles as a lost answer.
 *
 * Only inserts and deletes, never updates: FerretDB v1 holds a pooled backend
 * connection per update statement until the whole command returns, and a
 * command of many updates deadlocks it (see UpdateGate in mongo-client.ts).
 * Its inserts and deletes hold no read while they write.
 */
export class BatchedWrites<T extends Document & { _id: string }> {
  private inserts: Pending<OptionalUnlessRequiredId<T>>[] = [];
  private deletes: Pending<string>[] = [];
  private scheduled = false;

  constructor(private readonly coll: Collection<T>) {}

  /** Inserts `doc`; rejects with a MongoServerError (code 11000 for a duplicate key) if this document's insert failed. */
  insertOne(doc: OptionalUnlessRequiredId<T>): Promise<void> {
    return this.queue(this.inserts, doc);
  }

  /**
   * Deletes the document `id` if it exists. The deletes of a turn go as one
   * `deleteMany({_id: {$in: ids}})`: one statement and, on FerretDB, one write
   * transaction; FerretDB does not push `$in` down to its index and reads the
   * whole collection for it, so this is only for collections that stay small
   * (the read store's write tickets live while their write is in flight).
   */
  deleteById(id: string): Promise<void> {
    return this.queue(this.deletes, id);
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
    const [inserts, deletes] = [this.inserts, this.deletes];
    this.inserts = [];
    this.deletes = [];
    for (const part of chunks(inserts)) void send(part, () => (part.length === 1 ? this.coll.insertOne(part[0]!.item) : this.coll.insertMany(part.map((p) => p.item), { ordered: false })));
    for (const part of chunks(deletes)) {
      const ids = part.map((p) => p.item);
      void send(part, () => this.coll.deleteMany((ids.length === 1 ? { _id: ids[0] } : { _id: { $in: ids } }) as Filter<T>));
    }
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
    if (part.length === 1 || !(err instanceof MongoBulkWriteError) || err.writeErrors === undefined) {
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
