/*
 * The connection registry on MongoDB at 10,000 leases (issue 15, scale on the
 * stack): a renewal, a sweep and the refusal of one more client, as one gateway
 * calls them, on a private FerretDB (test/private-engines.ts) or --uri.
 *
 *   npx tsx loadtest/registry-bench.ts [--uri mongodb://…] [--registry <module>] [--leases 10000]
 *
 * `--registry`: another copy of src/connections/mongo.ts (e.g. an older commit's,
 * its imports pointed at src/) to measure it the same way. The leases are
 * written directly (two holders, half each), both holders renew once; then
 * each operation runs one at a time; the first sweep and the first refusal
 * read every lease (the sweep's look for holders with no heartbeat, the
 * admission view), the max shows them.
 */
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { MongoClient } from 'mongodb';
import pino from 'pino';
import type { MongoConnectionRegistry } from '../src/connections/mongo';
import { PrivateFerretDb } from '../test/private-engines';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};

async function main(): Promise<void> {
  const leases = Number(arg('leases') ?? 10_000);
  const module = resolve(arg('registry') ?? resolve(__dirname, '../src/connections/mongo'));
  const Registry = (await import(module)).MongoConnectionRegistry as typeof MongoConnectionRegistry;
  const ferret = arg('uri') ? undefined : await PrivateFerretDb.create();
  await ferret?.start();
  const client = await MongoClient.connect(arg('uri') ?? ferret!.uri);
  try {
    const db = client.db(`registry_bench_${Date.now()}`);
    const registry = await Registry.on(db, { logger: pino({ level: 'silent' }), collection: 'leases', heartbeats: 'beats' });
    const holders = ['gw-1/run', 'gw-2/run'];
    const t0 = Date.now();
    const docs = Array.from({ length: leases }, (_, i) => {
      const sessionId = `sess-${i}-${'a'.repeat(28)}`;
      const holder = holders[i % 2];
      return { _id: sessionId, n: i, clientId: `client-${i}-xxxxxxxx`, sessionId, gatewayId: holder.split('/')[0], holder, conversationId: `conv-${i}-${'c'.repeat(32)}`, acquiredAt: t0, expiresAt: t0 + 60_000 };
    });
    for (let i = 0; i < leases; i += 1000) await db.collection<{ _id: string }>('leases').insertMany(docs.slice(i, i + 1000));
    for (const h of holders) await registry.renew(h, Date.now(), 60_000);
    console.log(`${module}: ${leases} leases; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const time = async (name: string, k: number, f: () => Promise<unknown>) => {
      const ms: number[] = [];
      for (let i = 0; i < k; i++) {
        const s = performance.now();
        await f();
        ms.push(performance.now() - s);
      }
      ms.sort((a, b) => a - b);
      console.log(`${name}: n=${k} median ${ms[Math.floor(k / 2)].toFixed(1)} ms, max ${ms[k - 1].toFixed(1)} ms`);
    };
    await time('renewal (both holders)', 6, () => Promise.all(holders.map((h) => registry.renew(h, Date.now(), 60_000))));
    await time('sweep', 6, () => registry.expire(Date.now()));
    let p = 0;
    await time(`refusal at ${leases} of ${leases}`, 8, async () => {
      const r = await registry.acquire({ clientId: `probe-${p}`, sessionId: `probe-${p++}`, gatewayId: 'gw-1', holder: holders[0], conversationId: 'c', now: Date.now(), leaseMs: 60_000, maxClients: leases });
      if (r.ok || r.reason !== 'full') throw new Error(`not refused as full: ${JSON.stringify(r)}`);
    });
    console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    await db.dropDatabase();
  } finally {
    await client.close();
    await ferret?.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
