// What does each S3 operation of a media message cost, in time and in CPU?
//
// A voice or video message on the stack makes four: the gateway's PUT of the
// upload, a worker's GET of it (to hear it), the worker's PUT of the reply's
// voice or image, and the gateway's presigned URL of that reply. This times
// each, alone, with a pause between rounds (as at the reference's 24 msg/s),
// and the process CPU each round costs, for one or more S3MediaStore modules
// alternated round by round in one process (`--store NAME=path/to/s3.ts`,
// e.g. this checkout's against another's in a git worktree), so both meet the
// same machine and the same moment.
//
// Against S3_ENDPOINT and its credentials (the stack's MinIO:
// `eval "$(npm run -s stack:env)"`), or a private MinIO of its own when
// S3_ENDPOINT is unset (`npm run stack:install` first).
//
//   npx tsx loadtest/s3-bench.ts [--rounds 300] [--kb 100] [--gap-ms 50] [--store new=src/media/s3.ts --store old=/work/ab/src/media/s3.ts]
import { createHash, randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadConfig } from '../src/config/config';
import type { MediaStore } from '../src/media/port';
import type { S3MediaStoreOptions } from '../src/media/s3';
import { PrivateMinio } from '../test/private-engines';

const { values } = parseArgs({ options: { rounds: { type: 'string' }, kb: { type: 'string' }, 'gap-ms': { type: 'string' }, store: { type: 'string', multiple: true } } });
const ROUNDS = Number(values.rounds ?? 300);
const KB = Number(values.kb ?? 100);
const GAP_MS = Number(values['gap-ms'] ?? 50);
const STORES = (values.store ?? ['this=src/media/s3.ts']).map((s) => {
  const at = s.indexOf('=');
  if (at < 1) throw new Error(`--store NAME=path, not ${s}`);
  return { name: s.slice(0, at), path: resolve(s.slice(at + 1)) };
});
const OPS = ['put (upload)', 'get', 'put (reply)', 'url'] as const;

interface Bench {
  name: string;
  store: MediaStore;
  ms: Record<(typeof OPS)[number], number[]>;
  cpuUs: number[];
}

async function main(): Promise<void> {
  const minio = process.env.S3_ENDPOINT ? undefined : await PrivateMinio.create();
  await minio?.start();
  try {
    // The store as the server would open it: S3_* read by the server's own configuration.
    const s3 = loadConfig({ ...process.env, ...minio?.env('chatflow-s3-bench') }).s3!;
    const opts: S3MediaStoreOptions = { ...s3, logger: pino({ level: 'silent' }) };
    const benches: Bench[] = [];
    for (const s of STORES) {
      const mod = (await import(s.path)) as typeof import('../src/media/s3');
      benches.push({ name: s.name, store: await mod.S3MediaStore.open(opts), ms: { 'put (upload)': [], get: [], 'put (reply)': [], url: [] }, cpuUs: [] });
    }
    const upload = randomBytes(KB * 1024);
    const sha = createHash('sha256').update(upload).digest('hex');
    const reply = randomBytes(KB * 1024);
    // A few rounds each first, not counted: connections opened, code warmed, credentials resolved.
    for (let round = -10; round < ROUNDS; round++) {
      // Alternate which store goes first, so neither always follows the other's I/O.
      for (const b of round % 2 === 0 ? benches : [...benches].reverse()) {
        await new Promise((r) => setTimeout(r, GAP_MS));
        const key = `bench/${b.name}/${round}`;
        const took: number[] = [];
        const cpu = process.cpuUsage();
        for (const work of [
          () => b.store.put(`${key}.wav`, upload, 'audio/wav', sha),
          () => b.store.get(`${key}.wav`),
          () => b.store.put(`${key}.png`, reply, 'image/png'),
          () => b.store.url(`${key}.png`, 3_600_000),
        ]) {
          const t0 = performance.now();
          await work();
          took.push(performance.now() - t0);
        }
        const used = process.cpuUsage(cpu);
        if (round < 0) continue;
        OPS.forEach((op, i) => b.ms[op].push(took[i]!));
        b.cpuUs.push(used.user + used.system);
      }
    }
    for (const b of benches) await b.store.close();
    const q = (xs: number[], p: number) => [...xs].sort((a, c) => a - c)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
    console.log(`${ROUNDS} rounds, ${KB} KiB objects, ${GAP_MS} ms apart, stores alternated; ms p50 / p90 / p99 per operation, CPU per round (4 operations) p50 / mean`);
    console.log(`| store | ${OPS.join(' | ')} | CPU per round (µs) |`);
    console.log(`| --- | ${OPS.map(() => '---').join(' | ')} | --- |`);
    for (const b of benches) {
      const cells = OPS.map((op) => [0.5, 0.9, 0.99].map((p) => q(b.ms[op], p).toFixed(2)).join(' / '));
      const mean = b.cpuUs.reduce((a, c) => a + c, 0) / b.cpuUs.length;
      console.log(`| ${b.name} | ${cells.join(' | ')} | ${q(b.cpuUs, 0.5).toFixed(0)} / ${mean.toFixed(0)} |`);
    }
  } finally {
    await minio?.remove();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
