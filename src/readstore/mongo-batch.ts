// Inserts, deletes by `_id` and versioned replaces made in one turn of the event loop, sent as one command.
import DataLoader from 'dataloader';
import { MongoBulkWriteError, type Collection, type Document, type OptionalUnlessRequiredId } from 'mongodb';
import { isTransient } from '../resilience/transient';
import { isDuplicateKeyError } from './mongo-client';

/**
 * Most statements per command. FerretDB v1 writes an insert command's
 * documents 100 to an SQLite statement, all in one transaction.
 */
const MAX_BATCH = 100;

/** How long a delete nobody waits for (deleteLater) waits for others to share its command. */
const LATER_MS = 250;

/** One statement of a batched command failed on the server for its own reason (not a duplicate `_id`). */
export class BatchedWriteError extends Error {
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
    this.name = 'BatchedWriteError';
  }
}

/**
 * The inserts, deletes by `_id` and versioned replaces that a process makes on
 * one collection in one turn of the event loop — a projector's writes of the
 * documents of one batch, a worker's claims for the messages of one fetch — go
 * to the server as one unordered command, and each caller still gets its own
 * outcome (its statement's write error, found by index). Issue 15: FerretDB v1
 * (SQLite) pays per command. An insert command of 20 documents cost it 0.06 ms
 * of CPU per document against 0.22–0.30 ms for one document per command, and
 * 20 deletes by `_id` 0.25–0.33 against 0.28–0.40 ms
 * (`loadtest/results/ferretdb-bench-batched-2026-11-25/`); 8 versioned
 * replaces 0.28 against 0.42 ms, at 3,817 against 1,652 documents/s
 * (`…/ferretdb-bench-replaces-2026-11-25/`). In node, the driver's share fell
 * from 0.15–0.28 to ~0.03 ms per document (one-off measurement on the same
 * machine).
 *
 * Replaces go at most `maxReplaces` to a command: FerretDB v1 holds a
 * connection per update statement until its command returns, so a command of
 * n holds n of the process's update places (see UpdateGate). A batch of inserts
 * that meets a duplicate `_id` is rolled back and written again one document
 * at a time by FerretDB, so each statement's outcome is still its own; on
 * MongoDB an unordered insert is per document anyway.
 *
 * A command that fails as a whole for the server or the network (unreachable,
 * a timeout) fails every statement in it: each caller retries as it did for
 * its own lost answer. One refused as a whole for another reason is sent
 * again a statement at a time (see perStatement).
 *
 * A batch leaves in the loop's check phase (`setImmediate`), after this
 * turn's I/O callbacks: the writes that answers arriving together lead to
 * (the replaces of one batch answered, then their tickets' deletes) share a
 * command, at the cost of at most one turn of the loop.
 */
export class WriteBatcher<T extends Document & { _id: string }> {
  private readonly inserts: DataLoader<T, boolean>;
  private readonly deletes: DataLoader<string, void>;
  private readonly replaces: DataLoader<Replace<T>, boolean>;
  /** Deletes asked for by deleteLater, not sent yet. */
  private readonly later: string[] = [];
  private laterTimer?: NodeJS.Timeout;
  private readonly laterSent = new Set<Promise<void>>();
  private readonly onLost: (count: number, err: unknown) => void;

  /**
   * `maxReplaces`: most replaces per command, at most the process's update
   * places (CHATFLOW_MONGO_UPDATE_CONCURRENCY, see UpdateGate); default one.
   */
  constructor(
    readonly coll: Collection<T>,
    { maxReplaces = 1, onLost = () => undefined }: { maxReplaces?: number; onLost?: (count: number, err: unknown) => void } = {},
  ) {
    this.onLost = onLost;
    const options = { cache: false, maxBatchSize: MAX_BATCH, batchScheduleFn: (send: () => void) => setImmediate(send) } as const;
    this.inserts = new DataLoader<T, boolean>((docs) => insertAll(coll, docs), options);
    this.deletes = new DataLoader<string, void>((ids) => deleteAll(coll, ids), options);
    this.replaces = new DataLoader<Replace<T>, boolean>((all) => replaceAll(coll, all), { ...options, maxBatchSize: maxReplaces });
  }

  /** Inserts `doc`; false if a document with its `_id` exists (MongoDB's duplicate key). */
  insert(doc: T): Promise<boolean> {
    return this.inserts.load(doc);
  }

  /** Deletes the document `id` if there is one. */
  delete(id: string): Promise<void> {
    return this.deletes.load(id);
  }

  /**
   * Deletes the document `id` within `LATER_MS`, in one command with every
   * other delete asked for meanwhile (sent at once when they fill a command):
   * for documents nobody waits to see gone. A failed command leaves its
   * documents (told to `onLost`: how many, and why); `flush` sends what waits.
   */
  deleteLater(id: string): void {
    this.later.push(id);
    if (this.later.length >= MAX_BATCH) void this.flush();
    else this.laterTimer ??= setTimeout(() => this.flush(), LATER_MS);
  }

  /** Sends the deletes `deleteLater` holds; resolves when every one sent so far is answered. */
  flush(): Promise<void> {
    clearTimeout(this.laterTimer);
    this.laterTimer = undefined;
    const ids = this.later.splice(0);
    if (ids.length > 0) {
      const sent = deleteAll(this.coll, ids).then(
        (outcomes) => {
          const failed = outcomes.filter((o): o is Error => o instanceof Error);
          if (failed.length > 0) this.onLost(failed.length, failed[0]);
        },
        (err: unknown) => this.onLost(ids.length, err),
      );
      this.laterSent.add(sent);
      void sent.then(() => this.laterSent.delete(sent));
    }
    return Promise.all(this.laterSent).then(() => undefined);
  }

  /**
   * Replaces the document `doc._id` by `doc` if its `field` still holds
   * `expected` (absent: the field is missing); false if not. A batch whose
   * replaces do not all match tells every caller of it false: each then reads
   * its document and tries again, as after a lost race, which is correct for
   * the ones that did match too when replacing is idempotent for its writer
   * (the read store's versioned documents record what they applied).
   */
  replace(field: string, expected: unknown, doc: T): Promise<boolean> {
    return this.replaces.load({ field, expected, doc });
  }
}

interface Replace<T> {
  field: string;
  expected: unknown;
  doc: T;
}

async function replaceAll<T extends Document & { _id: string }>(coll: Collection<T>, all: readonly Replace<T>[]): Promise<(boolean | Error)[]> {
  const ops = all.map(({ field, expected, doc }) => ({
    replaceOne: { filter: { _id: doc._id, [field]: expected === undefined ? { $exists: false } : expected } as Parameters<Collection<T>['replaceOne']>[0], replacement: doc as Parameters<Collection<T>['replaceOne']>[1] },
  }));
  if (ops.length === 1) return [(await coll.replaceOne(ops[0]!.replaceOne.filter, ops[0]!.replaceOne.replacement)).matchedCount === 1];
  try {
    const matched = (await coll.bulkWrite(ops, { ordered: false })).matchedCount;
    return all.map(() => matched === all.length);
  } catch (err) {
    if (isTransient(err)) throw err;
    return eachAlone(all, (one) => replaceAll(coll, [one]));
  }
}

async function insertAll<T extends Document & { _id: string }>(coll: Collection<T>, docs: readonly T[]): Promise<(boolean | Error)[]> {
  const all = docs as OptionalUnlessRequiredId<T>[];
  try {
    if (all.length === 1) await coll.insertOne(all[0]!);
    else await coll.insertMany(all, { ordered: false });
    return docs.map(() => true);
  } catch (err) {
    if (all.length === 1) {
      if (isDuplicateKeyError(err)) return [false];
      throw err;
    }
    return perStatement(err, docs.length, (code) => (code === 11000 ? false : undefined), true, () => eachAlone(docs, (doc) => insertAll(coll, [doc])));
  }
}

async function deleteAll<T extends Document & { _id: string }>(coll: Collection<T>, ids: readonly string[]): Promise<(undefined | Error)[]> {
  const filters = ids.map((id) => ({ _id: id }) as Parameters<Collection<T>['deleteOne']>[0] & object);
  try {
    if (filters.length === 1) await coll.deleteOne(filters[0]);
    else await coll.bulkWrite(filters.map((filter) => ({ deleteOne: { filter } })), { ordered: false });
    return ids.map(() => undefined);
  } catch (err) {
    if (ids.length === 1) throw err;
    return perStatement(err, ids.length, () => undefined, undefined, () => eachAlone(ids, (id) => deleteAll(coll, [id])));
  }
}

/**
 * The outcome of each of `n` statements from a command's error. A write error
 * names its statement by index (`expected` maps the codes a caller is told as
 * a value, e.g. a duplicate `_id`); the others succeeded. An error of the
 * server or the network (transient) fails every statement. Any other error of
 * the whole command (the driver refusing a document over 16 MB, say) may be
 * one statement's doing: each is then sent alone, so no caller fails for what
 * another one wrote.
 */
function perStatement<V>(err: unknown, n: number, expected: (code: number) => V | undefined, ok: V, alone: () => Promise<(V | Error)[]>): (V | Error)[] | Promise<(V | Error)[]> {
  const errors = err instanceof MongoBulkWriteError && !err.writeConcernError ? [err.writeErrors].flat() : [];
  if (errors.length === 0) {
    if (isTransient(err)) throw err;
    return alone();
  }
  const out: (V | Error)[] = Array.from({ length: n }, () => ok);
  for (const e of errors) out[e.index] = expected(e.code) ?? new BatchedWriteError(e.errmsg ?? `write error ${e.code}`, e.code);
  return out;
}

/** Each item sent in a command of its own, its error its own outcome. */
function eachAlone<K, V>(items: readonly K[], one: (item: K) => Promise<(V | Error)[]>): Promise<(V | Error)[]> {
  return Promise.all(items.map((item) => one(item).then(([outcome]) => outcome!, (err: unknown) => (err instanceof Error ? err : new Error(String(err))))));
}
