// Does storing media slow the event log's appends down on this disk?
//
// The embedded log appends with O_DSYNC writes, one batch at a time (what
// `Accepted` waits for); every upload and reply image is written to a temp
// file, fsynced, renamed, and its folder fsynced (src/media/local.ts). Both go
// to the same disk and the same journal. This times small O_DSYNC appends to
// one file (the log's shape: ~300 bytes each, one at a time) alone, and while
// media-shaped writes run beside them at a given rate, in one process, on
// libuv's pool as the server does. Each is timed twice: appending at the end
// of the file (it grows with every write, as the log does: each O_DSYNC write
// also commits the new size, a journal commit) and writing into a file
// already filled with zeros (the size does not change: the data alone).
//
//   npx tsx loadtest/fsync-contention.ts [--appends 400] [--media-per-s 25] [--media-kb 100] [--dir /tmp]
import { constants as fsc, promises as fsp } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { appends: { type: 'string' }, 'media-per-s': { type: 'string' }, 'media-kb': { type: 'string' }, dir: { type: 'string' }, 'append-gap-ms': { type: 'string' } } });
const APPENDS = Number(values.appends ?? 400);
const MEDIA_PER_S = Number(values['media-per-s'] ?? 25);
const MEDIA_KB = Number(values['media-kb'] ?? 100);
const GAP_MS = Number(values['append-gap-ms'] ?? 20);

function q(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
}
const fmt = (xs: number[]) => `n ${xs.length}  p50 ${q(xs, 0.5).toFixed(2)}  p90 ${q(xs, 0.9).toFixed(2)}  p99 ${q(xs, 0.99).toFixed(2)}  max ${q(xs, 1).toFixed(2)} ms`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function appends(dir: string, zeroed: boolean): Promise<number[]> {
  const file = join(dir, zeroed ? 'zeroed.log' : 'events.log');
  const buf = Buffer.alloc(300, 7);
  if (zeroed) await fsp.writeFile(file, Buffer.alloc(APPENDS * buf.length), { flush: true });
  const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_DSYNC);
  let pos = 0;
  const out: number[] = [];
  try {
    for (let i = 0; i < APPENDS; i++) {
      const t = performance.now();
      await fh.write(buf, 0, buf.length, pos);
      out.push(performance.now() - t);
      pos += buf.length;
      await sleep(GAP_MS * Math.random());
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** One media put as src/media/local.ts does it: data and metadata each temp + fsync + rename, then the folder fsynced. */
async function put(dir: string, n: number, bytes: Buffer): Promise<void> {
  const one = async (name: string, b: Buffer) => {
    const tmp = join(dir, `.${name}.tmp`);
    const h = await fsp.open(tmp, 'w');
    await h.writeFile(b);
    await h.sync();
    await h.close();
    await fsp.rename(tmp, join(dir, name));
  };
  await Promise.all([one(`m${n}`, bytes), one(`m${n}.meta.json`, Buffer.from('{"mimeType":"video/mp4"}'))]);
  const d = await fsp.open(dir, 'r');
  await d.sync();
  await d.close();
}

async function media(dir: string, stop: { done: boolean }): Promise<number> {
  const bytes = Buffer.alloc(MEDIA_KB * 1024, 3);
  const inflight = new Set<Promise<void>>();
  let n = 0;
  while (!stop.done) {
    const p: Promise<void> = put(dir, n++, bytes).finally(() => inflight.delete(p));
    inflight.add(p);
    await sleep(1000 / MEDIA_PER_S);
  }
  await Promise.all(inflight);
  return n;
}

async function main(): Promise<void> {
  const base = await mkdtemp(join(values.dir ?? tmpdir(), 'fsync-contention-'));
  try {
    await fsp.mkdir(join(base, 'a'));
    await fsp.mkdir(join(base, 'b'));
    await fsp.mkdir(join(base, 'b', 'media'));
    console.log(`UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}; appends of 300 B O_DSYNC, one at a time, 0–${GAP_MS} ms apart`);
    for (const zeroed of [false, true]) {
      const how = zeroed ? 'into zeros' : 'growing   ';
      console.log(`${how} alone:                          ${fmt(await appends(join(base, 'a'), zeroed))}`);
      const stop = { done: false };
      const m = media(join(base, 'b', 'media'), stop);
      const withMedia = await appends(join(base, 'b'), zeroed);
      stop.done = true;
      const puts = await m;
      console.log(`${how} with ${MEDIA_PER_S}/s media puts of ${MEDIA_KB} KiB: ${fmt(withMedia)} (${puts} puts)`);
    }
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

void main();
