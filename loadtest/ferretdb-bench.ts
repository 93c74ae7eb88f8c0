/*
 * FerretDB v1 on SQLite vs on PostgreSQL (issue 15): the operations ChatFlow
 * does, each on a private FerretDB (test/private-engines.ts, free ports), one
 * backend after the other in one run.
 *
 *   flock /work/briefs/heavy.lock npx tsx loadtest/ferretdb-bench.ts [--backends sqlite,postgresql]
 *       [--docs 5000] [--n 500] [--concurrency 16] [--bin <ferretdb>] [--out loadtest/results]
 *
 * Per operation: latency one at a time (p50/p99, ms), throughput with
 * `concurrency` in flight (ops/s), and the engine's CPU per operation (FerretDB
 * plus PostgreSQL's processes, from /proc: moves least when the machine is
 * busy). Then the reply claims (src/replies/mongo.ts) and the read store's
 * per-document write (src/readstore/mongo.ts) as ChatFlow calls them: time and
 * MongoDB commands per message / per document write.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MongoClient, type Db } from 'mongodb';
import pino from 'pino';
import { MongoReadStore } from '../src/readstore/mongo';
import { MongoReplyClaims } from '../src/replies/mongo';
import { PrivateFerretDb, type FerretDbBackend } from '../test/private-engines';
import { summarize } from './stats';

const { values: args } = parseArgs({
  options: {
    backends: { type: 'string', default: 'sqlite,postgresql' },
    docs: { type: 'string', default: '5000' },
    n: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '16' },
    bin: { type: 'string' },
    out: { type: 'string', default: resolve(__dirname, 'results') },
    /** Only the operations whose name contains this (e.g. `reply claims`). */
    only: { type: 'string', default: '' },
  },
});
const DOCS = Number(args.docs);
const N = Number(args.n);
const CONC = Number(args.concurrency);
const CLK_TCK = 100;
/** Statements per command in the batched insert and delete. */
const BATCH = 20;
/** Statements per command in the batched replace (CHATFLOW_MONGO_UPDATE_CONCURRENCY's default). */
const UPDATES = 8;
/** `$in` scans the whole collection on FerretDB v1: fewer of those. */
const SLOW_N = Math.max(10, Math.ceil(N / 10));

/** CPU seconds of `pid` and every descendant (PostgreSQL forks a process per connection). */
function treeCpuSeconds(root: number): number {
  const stats = new Map<number, { ppid: number; cpu: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const raw = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(name), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK });
    } catch {
      // gone
    }
  }
  let total = 0;
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    total += stats.get(pid)?.cpu ?? 0;
    for (const [child, s] of stats) if (s.ppid === pid) todo.push(child);
  }
  return total;
}

interface OpResult {
  op: string;
  p50: number | null;
  p99: number | null;
  opsPerSec: number;
  cpuMsPerOp: number;
}

/**
 * `n` of them one at a time, then `n` more with CONC in flight. `per`: documents
 * each call writes; throughput and CPU are then per document, latency per call.
 */
async function measure(op: string, engineCpu: () => number, fn: (i: number) => Promise<unknown>, n = N, per = 1, conc = CONC): Promise<OpResult | undefined> {
  if (!op.includes(args.only)) return undefined;
  process.stderr.write(`  ${op}\n`);
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    lat.push(performance.now() - t);
  }
  let next = n;
  const end = 2 * n;
  const cpu0 = engineCpu();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < end) await fn(next++);
  }));
  const secs = (performance.now() - t0) / 1000;
  const s = summarize(lat);
  return { op, p50: round(s.p50), p99: round(s.p99), opsPerSec: Math.round((n * per) / secs), cpuMsPerOp: round(((engineCpu() - cpu0) * 1000) / (n * per))! };
}

const round = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);

function doc(id: string, ver: number) {
  return { _id: id, clientId: `c-${id.slice(0, 6)}`, title: 'a conversation about the weather in several places', createdAt: Date.now(), messages: 12, lastMessageAt: Date.now(), status: 'open', _pos: { 'conversations%2f0': ver }, _ver: ver, _tok: randomUUID() };
}

async function benchBackend(backend: FerretDbBackend) {
  const engine = await PrivateFerretDb.create({ backend, bin: args.bin });
  const stop = () => void engine.remove().finally(() => process.exit(1));
  process.once('SIGINT', stop).once('SIGTERM', stop);
  await engine.start();
  const engineCpu = () => treeCpuSeconds(engine.proc!.pid!) + (engine.postgres ? treeCpuSeconds(engine.postgres.proc!.pid!) : 0);
  let commands = 0;
  const client = new MongoClient(engine.uri, { monitorCommands: true, ignoreUndefined: true });
  client.on('commandStarted', () => commands++);
  await client.connect();
  const db: Db = client.db('bench');
  const results: (OpResult | undefined)[] = [];
  try {
    const docs = db.collection<{ _id: string; _ver: number }>('docs');
    const ids = Array.from({ length: DOCS }, (_, i) => `conv-${i.toString().padStart(6, '0')}-${randomUUID().slice(0, 8)}`);
    for (let i = 0; i < DOCS; i += 500) await docs.insertMany(ids.slice(i, i + 500).map((id) => doc(id, 1)));
    const versions = new Map(ids.map((id) => [id, 1]));
    const pick = (i: number) => ids[(i * 7919) % DOCS]!;
    results.push(await measure('findOne by _id (hit)', engineCpu, (i) => docs.findOne({ _id: pick(i) })));
    results.push(await measure('findOne by _id (miss)', engineCpu, (i) => docs.findOne({ _id: `missing-${i}` })));
    results.push(await measure('insertOne', engineCpu, () => db.collection<{ _id: string }>('inserts').insertOne(doc(randomUUID(), 1))));
    // Versioned replace: each document once (2N ≤ DOCS), so no two writers race on one version.
    results.push(await measure('replaceOne {_id, _ver}', engineCpu, async (i) => {
      const id = ids[i % DOCS]!;
      const v = versions.get(id)!;
      versions.set(id, v + 1);
      const r = await docs.replaceOne({ _id: id, _ver: v }, doc(id, v + 1));
      if (r.matchedCount !== 1) throw new Error(`replace of ${id} v${v} matched nothing`);
    }));
    // The same, UPDATES statements per command: how much of an update is the command around it.
    // UPDATES × in flight stays at 8 × 2 (FerretDB v1 hangs once an update's connections fill its pool, see UpdateGate).
    let next = 2 * N;
    results.push(await measure(`replace {_id, _ver}, ${UPDATES} per command (per document)`, engineCpu, async () => {
      const chosen = Array.from({ length: UPDATES }, () => ids[next++ % DOCS]!);
      const r = await docs.bulkWrite(chosen.map((id) => {
        const v = versions.get(id)!;
        versions.set(id, v + 1);
        return { replaceOne: { filter: { _id: id, _ver: v }, replacement: doc(id, v + 1) } };
      }), { ordered: false });
      if (r.matchedCount !== UPDATES) throw new Error(`batched replace matched ${r.matchedCount} of ${UPDATES}`);
    }, Math.floor(N / UPDATES), UPDATES, 2));
    // What src/readstore/mongo-batch.ts sends for the writes of one event-loop turn: one command of many statements.
    const batched = db.collection<{ _id: string }>('batched');
    const batchIds = (i: number) => Array.from({ length: BATCH }, (_, k) => `b-${i}-${k}`);
    // 2 × `calls` commands of BATCH documents; the first half is then deleted one by one, the second half BATCH at a time.
    const calls = Math.max(2, Math.floor(N / BATCH));
    results.push(await measure(`insertMany, ${BATCH} per command (per document)`, engineCpu, (i) => batched.insertMany(batchIds(i).map((id) => doc(id, 1)), { ordered: false }), calls, BATCH));
    results.push(await measure('deleteOne by _id (hit)', engineCpu, (i) => batched.deleteOne({ _id: `b-${Math.floor(i / BATCH)}-${i % BATCH}` }), (calls * BATCH) / 2));
    results.push(await measure(`delete by _id, ${BATCH} per command (per document)`, engineCpu, (i) => batched.bulkWrite(batchIds(calls + i).map((id) => ({ deleteOne: { filter: { _id: id } } })), { ordered: false }), Math.floor(calls / 2), BATCH));
    results.push(await measure('claim insert (reply_claims)', engineCpu, () => {
      const m = randomUUID();
      return db.collection('reply_claims').insertOne({ _id: `${m}#1` as never, messageId: m, gen: 1, owner: 'w1' });
    }));
    results.push(await measure('$in by _id, 50 ids', engineCpu, async (i) => {
      const want = Array.from({ length: 50 }, (_, k) => pick(i * 50 + k));
      const got = await docs.find({ _id: { $in: want } }).toArray();
      if (got.length !== 50) throw new Error(`$in found ${got.length} of 50`);
    }, SLOW_N));
    results.push(await measure('50 findOne by _id in parallel', engineCpu, (i) => Promise.all(Array.from({ length: 50 }, (_, k) => docs.findOne({ _id: pick(i * 50 + k) }))), SLOW_N));

    // The reply claims as a worker uses them: claim, commit, confirmAppended per message.
    const logger = pino({ level: 'silent' });
    const claims = await MongoReplyClaims.on(db, { logger, deadAfterMs: 5_000 });
    await claims.beat('w1', Date.now());
    const event = new Uint8Array(300).fill(7);
    const c0 = commands;
    const claimRun = await measure('reply claims per message (claim+commit+confirm)', engineCpu, async () => {
      const m = randomUUID();
      const r = await claims.claim(m, 'w1', Date.now());
      if (r.type !== 'claimed') throw new Error(`claim: ${r.type}`);
      if (!(await claims.commit(m, 'w1', r.gen, event))) throw new Error('commit lost');
      await claims.confirmAppended(m, Date.now());
    });
    const claimCommands = claimRun ? (commands - c0) / (2 * N) : null;
    results.push(claimRun);

    // The read store's per-document write (the projector's applyMany), on existing documents.
    const store = new MongoReadStore(db, { logger, writeTickets: true });
    const models = store.collection<{ _id: string; n: number }>('models');
    const modelIds = Array.from({ length: 2 * N }, (_, i) => `model-${i}`);
    await Promise.all(modelIds.map((id, i) => models.apply(id, { stream: 's/0', offset: i }, () => ({ _id: id, n: 0 }))));
    let offset = 10 * N;
    const a0 = commands;
    results.push(await measure('read store applyMany (existing doc, ticket)', engineCpu, (i) => {
      const id = modelIds[i]!;
      return models.applyMany(id, [{ position: { stream: 's/0', offset: offset++ }, evolve: (d) => ({ _id: id, n: (d?.n ?? 0) + 1 }) }]);
    }));
    const applyCommands = commands > a0 ? (commands - a0) / (2 * N) : null;
    return { backend, results: results.filter((r): r is OpResult => r !== undefined), claimCommandsPerMessage: round(claimCommands), applyCommandsPerWrite: round(applyCommands) };
  } finally {
    process.off('SIGINT', stop).off('SIGTERM', stop);
    await client.close();
    await engine.remove();
  }
}

(async () => {
  const loadStart = loadavg().map((x) => round(x));
  const backends = args.backends.split(',') as FerretDbBackend[];
  const runs: Awaited<ReturnType<typeof benchBackend>>[] = [];
  for (const b of backends) {
    process.stderr.write(`[ferretdb-bench] ${b}: ${DOCS} documents, ${N} ops one at a time + ${N} with ${CONC} in flight per operation\n`);
    runs.push(await benchBackend(b));
  }
  const loadEnd = loadavg().map((x) => round(x));
  const at = new Date().toISOString();
  const lines = [
    `# FerretDB backends, ${at}`, '',
    `${DOCS} documents; per operation ${N} one at a time (p50/p99 ms) then ${N} with ${CONC} in flight (ops/s, engine CPU ms per op); ${SLOW_N} + ${SLOW_N} of the 50-id reads. Load average at start ${loadStart.join(' / ')}, at end ${loadEnd.join(' / ')}.`, '',
    `| operation | ${backends.map((b) => `${b} p50 / p99 ms | ${b} ops/s | ${b} CPU ms/op`).join(' | ')} |`,
    `| --- | ${backends.map(() => '--- | --- | ---').join(' | ')} |`,
    ...runs[0]!.results.map((r, i) => `| ${r.op} | ${runs.map((run) => { const x = run.results[i]!; return `${x.p50} / ${x.p99} | ${x.opsPerSec} | ${x.cpuMsPerOp}`; }).join(' | ')} |`),
    '',
    ...runs.map((r) => `${r.backend}: ${r.claimCommandsPerMessage} MongoDB commands per message for the reply claims; ${r.applyCommandsPerWrite} per read-model write.`),
    '',
  ];
  process.stdout.write(lines.join('\n'));
  await mkdir(args.out, { recursive: true });
  const stamp = at.slice(0, 16).replace(/[-:]/g, '').replace('T', 'T');
  await writeFile(join(args.out, `${stamp}-ferretdb-bench.json`), JSON.stringify({ at, docs: DOCS, n: N, concurrency: CONC, loadStart, loadEnd, runs }, null, 2));
  await writeFile(join(args.out, `${stamp}-ferretdb-bench.md`), lines.join('\n'));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
