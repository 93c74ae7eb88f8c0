import { MongoClient } from 'mongodb';
import { describeWithEngines } from '../../test/engines';
import { freshTestDatabase } from '../../test/mongo-test-db';
import { BatchedWrites } from './mongo-batch';
import { isDuplicateKeyError } from './mongo-client';

interface Item {
  _id: string;
  n: number;
}

describeWithEngines(['MONGODB_URI'], 'BatchedWrites (one command per kind and turn)', () => {
  const dbName = freshTestDatabase();
  let client: MongoClient;
  const commands: string[] = [];
  beforeAll(async () => {
    client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    client.on('commandStarted', (e) => commands.push(e.commandName));
    await client.connect();
  });
  afterAll(async () => client.close());

  it('sends the inserts of one turn as one command; a duplicate fails only its own insert', async () => {
    const coll = client.db(dbName).collection<Item>('batched_inserts');
    await coll.insertOne({ _id: 'taken', n: 0 });
    const writes = new BatchedWrites(coll);
    commands.length = 0;
    const results = await Promise.allSettled(['a', 'b', 'taken', 'c'].map((id, n) => writes.insertOne({ _id: id, n })));
    expect(commands).toEqual(['insert']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(isDuplicateKeyError((results[2] as PromiseRejectedResult).reason)).toBe(true);
    expect((await coll.find({}).sort({ _id: 1 }).toArray()).map((d) => [d._id, d.n])).toEqual([['a', 0], ['b', 1], ['c', 3], ['taken', 0]]);
  });

  it('a lone insert that is a duplicate is told so', async () => {
    const coll = client.db(dbName).collection<Item>('batched_lone');
    await coll.insertOne({ _id: 'taken', n: 0 });
    const writes = new BatchedWrites(coll);
    const err = await writes.insertOne({ _id: 'taken', n: 1 }).then(() => null, (e: unknown) => e);
    expect(isDuplicateKeyError(err)).toBe(true);
  });

  it('sends the deletes of one turn as one command, and deletes only the ids given', async () => {
    const coll = client.db(dbName).collection<Item>('batched_deletes');
    await coll.insertMany([{ _id: 'x', n: 1 }, { _id: 'y', n: 2 }, { _id: 'z', n: 3 }]);
    const writes = new BatchedWrites(coll);
    commands.length = 0;
    await Promise.all([writes.deleteById('x'), writes.deleteById('z'), writes.deleteById('nothing')]);
    expect(commands).toEqual(['delete']);
    expect(await coll.find({}).toArray()).toEqual([{ _id: 'y', n: 2 }]);
  });

  it('fails every statement of a command that fails as a whole', async () => {
    const other = new MongoClient(process.env.MONGODB_URI!);
    await other.connect();
    const writes = new BatchedWrites(other.db(dbName).collection<Item>('batched_closed'));
    await other.close();
    const results = await Promise.allSettled([writes.insertOne({ _id: 'p', n: 1 }), writes.insertOne({ _id: 'q', n: 2 }), writes.deleteById('r')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
  });
});
