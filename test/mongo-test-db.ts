import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { MongoReadStore } from '../src/readstore/mongo';

/**
 * For a contract suite on MongoDB (inside its describe): a database of its own
 * for this run, dropped after the suite. Returns its name.
 */
export function freshTestDatabase(): string {
  const dbName = `chatflow_test_${randomBytes(4).toString('hex')}`;
  afterAll(async () => {
    const store = await MongoReadStore.connect({ uri: process.env.MONGODB_URI!, dbName, logger: pino({ level: 'silent' }) });
    await store.dropDatabase();
    await store.close();
  });
  return dbName;
}
