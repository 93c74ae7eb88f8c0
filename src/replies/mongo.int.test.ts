import { MongoClient } from 'mongodb';
import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { MongoReadStore } from '../readstore/mongo';
import { MongoReplyClaims } from './mongo';
import { CONTRACT_DEAD_AFTER_MS, describeReplyClaims } from './claims.contract';
import { replyClaim, type OutcomeRecord, type ReplyClaimState } from '../domain/reply-claim';

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

  it('a message whose records no prune can have touched yet (intact) costs 3 commands: no outcome read', async () => {
    const claims = await MongoReplyClaims.on(client.db(dbName), { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_rt3', heartbeats: 'beats_rt3' });
    await claims.beat('wA', Date.now());
    commands.length = 0;
    expect(await claims.claim('m-rt3', 'wA', Date.now(), { intact: true })).toEqual({ type: 'claimed', gen: 1, taken: false });
    expect(await claims.commit('m-rt3', 'wA', 1, new TextEncoder().encode('reply'))).toBe(true);
    await claims.confirmAppended('m-rt3', Date.now());
    expect([...commands].sort()).toEqual(['insert', 'insert', 'update']);
    expect(await claims.claim('m-rt3', 'wB', Date.now(), { intact: true })).toEqual({ type: 'answered' });
  });

  it('without intact, a message whose generations a prune cut short removed still answers "answered" from its outcome', async () => {
    const db = client.db(dbName);
    const claims = await MongoReplyClaims.on(db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_half', heartbeats: 'beats_half' });
    await claims.beat('wA', Date.now());
    await claims.claim('m-half', 'wA', Date.now());
    await claims.commit('m-half', 'wA', 1, new TextEncoder().encode('reply'));
    await claims.confirmAppended('m-half', Date.now());
    await db.collection('claims_half').deleteOne({ _id: 'm-half#1' as never }); // a prune stopped between the generations and the outcome
    expect(await claims.claim('m-half', 'wB', Date.now())).toEqual({ type: 'answered' });
  });
});

// Review finding (issue 15): confirmAppended is one conditional update; its rule must be the decider's.
describeWithEngines(['MONGODB_URI'], 'MongoReplyClaims.confirmAppended: the decider\'s rule', () => {
  const dbName = freshTestDatabase();
  let store: MongoReadStore;
  beforeAll(async () => {
    store = await MongoReadStore.connect({ uri: process.env.MONGODB_URI!, dbName, logger });
  });
  afterAll(async () => store.close());

  const outcomeOf = async (collection: string, id: string): Promise<Pick<OutcomeRecord, 'gen' | 'owner' | 'appended' | 'appendedAt'> | null> => {
    const d = await store.db.collection<{ _id: string; gen: number; owner: string; appended: boolean; appendedAt?: number }>(collection).findOne({ _id: `${id}#outcome` });
    return d && { gen: d.gen, owner: d.owner, appended: d.appended, ...(d.appendedAt !== undefined ? { appendedAt: d.appendedAt } : {}) };
  };

  it.each(['no outcome', 'an outcome appended', 'an outcome not appended'])('leaves the records as the decider says, with %s', async (situation) => {
    const collection = `claims_confirm_${situation.replace(/ /g, '_')}`;
    const claims = await MongoReplyClaims.on(store.db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection, heartbeats: `${collection}_beats` });
    const t0 = Date.now();
    await claims.beat('wA', t0);
    expect(await claims.claim('m', 'wA', t0)).toEqual({ type: 'claimed', gen: 1, taken: false });
    if (situation !== 'no outcome') expect(await claims.commit('m', 'wA', 1, new TextEncoder().encode('reply'))).toBe(true);
    if (situation === 'an outcome appended') await claims.confirmAppended('m', t0 + 1);
    const before = await outcomeOf(collection, 'm');
    const state: ReplyClaimState = { claims: [], beats: {}, outcome: before && { ...before, event: new Uint8Array() } };
    const decided = replyClaim.decide({ type: 'ConfirmAppended', now: t0 + 2 }, state).reduce(replyClaim.evolve, state).outcome;
    await claims.confirmAppended('m', t0 + 2);
    const expected = decided && { gen: decided.gen, owner: decided.owner, appended: decided.appended, ...(decided.appendedAt !== undefined ? { appendedAt: decided.appendedAt } : {}) };
    expect(await outcomeOf(collection, 'm')).toEqual(expected);
  });
});
