// How long does storing one upload durably take on this disk, alone?
//
// What a voice or video message waits for before its MessageReceived is
// appended (the gateway's "stored" stage): LocalMediaStore.put
// (src/media/local.ts). `--concurrency` puts at a time (1: alone), nothing
// else; `--gap-ms` pauses each putter between its puts (the disk idle in
// between, as at the reference's 24 msg/s: a sync after a pause is slower on
// this VM than one in a stream of them).
//
//   npx tsx loadtest/media-put-bench.ts [--puts 300] [--kb 150] [--concurrency 1] [--gap-ms 0] [--dir /tmp]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { LocalMediaStore } from '../src/media/local';

const { values } = parseArgs({ options: { puts: { type: 'string' }, kb: { type: 'string' }, concurrency: { type: 'string' }, 'gap-ms': { type: 'string' }, dir: { type: 'string' } } });
const PUTS = Number(values.puts ?? 300);
const KB = Number(values.kb ?? 150);
const CONCURRENCY = Number(values.concurrency ?? 1);
const GAP_MS = Number(values['gap-ms'] ?? 0);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(values.dir ?? tmpdir(), 'chatflow-media-put-'));
  try {
    const store = new LocalMediaStore({ dir, baseUrl: 'http://127.0.0.1:1', secret: 'bench' });
    const bytes = Buffer.alloc(KB * 1024, 3);
    const ms: number[] = [];
    // 20 conversations' folders, as uploads are kept per conversation.
    let next = 0;
    const putter = async () => {
      for (let i = next++; i < PUTS; i = next++) {
        if (GAP_MS > 0) await new Promise((r) => setTimeout(r, GAP_MS));
        const t0 = performance.now();
        await store.put(`uploads/c${i % 20}/m${i}`, bytes, 'video/mp4');
        ms.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, putter));
    ms.sort((a, b) => a - b);
    const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]!.toFixed(2);
    console.log(`put ${KB} KiB × ${PUTS}, ${CONCURRENCY} at a time${GAP_MS > 0 ? `, ${GAP_MS} ms apart` : ''}: p50 ${q(0.5)}  p90 ${q(0.9)}  p99 ${q(0.99)}  max ${q(1)} ms`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

void main();
