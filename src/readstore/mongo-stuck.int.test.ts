import { existsSync } from 'node:fs';
import type { MongoClient } from 'mongodb';
import pino from 'pino';
import { describeWhen } from '../../test/engines';
import { FERRETDB_BIN, PrivateFerretDb } from '../../test/private-engines';
import { connectMongo } from './mongo-client';

/*
 * A client whose view of the server stays "unreachable" after the server came
 * back (seen once per two ferretdb-kill runs in the fault matrix, in the
 * projector alone; one driver cause found since: mongo-socket-closed.int.test.ts). Simulated here by pointing
 * the driver's monitor at a dead port while FerretDB is down: once it is back,
 * operations keep failing server selection until the client is connected again.
 */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

describeWhen(existsSync(FERRETDB_BIN), 'A MongoDB client whose view of the server is stuck unreachable', `needs ${FERRETDB_BIN} (npm run stack:install)`, () => {
  jest.setTimeout(120_000);
  let ferret: PrivateFerretDb;
  beforeAll(async () => {
    ferret = await PrivateFerretDb.create();
    await ferret.start();
  }, 60_000);
  afterAll(async () => ferret?.remove());

  it('given the server back but the client still seeing it unreachable, when a fresh connection reaches it, then the client connects again and operations work', async () => {
    const { client, db } = await connectMongo({ uri: ferret.uri, logger, timeoutMs: 1_000, stuckViewMs: 1_500 });
    try {
      const coll = db.collection<{ _id: string; n: number }>('stuck');
      await coll.insertOne({ _id: 'a', n: 1 });
      await ferret.kill();
      // Until the client sees the server unreachable: operations then fail server selection.
      for (let seen = ''; seen !== 'MongoServerSelectionError'; ) seen = await coll.findOne({ _id: 'a' }).then(() => '', (e: Error) => e.name);
      // The wedge: the driver's monitor checks a port nobody listens on, so it never sees the server again.
      type Address = { constructor: { fromString(s: string): Address } };
      for (const server of (client as unknown as { topology: { s: { servers: Map<string, { monitor?: { connectOptions: { hostAddress: Address } } }> } } }).topology.s.servers.values()) {
        const m = server.monitor;
        if (m) m.connectOptions = { ...m.connectOptions, hostAddress: m.connectOptions.hostAddress.constructor.fromString('127.0.0.1:1') };
      }
      await ferret.start();
      const worked = async () => coll.findOne({ _id: 'a' }).then((d) => d?.n === 1, () => false);
      let ok = false;
      for (const end = Date.now() + 30_000; !ok && Date.now() < end; ) {
        ok = await worked();
        if (!ok) await new Promise((r) => setTimeout(r, 250));
      }
      expect(ok).toBe(true);
    } finally {
      await (client as MongoClient).close();
    }
  });
});
