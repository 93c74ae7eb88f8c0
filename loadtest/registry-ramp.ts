/*
 * The connection registry on MongoDB under the scale scenario's admission
 * pattern, without the rest of ChatFlow (issue 15): two registries (two
 * gateways) renewing every 1,167 ms and sweeping every second as a gateway does
 * at CHATFLOW_LEASE_MS=8000, admit `--streams` clients in waves of 250 (half
 * each), then 50 more clients are refused one at a time 50 ms apart. Prints
 * admitted, admit p50/p99, each wave's time, the claims inserted (and how many
 * lost a race), the reads of every slot, renewal p50/max (the trust window is
 * 5 s), refusal p50/p99, the first refusal on each registry and the reads of
 * every slot while refusing, and the process's event-loop delay.
 *
 *   npx tsx loadtest/registry-ramp.ts [--uri mongodb://…] [--registry <module>] [--streams 10000] [--holders gw-1/run,gw-2/run] [--settle ms]
 *
 * Without --uri it runs on a private FerretDB (test/private-engines.ts). A
 * gateway's holder name ends in a random id, so where its slot numbers start
 * (a hash of the name) differs from run to run: --holders picks two names.
 * `gw-1/r0,gw-a/8` start 462 numbers apart (their stretches meet after ~900
 * admissions), `gw-1/run,gw-2/run` 1,887 apart the other way round.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { MongoClient, type CommandFailedEvent, type CommandStartedEvent } from 'mongodb';
import pino from 'pino';
import type { MongoConnectionRegistry } from '../src/connections/mongo';
import { PrivateFerretDb } from '../test/private-engines';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const logger = pino({ level: 'silent' });
const q = (a: number[], p: number) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]?.toFixed(1); };

(async () => {
  const module = resolve(arg('registry') ?? resolve(__dirname, '../src/connections/mongo'));
  const Reg = (await import(module)).MongoConnectionRegistry as typeof MongoConnectionRegistry;
  const N = Number(arg('streams') ?? 10_000);
  const holders = (arg('holders') ?? 'gw-1/run,gw-2/run').split(',');
  const ferret = arg('uri') ? undefined : await PrivateFerretDb.create();
  await ferret?.start();
  const uri = arg('uri') ?? ferret!.uri;
  const dbName = `ramp_${Date.now()}`;
  const names = { collection: 'leases', heartbeats: 'beats' };
  // One client per registry (one per gateway), counting what each sends.
  const counts = { inserts: 0, insertsLost: 0, slotReads: 0, slotGetMores: 0 };
  const clients = await Promise.all(holders.map(() => MongoClient.connect(uri, { monitorCommands: true })));
  for (const c of clients) {
    c.on('commandStarted', (e: CommandStartedEvent) => {
      if (e.commandName === 'insert' && e.command.insert === 'leases') counts.inserts++;
      if (e.commandName === 'find' && e.command.find === 'leases' && Object.keys(e.command.filter ?? {}).length === 0) counts.slotReads++;
      if (e.commandName === 'getMore' && e.command.collection === 'leases') counts.slotGetMores++;
    });
    c.on('commandFailed', (e: CommandFailedEvent) => {
      if (e.commandName === 'insert') counts.insertsLost++;
    });
    c.on('commandSucceeded', (e) => {
      // A duplicate key on insert is a write error in a successful reply.
      if (e.commandName === 'insert' && Array.isArray((e.reply as { writeErrors?: unknown[] }).writeErrors)) counts.insertsLost++;
    });
  }
  const regs = await Promise.all(clients.map((c) => Reg.on(c.db(dbName), { logger, ...names }, c)));
  const renewMs: number[] = [];
  const h = monitorEventLoopDelay({ resolution: 10 }); h.enable();
  const timers = regs.flatMap((r, i) => {
    let busy = false;
    const renew = async () => { if (busy) return; busy = true; const s = performance.now(); try { await r.renew(holders[i]!, Date.now(), 7000); renewMs.push(performance.now() - s); } finally { busy = false; } };
    void renew();
    return [setInterval(renew, 1167), setInterval(() => void r.expire(Date.now()).catch(() => undefined), 1000)];
  });
  const admit: number[] = [];
  const waves: string[] = [];
  const start = Date.now();
  let admitted = 0;
  for (let w = 0; w < N && Date.now() - start < 180_000; w += 250) {
    const ws = performance.now();
    await Promise.all(Array.from({ length: Math.min(250, N - w) }, async (_, k) => {
      const i = w + k; const r = i % 2;
      const s = performance.now();
      const res = await regs[r]!.acquire({ clientId: `c${i}`, sessionId: `s${i}`, gatewayId: holders[r]!.split('/')[0]!, holder: holders[r], conversationId: 'c', now: Date.now(), leaseMs: 7000, maxClients: N });
      admit.push(performance.now() - s);
      if (res.ok) admitted++;
    }));
    waves.push(((performance.now() - ws) / 1000).toFixed(1));
  }
  const openS = (Date.now() - start) / 1000;
  // --settle ms before the refusals (the scale scenario reads the server's memory for ~5 s between the two).
  await new Promise((r) => setTimeout(r, Number(arg('settle') ?? 0)));
  const opened = { ...counts };
  const refuse: number[] = [];
  for (let p = 0; p < 50; p++) {
    const s = performance.now();
    const res = await regs[p % 2]!.acquire({ clientId: `probe${p}`, sessionId: `probe${p}`, gatewayId: 'gw-1', holder: holders[p % 2], conversationId: 'c', now: Date.now(), leaseMs: 7000, maxClients: N });
    refuse.push(performance.now() - s);
    if (res.ok) console.log('probe admitted!');
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const t of timers) clearInterval(t);
  console.log(`${module}: holders ${holders.join(', ')}`);
  console.log(`admitted ${admitted} of ${N} in ${openS.toFixed(1)} s; admit p50 ${q(admit, 0.5)} p99 ${q(admit, 0.99)} ms; waves (s): ${waves.join(' ')}`);
  console.log(`while opening: ${opened.inserts} claims inserted, ${opened.insertsLost} lost a race; ${opened.slotReads} reads of every slot (${opened.slotGetMores} getMores)`);
  // The first refusal on each registry: a view that missed the other's last claims (issue 15, the stack's scale run).
  console.log(`refusals: first on each registry ${refuse.slice(0, 2).map((x) => x.toFixed(1)).join(' / ')} ms, max ${q(refuse, 1)} ms; reads of every slot while refusing: ${counts.slotReads - opened.slotReads}`);
  console.log(`renewal p50 ${q(renewMs, 0.5)} max ${q(renewMs, 1)} ms (n=${renewMs.length}); refusal p50 ${q(refuse, 0.5)} p99 ${q(refuse, 0.99)} ms; loop delay max ${(h.max / 1e6).toFixed(0)} ms p99 ${(h.percentile(99) / 1e6).toFixed(0)} ms; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  await new Promise((r) => setTimeout(r, 1500));
  for (const r of regs) await r.close();
  await ferret?.remove();
  process.exit(0);
})();
