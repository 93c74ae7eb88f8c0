import { existsSync } from 'node:fs';
import { Socket } from 'node:net';
import pino from 'pino';
import { describeWhen } from '../../test/engines';
import { FERRETDB_BIN, PrivateFerretDb } from '../../test/private-engines';
import { isTransient } from '../resilience/transient';
import { connectMongo } from './mongo-client';

/*
 * Seen in the fault matrix (ferretdb-kill, 1 run in 10): FerretDB killed the
 * moment the projector sent three inserts on pooled connections. The driver
 * logged "Command started" for each, then nothing, for minutes: no reply, no
 * failure, no socket timeout, and the connections were never checked in. The
 * read models of those partitions stopped.
 *
 * The cause, in mongodb 7.9's Connection.writeCommand: a socket closed by its
 * peer between the command's start and its write (there is an `await` in
 * between) is already destroyed when written to. `socket.write` then answers
 * false and emits nothing, and the driver waits for a 'drain' that never comes;
 * the socket's timeout went with the socket. Fixed by patches/mongodb+*.patch:
 * a closed socket fails the write with a network error at once. FerretDB v1
 * has no retryable writes, so the caller sees it: a transient error, which
 * every writer here retries within its own deadline.
 *
 * Simulated here by closing the pooled connection's socket just before the
 * driver writes one marked command to it.
 */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

const write = Socket.prototype.write;
const restoreWrites = () => (Socket.prototype.write = write);

/**
 * Closes the socket that is about to write the first message holding `marker`,
 * just before the write: what the peer's close leaves, a destroyed socket with
 * no error to come. `done` once it did.
 */
function closeBeforeWriting(marker: string): { done: boolean } {
  const closed = { done: false };
  Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    if (!closed.done && Buffer.isBuffer(chunk) && chunk.includes(marker)) {
      closed.done = true;
      this.destroy();
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof Socket.prototype.write;
  return closed;
}

describeWhen(existsSync(FERRETDB_BIN), 'A MongoDB command whose socket closes before it is written', `needs ${FERRETDB_BIN} (npm run stack:install)`, () => {
  jest.setTimeout(60_000);
  let ferret: PrivateFerretDb;
  beforeAll(async () => {
    ferret = await PrivateFerretDb.create();
    await ferret.start();
  }, 60_000);
  afterAll(async () => ferret?.remove());

  it('given a pooled connection closed by the server, when a command is written to it, then the command fails at once with a transient network error instead of waiting forever, and the next one works', async () => {
    const { client, db } = await connectMongo({ uri: ferret.uri, logger, timeoutMs: 2_000, updateConcurrency: 0 });
    try {
      const coll = db.collection<{ _id: string }>('closed_socket');
      await coll.insertOne({ _id: 'warm' }); // a connection in the pool
      const closed = closeBeforeWriting('closed-before-write');

      let failure: unknown;
      const outcome = await Promise.race([
        coll.insertOne({ _id: 'closed-before-write' }).then(
          () => 'inserted',
          (e: Error) => ((failure = e), `failed: ${e.name}`),
        ),
        new Promise<string>((r) => setTimeout(() => r('still waiting after 15 s'), 15_000).unref()),
      ]);
      expect(closed.done).toBe(true);
      expect(outcome).toBe('failed: MongoNetworkError');
      expect(isTransient(failure)).toBe(true);
      await coll.insertOne({ _id: 'closed-before-write' }); // the caller's retry, on a fresh connection
      expect(await coll.countDocuments({ _id: 'closed-before-write' })).toBe(1);
    } finally {
      restoreWrites();
      await client.close();
    }
  });

  it('given the server back after an outage, when the monitor\'s first connection to it closes before its handshake is written, then the client still sees the server again', async () => {
    // The same write in the driver's monitor: hung there, a heartbeat never ends, the server stays
    // "unreachable" for good and every operation fails server selection — what the fault matrix saw
    // in the projector after a FerretDB restart (src/readstore/mongo-stuck.int.test.ts). The check
    // that connects such a client again is off here, to see the driver alone.
    const { client, db } = await connectMongo({ uri: `${ferret.uri}?heartbeatFrequencyMS=500`, logger, timeoutMs: 1_000, stuckViewMs: 0, updateConcurrency: 0 });
    try {
      const coll = db.collection<{ _id: string; n: number }>('closed_monitor');
      await coll.insertOne({ _id: 'a', n: 1 });
      await ferret.kill();
      for (let seen = ''; seen !== 'MongoServerSelectionError'; ) seen = await coll.findOne({ _id: 'a' }).then(() => '', (e: Error) => e.name);
      // The pool is paused while the server is unknown: the next handshake written is the monitor's.
      const closed = closeBeforeWriting('helloOk');
      await ferret.start();
      let ok = false;
      for (const end = Date.now() + 15_000; !ok && Date.now() < end; ) {
        ok = await coll.findOne({ _id: 'a' }).then((d) => d?.n === 1, () => false);
        if (!ok) await new Promise((r) => setTimeout(r, 250));
      }
      expect(closed.done).toBe(true);
      expect(ok).toBe(true);
    } finally {
      restoreWrites();
      await client.close();
    }
  });
});
