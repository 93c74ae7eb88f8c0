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
    client.on('commandStarted', (e) => statements.push({ command: e.commandName, n: (e.command.documents ?? e.command.deletes ?? e.command.updates ?? [null]).length }));
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

  it('holds deletes nobody waits for until one command takes them all: after 250 ms, when they fill a command, or on flush', async () => {
    const coll = client.db(dbName).collection<Item>('deletes-later');
    await coll.insertMany(Array.from({ length: 150 }, (_, i) => ({ _id: `k${i}`, n: 0 })));
    const batch = new WriteBatcher(coll);
    statements.length = 0;
    // Asked for over several turns of the loop: none is sent yet.
    for (const id of ['k0', 'k1', 'missing']) {
      batch.deleteLater(id);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(statements).toEqual([]);
    while (statements.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(statements).toEqual([{ command: 'delete', n: 3 }]);
    await batch.flush();
    expect(await coll.countDocuments({ _id: { $in: ['k0', 'k1'] } })).toBe(0);
    // A command's worth goes as it fills; the rest waits (here: for flush).
    statements.length = 0;
    for (let i = 2; i < 110; i++) batch.deleteLater(`k${i}`);
    await batch.flush();
    expect(statements).toEqual([
      { command: 'delete', n: 100 },
      { command: 'delete', n: 8 },
    ]);
    expect(await coll.countDocuments()).toBe(40);
  });

  it('tells onLost how many deletes a failed command left, and why, instead of throwing', async () => {
    const down = new MongoClient('mongodb://127.0.0.1:1/x', { serverSelectionTimeoutMS: 200 });
    try {
      const lost: { count: number; err: unknown }[] = [];
      const batch = new WriteBatcher(down.db('x').collection<Item>('nowhere'), { onLost: (count, err) => lost.push({ count, err }) });
      batch.deleteLater('a');
      batch.deleteLater('b');
      await batch.flush();
      expect(lost).toHaveLength(1);
      expect(lost[0]!.count).toBe(2);
      expect(isTransient(lost[0]!.err)).toBe(true);
    } finally {
      await down.close();
    }
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

  it('fails only the caller whose replacement the whole command was refused for (over 16 MB); the others of its batch are told their own outcome', async () => {
    const coll = client.db(dbName).collection<Item & { v: number; blob?: string }>('poisoned-replaces');
    await coll.insertMany(['a', 'big', 'c'].map((id) => ({ _id: id, n: 0, v: 1 })));
    const batch = new WriteBatcher(coll, { maxReplaces: 8 });
    const outcomes = await Promise.allSettled([
      batch.replace('v', 1, { _id: 'a', n: 1, v: 2 }),
      batch.replace('v', 1, { _id: 'big', n: 1, v: 2, blob: 'x'.repeat(17 * 1024 * 1024) }),
      batch.replace('v', 1, { _id: 'c', n: 1, v: 2 }),
    ]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : 'rejected'))).toEqual([true, 'rejected', true]);
    expect(isTransient((outcomes[1] as PromiseRejectedResult).reason)).toBe(false);
    expect(await coll.find({}, { projection: { blob: 0 } }).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', n: 1, v: 2 },
      { _id: 'big', n: 0, v: 1 },
      { _id: 'c', n: 1, v: 2 },
    ]);
  });

  it('sends the replaces of one turn in commands of at most maxReplaces; each matched is true, one alone is told its own outcome', async () => {
    const coll = client.db(dbName).collection<Item & { v?: number }>('replaces');
    await coll.insertMany(['a', 'b', 'c', 'd', 'e'].map((id) => ({ _id: id, n: 0, v: 1 })));
    await coll.insertOne({ _id: 'unversioned', n: 0 });
    const batch = new WriteBatcher(coll, { maxReplaces: 3 });
    statements.length = 0;
    const outcomes = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => batch.replace('v', 1, { _id: id, n: 1, v: 2 })));
    expect(outcomes).toEqual([true, true, true, true, true]);
    expect(statements.map((s) => `${s.command} ${s.n}`).sort()).toEqual(['update 2', 'update 3']);
    expect(await coll.countDocuments({ n: 1, v: 2 })).toBe(5);
    // Alone: its own outcome, exactly. An absent field is expected as absent.
    expect(await batch.replace('v', 1, { _id: 'a', n: 9, v: 3 })).toBe(false);
    expect(await batch.replace('v', undefined, { _id: 'unversioned', n: 1, v: 1 })).toBe(true);
    expect(await batch.replace('v', 1, { _id: 'missing', n: 1, v: 2 })).toBe(false);
  });

  it('tells every caller of a batch false when not all its replaces matched, and writes each one that did', async () => {
    const coll = client.db(dbName).collection<Item & { v: number }>('replaces-stale');
    await coll.insertMany(['a', 'b', 'c'].map((id) => ({ _id: id, n: 0, v: id === 'b' ? 5 : 1 })));
    const batch = new WriteBatcher(coll, { maxReplaces: 8 });
    statements.length = 0;
    const outcomes = await Promise.all(['a', 'b', 'c'].map((id) => batch.replace('v', 1, { _id: id, n: 1, v: 2 })));
    expect(statements).toEqual([{ command: 'update', n: 3 }]);
    // Which matched is not told by the server: each caller reads its document again (see WriteBatcher.replace).
    expect(outcomes).toEqual([false, false, false]);
    expect(await coll.find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', n: 1, v: 2 },
      { _id: 'b', n: 0, v: 5 },
      { _id: 'c', n: 1, v: 2 },
    ]);
  });

  it('fails every caller of a command that fails as a whole, with an error its callers retry (transient)', async () => {
    // One client per kind: a client that never connected closes itself after its first failed selection.
    for (const kind of ['insert', 'delete', 'replace'] as const) {
      const down = new MongoClient('mongodb://127.0.0.1:1/x', { serverSelectionTimeoutMS: 200 });
      try {
        const batch = new WriteBatcher(down.db('x').collection<Item>('nowhere'), { maxReplaces: 8 });
        const write = (id: string) => (kind === 'insert' ? batch.insert({ _id: id, n: 1 }) : kind === 'delete' ? batch.delete(id) : batch.replace('n', 0, { _id: id, n: 1 }));
        const outcomes = await Promise.allSettled(['a', 'b', 'c'].map(write));
        expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
        for (const o of outcomes) expect(isTransient((o as PromiseRejectedResult).reason)).toBe(true);
      } finally {
        await down.close();
      }
    }
  });
});
