// Statistics of a load-test run: percentiles, summaries, overhead, histograms
// and time series. Pure functions over numbers (milliseconds), so the unit
// tests can pin every figure the reports print.

/** p50/p90/p99 and friends of one set of values (ms). `count` 0 → every figure is null. */
export interface Summary {
  count: number;
  mean: number | null;
  min: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

/**
 * Nearest-rank percentile of an ascending array: the smallest value such that
 * at least p % of the values are ≤ it (rank ⌈p/100 · n⌉). No interpolation, so
 * every reported percentile is a latency that was really measured.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number | null {
  const n = sorted.length;
  if (n === 0) return null;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within [0, 100], got ${p}`);
  const rank = Math.max(1, Math.ceil((p / 100) * n));
  return sorted[Math.min(n, rank) - 1]!;
}

export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const a = Float64Array.from(values as ArrayLike<number>);
  a.sort();
  return a;
}

export function summarize(values: ArrayLike<number>): Summary {
  const s = sortedCopy(values);
  const n = s.length;
  if (n === 0) return { count: 0, mean: null, min: null, p50: null, p90: null, p99: null, max: null };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i]!;
  return { count: n, mean: sum / n, min: s[0]!, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[n - 1]! };
}

/**
 * OVERHEAD of one message: what the client waited beyond the processing time
 * the worker reports (`BotResponse.processing_ms`): log append, queueing,
 * delivery, framing, the network. Latency and processing are both ms.
 */
export function overheadMs(latencyMs: number, processingMs: number): number {
  return latencyMs - processingMs;
}

/** One bin of a histogram: [lo, hi) ms and how many values fell in it. */
export interface Bin {
  lo: number;
  hi: number;
  count: number;
}

/**
 * Log-spaced bins from `lo` to past the largest value (`perDecade` bins per
 * factor of 10): latencies span 1 ms to seconds, so equal-width bins would
 * put everything in the first one. Values below `lo` go in the first bin.
 */
export function logHistogram(values: ArrayLike<number>, opts: { lo?: number; perDecade?: number } = {}): Bin[] {
  const lo = opts.lo ?? 0.1;
  const perDecade = opts.perDecade ?? 20;
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]!);
  if (values.length === 0) return [];
  const edge = (i: number) => lo * 10 ** (i / perDecade);
  const indexOf = (v: number) => (v < edge(1) ? 0 : Math.floor(Math.log10(v / lo) * perDecade + 1e-9));
  const nBins = indexOf(max) + 1;
  const bins: Bin[] = Array.from({ length: nBins }, (_, i) => ({ lo: i === 0 ? 0 : edge(i), hi: edge(i + 1), count: 0 }));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    bins[Math.min(nBins - 1, indexOf(v))]!.count++;
  }
  return bins;
}

/** Latency over time: per bucket of `bucketMs`, how many messages completed and their p50/p99/max. */
export interface SeriesPoint {
  /** Bucket start, seconds since the run started. */
  t: number;
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export function timeSeries(times: ArrayLike<number>, values: ArrayLike<number>, bucketMs: number, originMs = 0): SeriesPoint[] {
  if (times.length !== values.length) throw new Error('timeSeries: times and values differ in length');
  const buckets = new Map<number, number[]>();
  for (let i = 0; i < times.length; i++) {
    const b = Math.floor((times[i]! - originMs) / bucketMs);
    let arr = buckets.get(b);
    if (!arr) buckets.set(b, (arr = []));
    arr.push(values[i]!);
  }
  return [...buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([b, vs]) => {
      const s = sortedCopy(vs);
      return { t: round((b * bucketMs) / 1000, 3), count: s.length, p50: percentile(s, 50)!, p99: percentile(s, 99)!, max: s[s.length - 1]! };
    });
}

/** Every k-th index so that at most `max` remain (keeps first and order); for scatter plots and small files. */
export function strideIndices(n: number, max: number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const step = n / max;
  return Array.from({ length: max }, (_, i) => Math.floor(i * step));
}

/** Rounds for storage (JSON stays small and readable). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function roundSummary(s: Summary, digits = 2): Summary {
  const r = (x: number | null) => (x === null ? null : round(x, digits));
  return { count: s.count, mean: r(s.mean), min: r(s.min), p50: r(s.p50), p90: r(s.p90), p99: r(s.p99), max: r(s.max) };
}

/** Counts occurrences of each key: `{ RESOURCE_EXHAUSTED: 950, OK: 50 }`. */
export function countBy<T>(items: Iterable<T>, key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const it of items) {
    const k = key(it);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Least-squares slope of y over x (per unit x); null with fewer than two distinct x. */
export function slope(xs: ArrayLike<number>, ys: ArrayLike<number>): number | null {
  const n = xs.length;
  if (n < 2) return null;
  let sx = 0, sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i]!;
    sy += ys[i]!;
  }
  const mx = sx / n, my = sy / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? null : num / den;
}

/** Smallest / largest value (Math.min(...xs) overflows the stack on large arrays). Infinity / −Infinity when empty. */
export function minOf(...arrays: ArrayLike<number>[]): number {
  let m = Infinity;
  for (const xs of arrays) for (let i = 0; i < xs.length; i++) if (xs[i]! < m) m = xs[i]!;
  return m;
}

export function maxOf(...arrays: ArrayLike<number>[]): number {
  let m = -Infinity;
  for (const xs of arrays) for (let i = 0; i < xs.length; i++) if (xs[i]! > m) m = xs[i]!;
  return m;
}
