import { MongoClient } from 'mongodb';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { isTransient } from '../resilience/transient';
import { WriteBatcher } from './mongo-batch';

interface Item {
  _id: string;
  n: number;
}

describeWithEngines(['MONGODB_URI'], 'WriteBatcher', () => {
  const dbName = freshTestDatabase();
  let client: MongoClient;
  const statements: { command: string; n: number }[] = [];
  beforeAll(async () => {
    client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    client.on('commandStarted', (e) => statements.push({ command: e.commandName, n: (e.command.documents ?? e.command.deletes ?? [null]).length }));
    await client.connect();
  });
  afterAll(async () => {
    await client.close();
  });
  beforeEach(() => {
    statements.length = 0;
  });

  it('sends the inserts of one turn as one command and tells each caller its own outcome: a duplicate _id is false, not an error', async () => {
    const coll = client.db(dbName).collection<Item>('inserts');
    await coll.insertOne({ _id: 'b', n: 0 });
    const batch = new WriteBatcher(coll);
    statements.length = 0;
    const outcomes = await Promise.all(['a', 'b', 'c', 'd'].map((id) => batch.insert({ _id: id, n: 1 })));
    expect(outcomes).toEqual([true, false, true, true]);
    expect(statements).toEqual([{ command: 'insert', n: 4 }]);
    expect(await coll.find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', n: 1 },
      { _id: 'b', n: 0 },
      { _id: 'c', n: 1 },
      { _id: 'd', n: 1 },
    ]);
    // Alone, an insert is a plain insertOne, with the same outcomes.
    expect(await batch.insert({ _id: 'a', n: 2 })).toBe(false);
    expect(await batch.insert({ _id: 'e', n: 2 })).toBe(true);
  });

  it('sends the deletes of one turn as one command; deleting what is not there is no error', async () => {
    const coll = client.db(dbName).collection<Item>('deletes');
    await coll.insertMany(['a', 'b', 'c'].map((id) => ({ _id: id, n: 0 })));
    const batch = new WriteBatcher(coll);
    statements.length = 0;
    await Promise.all(['a', 'c', 'missing'].map((id) => batch.delete(id)));
    expect(statements).toEqual([{ command: 'delete', n: 3 }]);
    expect(await coll.find({}).toArray()).toEqual([{ _id: 'b', n: 0 }]);
  });

  it('sends at most 100 statements per command, and writes issued in later turns in commands of their own', async () => {
    const coll = client.db(dbName).collection<Item>('many');
    const batch = new WriteBatcher(coll);
    statements.length = 0;
    await Promise.all(Array.from({ length: 250 }, (_, i) => batch.insert({ _id: `x${i}`, n: i })));
    // Sent side by side: in whichever order the pool gives them connections.
    expect(statements.map((s) => s.n).sort((a, b) => b - a)).toEqual([100, 100, 50]);
    statements.length = 0;
    await batch.insert({ _id: 'later-1', n: 0 });
    await batch.insert({ _id: 'later-2', n: 0 });
    expect(statements).toEqual([
      { command: 'insert', n: 1 },
      { command: 'insert', n: 1 },
    ]);
    expect(await coll.countDocuments()).toBe(252);
  });

  it('fails only the caller whose document the whole command was refused for (a document over 16 MB), not the others of its batch', async () => {
    const coll = client.db(dbName).collection<Item & { blob?: string }>('poisoned');
    const batch = new WriteBatcher(coll);
    statements.length = 0;
    const outcomes = await Promise.allSettled([batch.insert({ _id: 'a', n: 1 }), batch.insert({ _id: 'big', n: 1, blob: 'x'.repeat(17 * 1024 * 1024) }), batch.insert({ _id: 'c', n: 1 })]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(isTransient((outcomes[1] as PromiseRejectedResult).reason)).toBe(false);
    expect(await coll.find({}, { projection: { blob: 0 } }).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', n: 1 },
      { _id: 'c', n: 1 },
    ]);
  });

  it('fails every caller of a command that fails as a whole, with an error its callers retry (transient)', async () => {
    // One client per kind: a client that never connected closes itself after its first failed selection.
    for (const kind of ['insert', 'delete'] as const) {
      const down = new MongoClient('mongodb://127.0.0.1:1/x', { serverSelectionTimeoutMS: 200 });
      try {
        const batch = new WriteBatcher(down.db('x').collection<Item>('nowhere'));
        const outcomes = await Promise.allSettled(['a', 'b', 'c'].map((id) => (kind === 'insert' ? batch.insert({ _id: id, n: 1 }) : batch.delete(id))));
        expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
        for (const o of outcomes) expect(isTransient((o as PromiseRejectedResult).reason)).toBe(true);
      } finally {
        await down.close();
      }
    }
  });
});
