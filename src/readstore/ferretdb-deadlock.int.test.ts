import { existsSync } from 'node:fs';
import pino from 'pino';
import type { Db, MongoClient } from 'mongodb';
import { describeWhen } from '../../test/engines';
import { FERRETDB_BIN, PrivateFerretDb } from '../../test/private-engines';
import { isTransient } from '../resilience/transient';
import { connectMongo, UpdateGate } from './mongo-client';

/*
 * Issue 15: FerretDB v1 holds the backend connection of an update's query
 * until the command returns and takes a second one to write; once its pool
 * (SQLite: 100) is all held that way it answers nobody again
 * (loadtest/ferretdb-deadlock.ts reproduces it). ChatFlow's client bounds the
 * update-shaped statements one process has in flight (UpdateGate). Before it:
 * the 110-statement bulkWrite hung the engine, and 200 concurrent updates
 * all reached it at once. Every wait here is bounded, so a regression fails.
 */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const LIMIT = 8;

const within = <T>(ms: number, p: Promise<T>): Promise<T> =>
  Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`no answer within ${ms} ms (FerretDB hung?)`)), ms).unref())]);

describeWhen(existsSync(FERRETDB_BIN), 'update-shaped commands against FerretDB (SQLite)', `needs ${FERRETDB_BIN} (npm run stack:install)`, () => {
  jest.setTimeout(60_000);
  let ferret: PrivateFerretDb;
  let client: MongoClient;
  let db: Db;
  let inFlight = 0;
  let maxInFlight = 0;

  beforeAll(async () => {
    ferret = await PrivateFerretDb.create();
    await ferret.start();
    // A driver pool far above FerretDB's: only the gate can keep the statements in flight below it.
    ({ client, db } = await connectMongo({ uri: ferret.uri, logger, poolSize: 250, updateConcurrency: LIMIT, onCommand: () => undefined }));
    const updates = new Set<number>();
    client.on('commandStarted', (e) => {
      if (e.commandName !== 'update' && e.commandName !== 'findAndModify') return;
      updates.add(e.requestId);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
    });
    const done = (e: { requestId: number }) => updates.delete(e.requestId) && inFlight--;
    client.on('commandSucceeded', done);
    client.on('commandFailed', done);
  }, 60_000);
  afterAll(async () => {
    await client?.close(true);
    await ferret?.remove();
  });

  it('refuses a bulkWrite of more update statements than the bound instead of hanging FerretDB', async () => {
    const coll = db.collection<{ _id: number; n: number }>('bulk');
    await coll.insertMany(Array.from({ length: 110 }, (_, i) => ({ _id: i, n: 0 })));
    const ops = Array.from({ length: 110 }, (_, i) => ({ updateOne: { filter: { _id: i }, update: { $inc: { n: 1 } } } }));
    await expect(within(10_000, coll.bulkWrite(ops))).rejects.toThrow(/exceeds CHATFLOW_MONGO_UPDATE_CONCURRENCY \(8\)/);
    // Within the bound it goes through, and FerretDB still answers.
    await within(10_000, coll.bulkWrite(ops.slice(0, LIMIT)));
    expect(await within(10_000, coll.countDocuments({ n: 1 }))).toBe(LIMIT);
  });

  it('runs 200 concurrent updates and findAndModifys with at most the bound in flight at FerretDB', async () => {
    const coll = db.collection<{ _id: number; n: number }>('concurrent');
    await coll.insertMany(Array.from({ length: 200 }, (_, i) => ({ _id: i, n: 0 })));
    maxInFlight = 0;
    await within(
      20_000,
      Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? coll.updateOne({ _id: i }, { $inc: { n: 1 } }) : coll.findOneAndUpdate({ _id: i }, { $inc: { n: 1 } })))),
    );
    expect(await coll.countDocuments({ n: 1 })).toBe(200);
    expect(maxInFlight).toBeGreaterThan(1); // they did overlap
    expect(maxInFlight).toBeLessThanOrEqual(LIMIT);
  });

  it('fails a statement that waited past the bound with a transient error, and serves the waiters in order', async () => {
    const gate = new UpdateGate(2);
    let release!: () => void;
    const held = gate.run(2, 0, () => new Promise<void>((r) => (release = r)));
    const late = gate.run(1, 50, async () => 'ran');
    const order: string[] = [];
    const big = gate.run(2, 0, async () => void order.push('big'));
    const small = gate.run(1, 0, async () => void order.push('small'));
    const err = await late.catch((e: unknown) => e);
    expect(isTransient(err)).toBe(true);
    expect(String(err)).toMatch(/waited 50 ms for one of this process's 2 update places/);
    release();
    await Promise.all([held, big, small]);
    expect(order).toEqual(['big', 'small']); // the smaller one did not overtake
  });
});
