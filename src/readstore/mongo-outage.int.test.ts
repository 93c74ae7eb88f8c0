import { existsSync } from 'node:fs';
import pino from 'pino';
import { describeWhen } from '../../test/engines';
import { FERRETDB_BIN, PrivateFerretDb } from '../../test/private-engines';
import { isTransient } from '../resilience/transient';
import { MongoReadStore } from './mongo';

/*
 * Issue 10: FerretDB frozen (SIGSTOP: a stalled SQLite backend, a long GC
 * pause, a frozen VM). Its sockets stay open, so server selection never
 * fails; before the fix an operation sent to it waited for ever, and with it
 * the reply claims, the read-model writes and the lease renewals. Asserted:
 * every kind of operation the code base sends fails within the bound (plus
 * slack for a loaded machine) with an error the retries treat as transient,
 * and works again once the server is thawed.
 */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const BOUND_MS = 1_500;

describeWhen(existsSync(FERRETDB_BIN), 'MongoDB operations against a frozen FerretDB', `needs ${FERRETDB_BIN} (npm run stack:install)`, () => {
  jest.setTimeout(120_000);
  let ferret: PrivateFerretDb;
  let store: MongoReadStore;

  beforeAll(async () => {
    ferret = await PrivateFerretDb.create();
    await ferret.start();
    store = await MongoReadStore.connect({ uri: ferret.uri, logger, timeoutMs: BOUND_MS });
  }, 60_000);
  afterAll(async () => {
    ferret?.thaw();
    await store?.close();
    await ferret?.remove();
  });

  it('fails every operation within the bound, as a transient error, and works again after the thaw', async () => {
    const coll = store.db.collection<{ _id: string; n: number }>('frozen');
    // Every kind of command the stores send is accepted with the bound set (FerretDB v1 must take its maxTimeMS).
    await coll.createIndex({ n: 1 });
    await coll.insertOne({ _id: 'a', n: 1 });
    await coll.updateOne({ _id: 'a' }, { $set: { n: 2 } });
    await coll.updateOne({ _id: 'b' }, { $set: { n: 1 } }, { upsert: true });
    await coll.replaceOne({ _id: 'b' }, { n: 3 });
    await coll.bulkWrite([{ insertOne: { document: { _id: 'c', n: 4 } } }, { updateOne: { filter: { _id: 'c' }, update: { $set: { n: 5 } } } }]);
    expect(await coll.find({ n: { $gte: 2 } }).sort({ n: 1 }).limit(10).toArray()).toHaveLength(3);
    expect(await coll.countDocuments({})).toBe(3);
    await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 1 } });
    await coll.deleteMany({ _id: 'c' });
    await store.db.listCollections({}, { nameOnly: true }).toArray();

    ferret.freeze();
    const ops: [string, () => Promise<unknown>][] = [
      ['findOne', () => coll.findOne({ _id: 'a' })],
      ['find', () => coll.find({}).toArray()],
      ['insertOne', () => coll.insertOne({ _id: 'd', n: 6 })],
      ['updateOne', () => coll.updateOne({ _id: 'a' }, { $set: { n: 7 } })],
      ['bulkWrite', () => coll.bulkWrite([{ deleteOne: { filter: { _id: 'b' } } }])],
      ['countDocuments', () => coll.countDocuments({})],
      // More at once than the pool has connections (100): the rest wait for one, and that wait is bounded too.
      ['120 reads at once', () => Promise.any(Array.from({ length: 120 }, () => coll.findOne({ _id: 'a' })))],
    ];
    const outcomes = await Promise.all(ops.map(async ([name, op]) => {
      const t0 = Date.now();
      const err = await op().then(() => undefined, (e: unknown) => e);
      const ms = Date.now() - t0;
      return { name, failed: err !== undefined, transient: isTransient(err) || (err as Error).name, took: ms < BOUND_MS + 2_000 ? 'within the bound' : `${ms} ms` };
    }));
    expect(outcomes).toEqual(ops.map(([name]) => ({ name, failed: true, transient: true, took: 'within the bound' })));

    ferret.thaw();
    // Connections closed by the timeouts are opened again.
    expect(await coll.findOne({ _id: 'a' })).toMatchObject({ _id: 'a' });
    await coll.insertOne({ _id: 'e', n: 8 });
  });
});
