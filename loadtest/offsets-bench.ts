// CPU of the offset tracker (src/domain/offsets.ts) per event handed and finished,
// with N events in flight: `track` and `complete` copy the pending array (issue 15).
//   npx tsx loadtest/offsets-bench.ts
import { complete, initialOffsets, track, type OffsetState } from '../src/domain/offsets';

for (const inflight of [50, 1000]) {
  let s: OffsetState = initialOffsets(0);
  let next = 0;
  for (; next < inflight; next++) s = track(s, next).state;
  const n = 200_000;
  let done = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    s = complete(s, done++).state;
    s = track(s, next++).state;
  }
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`${inflight} in flight: track + complete ${(ns / 1000).toFixed(2)} µs per event`);
}
