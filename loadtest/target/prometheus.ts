// Reading the server's /metrics (Prometheus text format) during a run.
import type { TargetProcess } from './target';

/** Metric names the runner reads (src/metrics.ts; Node's default metrics carry the `chatflow_` prefix). */
export const METRIC = {
  processingPeak: 'chatflow_messages_processing_peak',
  processing: 'chatflow_messages_processing',
  waiting: 'chatflow_messages_waiting',
  clientsConnected: 'chatflow_clients_connected',
  rssBytes: 'chatflow_process_resident_memory_bytes',
  cpuSeconds: 'chatflow_process_cpu_seconds_total',
  eventLoopLagP99: 'chatflow_nodejs_eventloop_lag_p99_seconds',
} as const;

/** Server-side stage histograms (src/metrics.ts): where a message's time goes outside the CPU. */
export const STAGE_HISTOGRAMS: readonly { metric: string; labels: readonly string[]; stage: string }[] = [
  { metric: 'chatflow_log_append_seconds', labels: ['topic'], stage: 'log append' },
  // Embedded log only: an append's wait for the batch before it, its batch's write + sync, the wait to be told.
  { metric: 'chatflow_log_append_stage_seconds', labels: ['stage'], stage: 'log append stage' },
  // Gateway, per client message, from its arrival: checked, stored (media), appended, accepted; append alone.
  { metric: 'chatflow_message_stage_seconds', labels: ['stage', 'kind'], stage: 'message' },
  // Worker: taken, started, recorded, appended, told; gateway: delivered (see src/metrics.ts).
  { metric: 'chatflow_reply_stage_seconds', labels: ['stage'], stage: 'reply' },
  { metric: 'chatflow_media_put_seconds', labels: ['kind'], stage: 'media put' },
  { metric: 'chatflow_mongo_command_seconds', labels: ['command'], stage: 'mongodb' },
  { metric: 'chatflow_mongo_update_wait_seconds', labels: ['method'], stage: 'mongodb update gate wait' },
  // Gateway: each renewal of its connection slots (heartbeat), sent → answered; a claim past the trust window is refused registry_late.
  { metric: 'chatflow_lease_renewal_seconds', labels: ['outcome'], stage: 'lease renewal' },
  // Gateway: a Chat/Connect call from its arrival to its answer, by outcome (admitted, or the status it was refused with).
  { metric: 'chatflow_admission_seconds', labels: ['outcome'], stage: 'admission' },
  // From an event's time to its projection: how stale a read of the read models can be (the projector's process).
  { metric: 'chatflow_projection_lag_seconds', labels: [], stage: 'projection lag' },
  // Node's own (prom-client, on the stage buckets since src/metrics.ts sets them): each garbage collection's pause, by kind.
  { metric: 'chatflow_nodejs_gc_duration_seconds', labels: ['kind'], stage: 'GC pause' },
];

/** The stage name of the projection lag (issue 15's target applies to it). */
export const PROJECTION_LAG_STAGE = 'projection lag';

export interface StageTiming {
  process: string;
  /** e.g. "log append (conversations)" */
  stage: string;
  count: number;
  /** Upper bound of the histogram bucket holding the quantile (ms); null when nothing was observed. */
  p50Ms: number | null;
  p99Ms: number | null;
}

/**
 * Quantile from cumulative Prometheus buckets: the upper bound of the first
 * bucket reaching q of the count (what histogram_quantile would interpolate
 * within; the bound is the honest figure).
 */
export function bucketQuantile(buckets: { le: number; count: number }[], q: number): number | null {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.length ? sorted[sorted.length - 1]!.count : 0;
  if (total === 0) return null;
  return sorted.find((b) => b.count >= q * total)!.le;
}

/** Every stage histogram of one process's scrape, one entry per label value. */
export function stageTimings(process: string, samples: Sample[]): StageTiming[] {
  const out: StageTiming[] = [];
  for (const h of STAGE_HISTOGRAMS) {
    const series = new Map<string, { le: number; count: number }[]>();
    for (const s of samples.filter((x) => x.name === `${h.metric}_bucket`)) {
      const key = h.labels.map((l) => s.labels[l] ?? '').join('\u0000');
      if (!series.has(key)) series.set(key, []);
      series.get(key)!.push({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), count: s.value });
    }
    for (const [key, buckets] of [...series.entries()].sort()) {
      const count = Math.max(0, ...buckets.map((b) => b.count));
      if (count === 0) continue;
      const ms = (v: number | null) => (v === null ? null : Number.isFinite(v) ? Math.round(v * 1e6) / 1e3 : Infinity);
      const [a, b] = key.split('\u0000');
      const stage = h.labels.length === 0 ? h.stage : h.labels.length === 1 ? `${h.stage} (${a})` : `${h.stage} → ${a} (${b})`;
      out.push({ process, stage, count, p50Ms: ms(bucketQuantile(buckets, 0.5)), p99Ms: ms(bucketQuantile(buckets, 0.99)) });
    }
  }
  return out;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition format (comments skipped; labels unescaped enough for our own metrics). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, '$1');
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of every series of `name` (NaN when absent). */
export function total(samples: Sample[], name: string): number {
  const xs = samples.filter((s) => s.name === name);
  return xs.length === 0 ? NaN : xs.reduce((a, s) => a + s.value, 0);
}

export async function scrape(proc: TargetProcess, timeoutMs = 3000): Promise<Sample[]> {
  const r = await fetch(`${proc.http}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!r.ok) throw new Error(`${proc.name} /metrics: HTTP ${r.status}`);
  return parsePrometheus(await r.text());
}

/** One reading of the figures the reports use, per process. */
export interface ServerReading {
  /** ms since the run started */
  t: number;
  process: string;
  rssBytes: number;
  cpuSeconds: number;
  processing: number;
  processingPeak: number;
  waiting: number;
  clients: number;
  eventLoopLagP99Ms: number;
}

export async function read(proc: TargetProcess, t: number): Promise<ServerReading | undefined> {
  try {
    const s = await scrape(proc);
    return {
      t,
      process: proc.name,
      rssBytes: total(s, METRIC.rssBytes),
      cpuSeconds: total(s, METRIC.cpuSeconds),
      processing: total(s, METRIC.processing),
      processingPeak: total(s, METRIC.processingPeak),
      waiting: total(s, METRIC.waiting),
      clients: total(s, METRIC.clientsConnected),
      eventLoopLagP99Ms: total(s, METRIC.eventLoopLagP99) * 1000,
    };
  } catch {
    return undefined;
  }
}

/** Reads every process every `everyMs` until stopped. */
export class ServerWatch {
  readonly readings: ServerReading[] = [];
  /** Stage histograms from the last scrape of each process (cumulative since it started). */
  stages: StageTiming[] = [];
  private timer?: NodeJS.Timeout;
  private readonly t0 = Date.now();

  constructor(private readonly procs: TargetProcess[], private readonly everyMs = 2000) {}

  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.everyMs);
  }

  private async tick(): Promise<void> {
    const t = Date.now() - this.t0;
    for (const r of await Promise.all(this.procs.map((p) => read(p, t)))) if (r) this.readings.push(r);
  }

  async stop(): Promise<ServerReading[]> {
    clearInterval(this.timer);
    await this.tick();
    const finals = await Promise.all(this.procs.map((p) => scrape(p).then((s) => stageTimings(p.name, s), () => [])));
    this.stages = finals.flat();
    return this.readings;
  }

  /** The latest reading of each process. */
  latest(): ServerReading[] {
    const by = new Map<string, ServerReading>();
    for (const r of this.readings) by.set(r.process, r);
    return [...by.values()];
  }
}
