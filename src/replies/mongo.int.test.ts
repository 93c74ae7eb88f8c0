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

  // Issue 15: the claims were ~8 sequential round trips and 11 commands per message on the stack; then 4, one of
  // them an update (the outcome marked appended), which on FerretDB waits behind every other update.
  it('claims, commits and confirms a fresh message in 5 commands, none of them an update (a mark and the outcome are read beside the first claim)', async () => {
    const claims = await MongoReplyClaims.on(client.db(dbName), { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_rt', heartbeats: 'beats_rt' });
    await claims.beat('wA', Date.now());
    commands.length = 0;
    expect(await claims.claim('m-rt', 'wA', Date.now())).toEqual({ type: 'claimed', gen: 1, taken: false });
    expect(await claims.commit('m-rt', 'wA', 1, new TextEncoder().encode('reply'))).toBe(true);
    await claims.confirmAppended('m-rt', Date.now());
    expect([...commands].sort()).toEqual(['find', 'find', 'insert', 'insert', 'insert']);
    expect(await claims.claim('m-rt', 'wB', Date.now())).toEqual({ type: 'answered' });
  });

  it('a message whose records no prune can have touched yet (intact) costs 3 commands: no outcome read', async () => {
    const claims = await MongoReplyClaims.on(client.db(dbName), { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_rt3', heartbeats: 'beats_rt3' });
    await claims.beat('wA', Date.now());
    commands.length = 0;
    expect(await claims.claim('m-rt3', 'wA', Date.now(), { intact: true })).toEqual({ type: 'claimed', gen: 1, taken: false });
    expect(await claims.commit('m-rt3', 'wA', 1, new TextEncoder().encode('reply'))).toBe(true);
    await claims.confirmAppended('m-rt3', Date.now());
    expect([...commands].sort()).toEqual(['insert', 'insert', 'insert']);
    expect(await claims.claim('m-rt3', 'wB', Date.now(), { intact: true })).toEqual({ type: 'answered' });
  });

  // Issue 15: a worker's claims for the messages of one fetch were a command each, and FerretDB v1 pays per command.
  it('claims, commits and confirms messages handled together in one insert command per step', async () => {
    const claims = await MongoReplyClaims.on(client.db(dbName), { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_many', heartbeats: 'beats_many' });
    await claims.beat('wA', Date.now());
    const ids = Array.from({ length: 10 }, (_, i) => `m-many-${i}`);
    commands.length = 0;
    const claimed = await Promise.all(ids.map((id) => claims.claim(id, 'wA', Date.now(), { intact: true })));
    expect(claimed.every((c) => c.type === 'claimed')).toBe(true);
    expect(await Promise.all(ids.map((id) => claims.commit(id, 'wA', 1, new TextEncoder().encode(`reply to ${id}`))))).toEqual(ids.map(() => true));
    await Promise.all(ids.map((id) => claims.confirmAppended(id, Date.now())));
    expect(commands).toEqual(['insert', 'insert', 'insert']);
    for (const id of ids) expect(await claims.claim(id, 'wB', Date.now())).toEqual({ type: 'answered' });
    // A message another worker holds still loses its claim alone, inside a batch of fresh ones.
    const [taken, fresh] = await Promise.all([claims.claim(ids[0]!, 'wB', Date.now(), { intact: true }), claims.claim('m-many-new', 'wB', Date.now(), { intact: true })]);
    expect(taken).toEqual({ type: 'answered' });
    expect(fresh).toEqual({ type: 'claimed', gen: 1, taken: false });
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
    await db.collection('claims_half').deleteOne({ _id: 'm-half#outcome' as never }); // … or between the outcome and its mark
    expect(await claims.claim('m-half', 'wB', Date.now())).toEqual({ type: 'answered' });
    expect(await claims.claim('m-half', 'wB', Date.now(), { intact: true })).toEqual({ type: 'answered' }); // the generation 1 it just inserted changes nothing
  });

  it('a prune cut short leaves records the next prune takes: a mark alone goes too', async () => {
    const db = client.db(dbName);
    const claims = await MongoReplyClaims.on(db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_cut', heartbeats: 'beats_cut' });
    const t0 = Date.now();
    await claims.beat('wA', t0);
    await claims.claim('m-cut', 'wA', t0);
    await claims.commit('m-cut', 'wA', 1, new TextEncoder().encode('reply'));
    await claims.confirmAppended('m-cut', t0);
    await db.collection('claims_cut').deleteMany({ _id: { $in: ['m-cut#1', 'm-cut#outcome'] } as never });
    expect(await claims.prune(t0 + 10, 5)).toEqual({ messages: 1, heartbeats: 0 });
    expect(await db.collection('claims_cut').countDocuments({})).toBe(0);
  });

  it('an outcome marked appended by an update (records kept from before the marks) still answers, and is pruned', async () => {
    const db = client.db(dbName);
    const claims = await MongoReplyClaims.on(db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection: 'claims_legacy', heartbeats: 'beats_legacy' });
    const t0 = Date.now();
    await claims.beat('wA', t0);
    await db.collection('claims_legacy').insertMany([
      { _id: 'm-old#1', messageId: 'm-old', gen: 1, owner: 'wA' },
      { _id: 'm-old#outcome', messageId: 'm-old', gen: 1, owner: 'wA', appended: true },
    ] as never[]);
    expect(await claims.claim('m-old', 'wB', t0)).toEqual({ type: 'answered' });
    await claims.confirmAppended('m-old', t0); // nothing to do
    expect(await db.collection('claims_legacy').countDocuments({})).toBe(2);
    expect(await claims.prune(t0, 5)).toEqual({ messages: 0, heartbeats: 0 }); // appendedAt given now …
    expect(await claims.prune(t0 + 10, 5)).toEqual({ messages: 1, heartbeats: 0 }); // … and gone keepMs later
    expect(await db.collection('claims_legacy').countDocuments({})).toBe(0);
  });
});

// Review finding (issue 15): confirmAppended is one insert, mostly without a read; its rule must be the decider's.
describeWithEngines(['MONGODB_URI'], 'MongoReplyClaims.confirmAppended: the decider\'s rule', () => {
  const dbName = freshTestDatabase();
  let store: MongoReadStore;
  beforeAll(async () => {
    store = await MongoReadStore.connect({ uri: process.env.MONGODB_URI!, dbName, logger });
  });
  afterAll(async () => store.close());

  const outcomeOf = async (collection: string, id: string): Promise<Pick<OutcomeRecord, 'gen' | 'owner' | 'appended' | 'appendedAt'> | null> => {
    const coll = store.db.collection<{ _id: string; gen: number; owner: string; appendedAt?: number }>(collection);
    const [d, mark] = await Promise.all([coll.findOne({ _id: `${id}#outcome` }), coll.findOne({ _id: `${id}#appended` })]);
    if (!d) return mark && { gen: 0, owner: '', appended: true, appendedAt: mark.appendedAt! };
    return { gen: d.gen, owner: d.owner, appended: mark !== null, ...(mark ? { appendedAt: mark.appendedAt! } : {}) };
  };

  it.each([
    ['no outcome', 'this process'],
    ['an outcome appended', 'this process'],
    ['an outcome not appended', 'this process'],
    ['an outcome appended', 'another process'],
    ['an outcome not appended', 'another process'],
  ])('leaves the records as the decider says, with %s, confirmed by %s', async (situation, by) => {
    const collection = `claims_confirm_${situation.replace(/ /g, '_')}_${by.replace(/ /g, '_')}`;
    const claims = await MongoReplyClaims.on(store.db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection, heartbeats: `${collection}_beats` });
    // Another worker's instance knows nothing of what this one recorded: it reads the records.
    const confirmer = by === 'this process' ? claims : await MongoReplyClaims.on(store.db, { logger, deadAfterMs: CONTRACT_DEAD_AFTER_MS, collection, heartbeats: `${collection}_beats` });
    const t0 = Date.now();
    await claims.beat('wA', t0);
    expect(await claims.claim('m', 'wA', t0)).toEqual({ type: 'claimed', gen: 1, taken: false });
    if (situation !== 'no outcome') expect(await claims.commit('m', 'wA', 1, new TextEncoder().encode('reply'))).toBe(true);
    if (situation === 'an outcome appended') await claims.confirmAppended('m', t0 + 1);
    const before = await outcomeOf(collection, 'm');
    const state: ReplyClaimState = { claims: [], beats: {}, outcome: before && { ...before, event: new Uint8Array() } };
    const decided = replyClaim.decide({ type: 'ConfirmAppended', now: t0 + 2 }, state).reduce(replyClaim.evolve, state).outcome;
    await confirmer.confirmAppended('m', t0 + 2);
    const expected = decided && { gen: decided.gen, owner: decided.owner, appended: decided.appended, ...(decided.appendedAt !== undefined ? { appendedAt: decided.appendedAt } : {}) };
    expect(await outcomeOf(collection, 'm')).toEqual(expected);
  });
});
