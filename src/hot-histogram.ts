import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';

type LabelValues<L extends string> = Partial<Record<L, string | number>>;

interface Series {
  labels: Record<string, string | number>;
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * A Prometheus histogram for the hot path, exposed by prom-client's registry
 * exactly as its own Histogram is (same names, buckets, `le` labels, sum and
 * count; summed across threads by AggregatorRegistry).
 *
 * prom-client's `observe` copies its arguments into a new object, validates
 * the labels, hashes them through a sorted key list and searches the buckets
 * from the first, on every call: at saturation the per-message stage and
 * log-append histograms (~15 observations a message) took ~5 % of the event
 * loop (issue 15). Here a label set costs one string join and one Map lookup
 * (none at all through `child`), and the bucket is found by binary search.
 * Labels are checked against `labelNames` when a series is first seen.
 */
export class HotHistogram<L extends string = string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly labelNames: readonly L[];
  private readonly bounds: Float64Array;
  private readonly series = new Map<string, Series>();

  constructor(opts: { name: string; help: string; labelNames?: readonly L[]; buckets: readonly number[]; registers?: Registry[] }) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames ?? [];
    const sorted = [...opts.buckets].sort((a, b) => a - b);
    if (!sorted.length || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) {
      throw new TypeError(`${opts.name}: buckets must be distinct finite numbers`);
    }
    this.bounds = Float64Array.from(sorted);
    // As prom-client: a histogram without labels shows its zeros before the first observation.
    if (!this.labelNames.length) this.seriesOf({});
    for (const r of opts.registers ?? []) r.registerMetric(this as never);
  }

  observe(labels: LabelValues<L>, value: number): void;
  observe(value: number): void;
  observe(a: LabelValues<L> | number, b?: number): void {
    if (typeof a === 'number') this.child({}).observe(a);
    else this.child(a).observe(b as number);
  }

  /** Times until the returned function is called; it observes and returns the seconds. */
  startTimer(labels: LabelValues<L> = {}): () => number {
    const s = this.child(labels);
    const t0 = performance.now();
    return () => {
      const seconds = (performance.now() - t0) / 1000;
      s.observe(seconds);
      return seconds;
    };
  }

  /** The series of these label values, to observe into without any lookup. */
  child(labels: LabelValues<L>): { observe(value: number): void } {
    const s = this.seriesOf(labels);
    const { bounds } = this;
    return {
      observe(value: number): void {
        if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
        // The first bound ≥ value (prom-client's `le`), or the +Inf slot.
        let lo = 0;
        let hi = bounds.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (bounds[mid] < value) lo = mid + 1;
          else hi = mid;
        }
        s.counts[lo]++;
        s.sum += value;
        s.count++;
      },
    };
  }

  reset(): void {
    this.series.clear();
  }

  async get(): Promise<MetricObjectWithValues<MetricValue<string>>> {
    const values: MetricValue<string>[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i];
        values.push({ labels: { le: this.bounds[i], ...s.labels }, value: acc, metricName: bucket } as MetricValue<string>);
      }
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket } as MetricValue<string>);
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` } as MetricValue<string>);
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` } as MetricValue<string>);
    }
    // Plain data, as prom-client's: a thread's figures cross to the process by structured clone.
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' } as unknown as MetricObjectWithValues<MetricValue<string>>;
  }

  private seriesOf(labels: LabelValues<L>): Series {
    // Label values are ChatFlow's own names (stages, kinds, topics, command names), never a client's text: no NUL in them.
    let key = '';
    for (const n of this.labelNames) key += `${labels[n] ?? ''}\u0000`;
    let s = this.series.get(key);
    if (!s) {
      for (const k of Object.keys(labels)) {
        if (!(this.labelNames as readonly string[]).includes(k)) throw new Error(`Added label "${k}" is not included in initial labelset: ${JSON.stringify(this.labelNames)}`);
      }
      const own: Record<string, string | number> = {};
      for (const n of this.labelNames) if (labels[n] !== undefined) own[n] = labels[n]!;
      s = { labels: own, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    return s;
  }
}
