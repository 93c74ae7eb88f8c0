import { MongoClient } from 'mongodb';
import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { MongoReadStore, TICKETS_COLLECTION } from './mongo';
import { isFerretDb } from './mongo-client';
import { describeReadStore } from './readstore.contract';

const logger = pino({ level: 'silent' });

interface Item {
  _id: string;
  n: number;
  [k: string]: unknown;
}

describeWithEngines(['MONGODB_URI'], 'ReadStore contract: mongodb', () => {
  // One fresh database per run; two stores (two connections) on it, as two projectors would have.
  const dbName = freshTestDatabase();

  const twoStores = (writeTickets?: boolean) => async () => {
    const uri = process.env.MONGODB_URI!;
    const store = await MongoReadStore.connect({ uri, dbName, logger, writeTickets });
    const other = await MongoReadStore.connect({ uri, dbName, logger, writeTickets }).catch(async (err: unknown) => {
      await store.close();
      throw err;
    });
    return {
      store,
      other,
      racingWriters: writeTickets !== false || !(await isFerretDb(store.db)),
      cleanup: async () => {
        await other.close();
        await store.close();
      },
    };
  };
  // As the engine chooses (write tickets on FerretDB, plain version checks on MongoDB)…
  describeReadStore('mongodb', twoStores());
  // …and the plain version-check path real MongoDB takes, whatever engine runs the tests. FerretDB v1
  // does not make concurrent conditional writes atomic (the reason for tickets), so there writers take turns.
  describeReadStore('mongodb, version checks without write tickets', twoStores(false));

  describe('MongoReadStore specifics', () => {
    let store: MongoReadStore;
    beforeAll(async () => {
      store = await MongoReadStore.connect({ uri: process.env.MONGODB_URI!, dbName, logger });
    });
    afterAll(async () => {
      await store.close();
    });

    it('creates the equality indexes it was given', async () => {
      const c = store.collection<{ _id: string; owner: string }>('indexed', ['owner']);
      await c.count();
      const names = (await store.db.collection('indexed').indexes()).map((i) => i.name);
      expect(names).toContain('owner_1');
    });

    it('drops collections to rebuild them from scratch', async () => {
      const c = store.collection<{ _id: string; owner: string }>('rebuilt', ['owner']);
      await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x' }));
      await store.drop(['rebuilt', 'never-created']);
      // A handle taken before the drop keeps working, indexes included.
      expect(await c.get('a')).toBeNull();
      await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'y' }));
      expect(await store.collection('rebuilt').get('a')).toEqual({ _id: 'a', owner: 'y' });
      expect((await store.db.collection('rebuilt').indexes()).map((i) => i.name)).toContain('owner_1');
    });

    it('with write tickets, applies concurrent writes from two stores without losing any', async () => {
      const uri = process.env.MONGODB_URI!;
      const [a, b] = await Promise.all([MongoReadStore.connect({ uri, dbName, logger, writeTickets: true }), MongoReadStore.connect({ uri, dbName, logger, writeTickets: true })]);
      try {
        const [ca, cb] = [a.collection<Item>('ticketed'), b.collection<Item>('ticketed')];
        const inc = (d: Item | null): Item => ({ _id: 'hot', n: (d?.n ?? 0) + 1 });
        await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? ca : cb).apply('hot', { stream: `s/${i}`, offset: 1 }, inc)));
        expect(await ca.get('hot')).toEqual({ _id: 'hot', n: 20 });
      } finally {
        await a.close();
        await b.close();
      }
      // Closing sends the deletes of the spent tickets that were waiting for others.
      expect(await store.db.collection(TICKETS_COLLECTION).countDocuments({ collection: 'ticketed' })).toBe(0);
    });

    it('finishes a write whose writer died after taking its ticket, and clears tickets of another version', async () => {
      const ticketed = await MongoReadStore.connect({ uri: process.env.MONGODB_URI!, dbName, logger, writeTickets: true });
      try {
        const c = ticketed.collection<Item>('crashed');
        await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', n: 1 }));
        const raw = (await store.db.collection<Item>('crashed').findOne({ _id: 'a' }))!;
        const tickets = store.db.collection<{ _id: string; [k: string]: unknown }>(TICKETS_COLLECTION);
        // A writer took the ticket for version 2 (built on this version), then died before writing.
        const left = { ...raw, n: 2, _pos: { 's/0': 1, 'dead/0': 9 }, _ver: 2, _tok: 'dead-writer' };
        await tickets.insertOne({ _id: 'crashed/a#2', collection: 'crashed', base: raw._tok, next: left, at: 0 });
        await c.apply('a', { stream: 's/0', offset: 2 }, (d) => ({ ...d!, n: d!.n + 10 }));
        expect(await c.get('a')).toEqual({ _id: 'a', n: 12 });
        // Its position counts as applied now.
        await c.apply('a', { stream: 'dead/0', offset: 9 }, (d) => ({ ...d!, n: 0 }));
        expect((await c.get('a'))?.n).toBe(12);
        // A ticket from an earlier life of the document (another base) is cleared, not applied.
        await tickets.insertOne({ _id: 'crashed/a#4', collection: 'crashed', base: 'earlier-life', next: { _id: 'a', n: -1, _ver: 4, _tok: 'x' }, at: 0 });
        await c.apply('a', { stream: 's/0', offset: 3 }, (d) => ({ ...d!, n: d!.n + 1 }));
        expect(await c.get('a')).toEqual({ _id: 'a', n: 13 });
      } finally {
        await ticketed.close();
      }
      expect(await store.db.collection(TICKETS_COLLECTION).countDocuments({ collection: 'crashed' })).toBe(0);
    });

    // Issue 15: every write read its document first (find + write: two round trips per document and batch).
    it('writes a document it created or last wrote without reading it back; another writer in between costs a retry, not an update', async () => {
      const client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
      const commands: string[] = [];
      client.on('commandStarted', (e) => commands.push(e.commandName));
      await client.connect();
      try {
        const [mine, theirs] = [false, false].map((writeTickets) => new MongoReadStore(client.db(dbName), { logger, writeTickets }).collection<Item>('remembered'));
        await mine!.count(); // its indexes
        commands.length = 0;
        await mine!.apply('x', { stream: 's/0', offset: 1 }, () => ({ _id: 'x', n: 1 }));
        await mine!.apply('x', { stream: 's/0', offset: 2 }, (d) => ({ ...d!, n: d!.n + 1 }));
        expect(commands).toEqual(['insert', 'update']);
        await theirs!.apply('x', { stream: 's/0', offset: 3 }, (d) => ({ ...d!, n: d!.n + 1 }));
        await mine!.apply('x', { stream: 's/0', offset: 4 }, (d) => ({ ...d!, n: d!.n + 1 }));
        await mine!.apply('x', { stream: 's/0', offset: 3 }, (d) => ({ ...d!, n: d!.n + 100 })); // a replay: seen
        expect(await mine!.get('x')).toEqual({ _id: 'x', n: 4 });
      } finally {
        await client.close();
      }
    });

    // Issue 15: every insert and every ticket's delete was a command of its own, and FerretDB v1 pays per command.
    it('sends the inserts of writes made together as one command, tickets included, their replaces 8 to a command, and their spent tickets\' deletes later, in one', async () => {
      const client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
      const statements: { command: string; n: number }[] = [];
      client.on('commandStarted', (e) => statements.push({ command: e.commandName, n: (e.command.documents ?? e.command.deletes ?? e.command.updates ?? [null]).length }));
      // Answered commands, by name: a delete seen starting may not be done yet when the tickets are counted.
      const answered: string[] = [];
      client.on('commandSucceeded', (e) => answered.push(e.commandName));
      await client.connect();
      try {
        const store = new MongoReadStore(client.db(dbName), { logger, writeTickets: true });
        const c = store.collection<Item>('together');
        await c.count(); // its indexes
        const ids = Array.from({ length: 20 }, (_, i) => `t${i}`);
        statements.length = 0;
        await Promise.all(ids.map((id, i) => c.apply(id, { stream: 's/0', offset: i }, () => ({ _id: id, n: 1 }))));
        expect(statements).toEqual([{ command: 'insert', n: 20 }]);
        statements.length = 0;
        await Promise.all(ids.map((id, i) => c.apply(id, { stream: 's/0', offset: 100 + i }, (d) => ({ ...d!, n: d!.n + 1 }))));
        const of = (command: string) => statements.filter((s) => s.command === command);
        // The tickets are taken in one command; the replaces go 8 to a command (a command of n holds n update places, see UpdateGate).
        expect(of('insert')).toEqual([{ command: 'insert', n: 20 }]);
        expect(of('update').map((s) => s.n).sort((a, b) => b - a)).toEqual([8, 8, 4]);
        // The spent tickets wait for others (every ticket of the next 250 ms): no delete yet…
        expect(of('delete')).toEqual([]);
        expect(await c.find({})).toHaveLength(20);
        expect((await c.find({})).every((d) => d.n === 2)).toBe(true);
        // …then one command deletes them all.
        while (!answered.includes('delete')) await new Promise((resolve) => setTimeout(resolve, 50));
        expect(of('delete')).toEqual([{ command: 'delete', n: 20 }]);
        expect(await client.db(dbName).collection(TICKETS_COLLECTION).countDocuments({ collection: 'together' })).toBe(0);
        await store.close();
      } finally {
        await client.close();
      }
    });

    it('fails with a clear message when MongoDB is unreachable', async () => {
      await expect(MongoReadStore.connect({ uri: 'mongodb://127.0.0.1:1/x', logger, serverSelectionTimeoutMS: 300 })).rejects.toThrow(/MongoDB unreachable at mongodb:\/\/127\.0\.0\.1:1\/x/);
    });
  });
});
