import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { MongoReadStore } from '../readstore/mongo';
import { MongoConnectionRegistry } from './mongo';
import { describeConnectionRegistry } from './registry.contract';

const logger = pino({ level: 'silent' });

describeWithEngines(['MONGODB_URI'], 'ConnectionRegistry contract: mongodb', () => {
  // A fresh database per run, a fresh collection per test; two registries (two connections) share it, as two gateways would.
  const dbName = freshTestDatabase();
  let n = 0;

  describeConnectionRegistry('mongodb', async () => {
    const uri = process.env.MONGODB_URI!;
    const names = { collection: `connections_${n}`, heartbeats: `heartbeats_${n++}` };
    const registry = await MongoConnectionRegistry.connect({ uri, dbName, logger, ...names });
    const other = await MongoConnectionRegistry.connect({ uri, dbName, logger, ...names }).catch(async (err: unknown) => {
      await registry.close();
      throw err;
    });
    return {
      registry,
      other,
      cleanup: async () => {
        await other.close();
        await registry.close();
      },
    };
  });
});
