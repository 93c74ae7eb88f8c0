/**
 * The fault matrix's read-back of the log, to its real end. A consumer's
 * "caught up" compares what it read with the end offsets it fetched once, at
 * the start of the read; after a broker restart that figure has come back
 * short of positions clients were told (`Accepted.seq`), and every message
 * past it was counted lost. Here the end is fetched again after the read,
 * and the read goes on until it has reached an end that two fetches in a row
 * agree on — or the time is up, and then the read-back says where it stopped
 * short instead of passing for the whole log.
 */

/** Per partition: one past the last offset (the log's end, or what was read: `seq` of the last event). */
export type Ends = ReadonlyMap<number, number>;

export interface ReadbackEnd {
  /** The ends fetched first (what a one-fetch read would have stopped at). */
  first: Record<number, number>;
  /** The last ends fetched: the log's end the read reached (or not). */
  last: Record<number, number>;
  /** How many times the ends were fetched. */
  fetches: number;
  /** Partitions whose end moved after the first fetch, though nothing is sent any more: first → last. */
  moved: { partition: number; first: number; last: number }[];
  /** Partitions the read did not reach by the deadline: read up to `read`, the log ends at `end`. */
  short: { partition: number; read: number; end: number }[];
}

export async function readToStableEnd(o: {
  /** The log's end offsets now (high watermarks), per partition. */
  endOffsets: () => Promise<Ends>;
  /** What the reader has read so far, per partition (one past the highest offset). */
  readUpTo: () => Ends;
  timeoutMs: number;
  pollMs?: number;
}): Promise<ReadbackEnd> {
  const pollMs = o.pollMs ?? 250;
  const deadline = Date.now() + o.timeoutMs;
  const first = await o.endOffsets();
  let ends = first;
  let fetches = 1;
  const reached = (e: Ends) => [...e].every(([p, end]) => (o.readUpTo().get(p) ?? 0) >= end);
  for (;;) {
    while (!reached(ends) && Date.now() < deadline) await new Promise((r) => setTimeout(r, pollMs));
    if (!reached(ends)) break;
    // Read to these ends: do the broker's ends still say so?
    const again = await o.endOffsets();
    fetches++;
    if (same(again, ends)) break;
    ends = again;
    if (Date.now() >= deadline) break;
  }
  const read = o.readUpTo();
  return {
    first: Object.fromEntries(first),
    last: Object.fromEntries(ends),
    fetches,
    moved: [...ends].filter(([p, end]) => (first.get(p) ?? 0) !== end).map(([partition, end]) => ({ partition, first: first.get(partition) ?? 0, last: end })),
    short: [...ends].filter(([p, end]) => (read.get(p) ?? 0) < end).map(([partition, end]) => ({ partition, read: read.get(partition) ?? 0, end })),
  };
}

function same(a: Ends, b: Ends): boolean {
  if (a.size !== b.size) return false;
  for (const [p, end] of a) if (b.get(p) !== end) return false;
  return true;
}
