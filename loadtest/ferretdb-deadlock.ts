/**
 * Reproduces FerretDB v1's hold-and-wait deadlock (issue 15): an update or
 * findAndModify holds the pooled backend connection of its query while it
 * waits for a second one to write. K such commands at once, K ≥ FerretDB's
 * pool (SQLite: 100, fixed; PostgreSQL: `pool_max_conns`, 50 by default),
 * each hold one and wait for another: FerretDB answers nobody again, ping
 * included.
 *
 *   npx tsx loadtest/ferretdb-deadlock.ts [--backend sqlite|postgresql] [--op update|findAndModify|bulk] [--pg-pool N] [--gate N] K...
 *
 * Each K gets a fresh private FerretDB (test/private-engines.ts) on a free
 * port, K documents, then K concurrent single-statement commands on distinct
 * documents from one driver with maxPoolSize K + 8 (`bulk`: one ordered
 * bulkWrite of K updateOne statements). It waits at most --wait-ms (default
 * 20 s), then pings and reads the collection with a fresh client; the
 * engine is killed either way.
 * `--gate N`: through ChatFlow's client (connectMongo) with
 * CHATFLOW_MONGO_UPDATE_CONCURRENCY=N instead of the bare driver.
 * `--uri U`: against a running FerretDB (several of these processes at once
 * stand for a deployment's processes); `--rounds R`: R bursts in a row.
 * Prints one JSON line per K.
 */
import { MongoClient, type Db } from 'mongodb';
import pino from 'pino';
import { parseArgs } from 'node:util';
import { PrivateFerretDb, type FerretDbBackend } from '../test/private-engines';
import { connectMongo } from '../src/readstore/mongo-client';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    backend: { type: 'string', default: 'sqlite' },
    op: { type: 'string', default: 'update' },
    'wait-ms': { type: 'string', default: '20000' },
    'pg-pool': { type: 'string' },
    gate: { type: 'string' },
    uri: { type: 'string' },
    rounds: { type: 'string', default: '1' },
  },
});
const backend = values.backend as FerretDbBackend;
const op = values.op as 'update' | 'findAndModify' | 'bulk';
const waitMs = Number(values['wait-ms']);

async function once(k: number): Promise<Record<string, unknown>> {
  const engine = values.uri ? undefined : await PrivateFerretDb.create({ backend, ...(values['pg-pool'] && { pgPoolMaxConns: Number(values['pg-pool']) }) });
  const uri = values.uri ?? engine!.uri;
  const name = `deadlock-${process.pid}-${k}`;
  let client: MongoClient | undefined;
  try {
    await engine?.start();
    let db: Db;
    if (values.gate === undefined) db = (client = new MongoClient(uri, { maxPoolSize: k + 8, serverSelectionTimeoutMS: 2_000 })).db();
    else ({ client, db } = await connectMongo({ uri, logger: pino({ level: 'silent' }), poolSize: k + 8, timeoutMs: waitMs * 2, updateConcurrency: Number(values.gate) }));
    const coll = db.collection<{ _id: number; n: number }>(name);
    await coll.insertMany(Array.from({ length: k }, (_, i) => ({ _id: i, n: 0 })));
    // Open the driver's connections first so that the K commands leave together.
    await Promise.all(Array.from({ length: k }, () => db.command({ ping: 1 })));
    const started = Date.now();
    let done = 0;
    const burst = () =>
      op === 'bulk'
        ? coll.bulkWrite(Array.from({ length: k }, (_, i) => ({ updateOne: { filter: { _id: i }, update: { $inc: { n: 1 } } } }))).then(() => void (done += k))
        : Promise.all(
            Array.from({ length: k }, (_, i) =>
              (op === 'update' ? coll.updateOne({ _id: i }, { $inc: { n: 1 } }) : coll.findOneAndUpdate({ _id: i }, { $inc: { n: 1 } })).then(() => void done++),
            ),
          );
    const all = (async () => {
      for (let r = 0; r < Number(values.rounds); r++) await burst();
    })();
    const finished = await Promise.race([all.then(() => true, (e: Error) => `failed: ${e.message.slice(0, 80)}`), new Promise<false>((r) => setTimeout(() => r(false), waitMs).unref())]);
    const ms = Date.now() - started;
    const probe = new MongoClient(uri, { serverSelectionTimeoutMS: 3_000, socketTimeoutMS: 3_000 });
    const ping = await probe.db().command({ ping: 1 }).then(() => 'ok', (e: Error) => e.name);
    // SQLite's pool is per database: ping may answer while the collection's database is wedged.
    const read = await probe.db().collection(name).findOne({ _id: 0 as never }).then(() => 'ok', (e: Error) => e.name);
    await probe.close(true).catch(() => undefined);
    return { backend: values.uri ? `given (${backend})` : backend, ...(values['pg-pool'] && { pgPool: Number(values['pg-pool']) }), op, k, gate: values.gate ?? 'none', finished, done, ms, pingAfter: ping, readAfter: read };
  } finally {
    await engine?.remove();
    await client?.close(true).catch(() => undefined);
  }
}

void (async () => {
  for (const k of positionals.map(Number)) console.log(JSON.stringify(await once(k)));
  process.exit(0);
})();
