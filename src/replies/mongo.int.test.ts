import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { MongoReadStore } from '../readstore/mongo';
import { MongoReplyClaims } from './mongo';
import { CONTRACT_DEAD_AFTER_MS, describeReplyClaims } from './claims.contract';

const logger = pino({ level: 'silent' });

describeWithEngines(['MONGODB_URI'], 'ReplyClaims contract: mongodb', () => {
  // A fresh database per run, fresh collections per test; two connections share them, as two workers would.
  const dbName = freshTestDatabase();
  let n = 0;

  describeReplyClaims('mongodb', async () => {
    const uri = process.env.MONGODB_URI!;
    const names = { collection: `claims_${n}`, heartbeats: `beats_${n++}` };
    const one = await MongoReadStore.connect({ uri, dbName, logger });
    const two = await MongoReadStore.connect({ uri, dbName, logger });
    return {
      claims: await MongoReplyClaims.on(one.db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, ...names }),
      other: await MongoReplyClaims.on(two.db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, ...names }),
      cleanup: async () => {
        await one.close();
        await two.close();
      },
    };
  });
});
