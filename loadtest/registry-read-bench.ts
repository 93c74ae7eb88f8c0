/*
 * What the registry's questions about the held slots cost on FerretDB v1
 * (issue 15, scale on the stack): a read of every slot (`find({})`, as the
 * driver sends it and with one batch), counting the round trips (find +
 * getMore) it takes; a count of them (countDocuments, the count command
 * behind estimatedDocumentCount): what a refusal of "full" would cost if it
 * were said on a fresh count instead of a fresh read; and a lookup by `_id`.
 *
 *   npx tsx loadtest/registry-read-bench.ts [--uri mongodb://…] [--leases 7000] [--runs 5]
 */
import { loadavg } from 'node:os';
import { MongoClient, type CommandStartedEvent } from 'mongodb';
import { PrivateFerretDb } from '../test/private-engines';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};

async function main(): Promise<void> {
  const leases = Number(arg('leases') ?? 7_000);
  const runs = Number(arg('runs') ?? 5);
  const ferret = arg('uri') ? undefined : await PrivateFerretDb.create();
  await ferret?.start();
  const client = await MongoClient.connect(arg('uri') ?? ferret!.uri, { monitorCommands: true });
  const commands: string[] = [];
  client.on('commandStarted', (e: CommandStartedEvent) => commands.push(e.commandName));
  try {
    const db = client.db(`registry_read_bench_${Date.now()}`);
    const coll = db.collection<{ _id: string }>('leases');
    await coll.createIndex({ n: 1 }, { unique: true });
    await coll.createIndex({ clientId: 1 }, { unique: true });
    const t0 = Date.now();
    const docs = Array.from({ length: leases }, (_, i) => {
      const sessionId = `${crypto.randomUUID()}`;
      const holder = ['lt-gateway-1/run', 'lt-gateway-2/run'][i % 2]!;
      return { _id: sessionId, n: i, clientId: `scale-abcdef-s-${i}`, sessionId, gatewayId: holder.split('/')[0]!, holder, conversationId: crypto.randomUUID(), acquiredAt: t0, expiresAt: t0 + 60_000 };
    });
    for (let i = 0; i < leases; i += 1000) await coll.insertMany(docs.slice(i, i + 1000));
    console.log(`${leases} leases; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const variants: [string, () => Promise<unknown[]>][] = [
      ['find({}) as sent today (driver defaults)', () => coll.find({}).toArray()],
      [`find({}) batchSize ${leases + 1}`, () => coll.find({}, { batchSize: leases + 1 }).toArray()],
      ['find({}) only n', () => coll.find({}, { projection: { n: 1 } }).toArray()],
      ['countDocuments({})', async () => Array(await coll.countDocuments({}))],
      ['estimatedDocumentCount()', async () => Array(await coll.estimatedDocumentCount())],
      ['findOne({ _id })', async () => Array(leases).fill(await coll.findOne({ _id: docs[leases >> 1]!._id }))],
    ];
    for (const [name, f] of variants) {
      const ms: number[] = [];
      let trips = 0;
      for (let r = 0; r < runs; r++) {
        commands.length = 0;
        const s = performance.now();
        const got = await f();
        ms.push(performance.now() - s);
        trips = commands.length;
        if (got.length !== leases) throw new Error(`read ${got.length}`);
      }
      ms.sort((a, b) => a - b);
      console.log(`${name}: ${trips} round trips (${commands.join(',').slice(0, 60)}…), median ${ms[Math.floor(runs / 2)]!.toFixed(0)} ms, max ${ms[runs - 1]!.toFixed(0)} ms`);
    }
    console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    await db.dropDatabase().catch(() => undefined);
  } finally {
    await client.close();
    await ferret?.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
