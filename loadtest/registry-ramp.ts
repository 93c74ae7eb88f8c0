/*
 * The connection registry on MongoDB under the scale scenario's admission
 * pattern, without the rest of ChatFlow (issue 15): two registries (two
 * gateways) renewing every 1,167 ms and sweeping every second as a gateway does
 * at CHATFLOW_LEASE_MS=8000, admit 10,000 clients in waves of 250 (half each),
 * then 50 more clients are refused one at a time 50 ms apart. Prints admitted,
 * admit p50/p99, renewal p50/max (the trust window is 5 s), refusal p50/p99 and
 * the process's event-loop delay.
 *
 *   npx tsx loadtest/registry-ramp.ts <mongodb uri> [<registry module>]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import pino from 'pino';
import { MongoConnectionRegistry } from '../src/connections/mongo';

const logger = pino({ level: 'silent' });
const q = (a: number[], p: number) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]?.toFixed(1); };
(async () => {
  const uri = process.argv[2];
  const module = process.argv[3];
  const Reg = module ? (await import(module)).MongoConnectionRegistry as typeof MongoConnectionRegistry : MongoConnectionRegistry;
  const dbName = `ramp_${Date.now()}`;
  const names = { collection: 'leases', heartbeats: 'beats' };
  const regs = [await Reg.connect({ uri, dbName, logger, ...names }), await Reg.connect({ uri, dbName, logger, ...names })];
  const holders = ['gw-1/run', 'gw-2/run'];
  const renewMs: number[] = [];
  const h = monitorEventLoopDelay({ resolution: 10 }); h.enable();
  const timers = regs.flatMap((r, i) => {
    let busy = false;
    const renew = async () => { if (busy) return; busy = true; const s = performance.now(); try { await r.renew(holders[i], Date.now(), 7000); renewMs.push(performance.now() - s); } finally { busy = false; } };
    void renew();
    return [setInterval(renew, 1167), setInterval(() => void r.expire(Date.now()).catch(() => undefined), 1000)];
  });
  const admit: number[] = [];
  const start = Date.now();
  let admitted = 0;
  const N = 10_000;
  for (let w = 0; w < N && Date.now() - start < 150_000; w += 250) {
    await Promise.all(Array.from({ length: 250 }, async (_, k) => {
      const i = w + k; const r = i % 2;
      const s = performance.now();
      const res = await regs[r].acquire({ clientId: `c${i}`, sessionId: `s${i}`, gatewayId: holders[r].split('/')[0], holder: holders[r], conversationId: 'c', now: Date.now(), leaseMs: 7000, maxClients: N });
      admit.push(performance.now() - s);
      if (res.ok) admitted++;
    }));
  }
  const openS = (Date.now() - start) / 1000;
  const refuse: number[] = [];
  for (let p = 0; p < 50; p++) {
    const s = performance.now();
    const res = await regs[p % 2].acquire({ clientId: `probe${p}`, sessionId: `probe${p}`, gatewayId: 'gw-1', holder: holders[p % 2], conversationId: 'c', now: Date.now(), leaseMs: 7000, maxClients: N });
    refuse.push(performance.now() - s);
    if (res.ok) console.log('probe admitted!');
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log("refusals in order:", refuse.map((x) => x.toFixed(0)).join(" "));
  for (const t of timers) clearInterval(t);
  console.log(`${module ?? 'new'}: admitted ${admitted} in ${openS.toFixed(1)} s; admit p50 ${q(admit, 0.5)} p99 ${q(admit, 0.99)} ms; renewal p50 ${q(renewMs, 0.5)} max ${q(renewMs, 1)} ms (n=${renewMs.length}); refusal p50 ${q(refuse, 0.5)} p99 ${q(refuse, 0.99)} ms; loop delay max ${(h.max / 1e6).toFixed(0)} ms p99 ${(h.percentile(99) / 1e6).toFixed(0)} ms; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  await new Promise((r) => setTimeout(r, 1500));
  for (const r of regs) await r.close();
  process.exit(0);
})();
