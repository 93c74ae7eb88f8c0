import { MongoClient } from 'mongodb';
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

describeWithEngines(['MONGODB_URI'], 'MongoReplyClaims: round trips per message', () => {
  const dbName = freshTestDatabase();
  let client: MongoClient;
  const commands: string[] = [];
  beforeAll(async () => {
    client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true, ignoreUndefined: true });
    client.on('commandStarted', (e) => commands.push(e.commandName));
    await client.connect();
  });
  afterAll(async () => client.close());

  // Issue 15: the claims were ~8 sequential round trips and 11 commands per message on the stack.
  it('claims, commits and confirms a fresh message in 4 commands', async () => {
    const claims = await MongoReplyClaims.on(client.db(dbName), { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_rt', heartbeats: 'beats_rt' });
    await claims.beat('wA', Date.now());
    commands.length = 0;
    expect(await claims.claim('m-rt', 'wA', Date.now())).toEqual({ type: 'claimed', gen: 1, taken: false });
    expect(await claims.commit('m-rt', 'wA', 1, new TextEncoder().encode('reply'))).toBe(true);
    await claims.confirmAppended('m-rt', Date.now());
    expect([...commands].sort()).toEqual(['find', 'insert', 'insert', 'update']);
    expect(await claims.claim('m-rt', 'wB', Date.now())).toEqual({ type: 'answered' });
  });
});
