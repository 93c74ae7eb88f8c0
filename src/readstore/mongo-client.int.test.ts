import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { connectMongo } from './mongo-client';

const logger = pino({ level: 'silent' });

describeWithEngines(['MONGODB_URI'], 'MongoDB client: the update gate says how long statements waited for it', () => {
  const dbName = freshTestDatabase();

  // Issue 15: whether the stack's updates wait in the process (CHATFLOW_MONGO_UPDATE_CONCURRENCY) or at the engine was not measured.
  it('tells the wait of every update-shaped statement, by method, and nothing for other commands', async () => {
    const waits: [string, number][] = [];
    const { client, db } = await connectMongo({ uri: process.env.MONGODB_URI!, dbName, logger, updateConcurrency: 1, onUpdateWait: (method, s) => waits.push([method, s]) });
    try {
      const coll = db.collection<{ _id: string; n: number }>('gate_waits');
      await coll.insertMany([{ _id: 'a', n: 0 }, { _id: 'b', n: 0 }, { _id: 'c', n: 0 }]);
      await coll.findOne({ _id: 'a' });
      await Promise.all([coll.updateOne({ _id: 'a' }, { $inc: { n: 1 } }), coll.updateOne({ _id: 'b' }, { $inc: { n: 1 } }), coll.replaceOne({ _id: 'c' }, { n: 1 })]);
      expect(waits.map(([m]) => m).sort()).toEqual(['replaceOne', 'updateOne', 'updateOne']);
      // One place: the second and third waited for the first (and the third for the second).
      expect(waits.filter(([, s]) => s > 0).length).toBeGreaterThanOrEqual(2);
    } finally {
      await client.close();
    }
  });
});
