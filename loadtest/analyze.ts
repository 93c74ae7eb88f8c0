// From raw records to the figures the reports show: per message kind and
// overall (count, failures, throughput, latency, OVERHEAD, time to Accepted),
// connection attempts (admit / reject times, refusals by status), latency over
// time and histograms. Everything stored is aggregated or downsampled so a
// result file stays small.
import { KINDS } from './payloads';
import type { AttemptRecords, MessageRecords } from './engine/records';
import { countBy, logHistogram, overheadMs, round, roundSummary, summarize, timeSeries, type Bin, type SeriesPoint, type Summary } from './stats';

export interface MessageFigures {
  /** Messages sent. */
  count: number;
  answered: number;
  /** Sent messages that got no BotResponse (ChatError, stream ended, no reply in time). */
  failures: number;
  /** Answered messages per second over the run (first send → last reply). */
  throughputPerS: number;
  /** Send → BotResponse, ms. */
  latency: Summary;
  /** Latency − the worker's processing_ms, ms. */
  overhead: Summary;
  /** Send → Accepted (durably in the log), ms. */
  toAccepted: Summary;
  /** processing_ms the worker reported. */
  processing: Summary;
}

export interface MessageReport {
  overall: MessageFigures;
  byKind: Record<string, MessageFigures>;
  failuresByCode: Record<string, number>;
  /** First send → last reply, s. */
  spanS: number;
}

export function messageReport(r: MessageRecords): MessageReport {
  const n = r.sent.length;
  let first = Infinity, last = -Infinity;
  for (let i = 0; i < n; i++) {
    first = Math.min(first, r.sent[i]!);
    if (r.response[i]! > 0) last = Math.max(last, r.response[i]!);
  }
  const spanS = n > 0 && last > first ? (last - first) / 1000 : 0;
  const figures = (pick: (i: number) => boolean): MessageFigures => {
    const lat: number[] = [], over: number[] = [], acc: number[] = [], proc: number[] = [];
    let count = 0, answered = 0;
    for (let i = 0; i < n; i++) {
      if (!pick(i)) continue;
      count++;
      if (r.accepted[i]! > 0) acc.push(r.accepted[i]! - r.sent[i]!);
      if (r.error[i] === '' && r.response[i]! > 0) {
        answered++;
        const l = r.response[i]! - r.sent[i]!;
        lat.push(l);
        over.push(overheadMs(l, r.processingMs[i]!));
        proc.push(r.processingMs[i]!);
      }
    }
    return {
      count,
      answered,
      failures: count - answered,
      throughputPerS: spanS > 0 ? round(answered / spanS, 2) : 0,
      latency: roundSummary(summarize(lat)),
      overhead: roundSummary(summarize(over)),
      toAccepted: roundSummary(summarize(acc)),
      processing: roundSummary(summarize(proc)),
    };
  };
  const byKind: Record<string, MessageFigures> = {};
  KINDS.forEach((k, ki) => {
    const f = figures((i) => r.kind[i] === ki);
    if (f.count > 0) byKind[k] = f;
  });
  const failed: number[] = [];
  for (let i = 0; i < n; i++) if (!(r.error[i] === '' && r.response[i]! > 0)) failed.push(i);
  return {
    overall: figures(() => true),
    byKind,
    failuresByCode: countBy(failed, (i) => r.error[i] || 'NO_REPLY'),
    spanS: round(spanS, 2),
  };
}

export interface ConnectionReport {
  attempts: number;
  /** Attempts that got a Welcome. */
  admitted: number;
  /** Distinct users that were admitted at least once / never. */
  usersAdmitted: number;
  usersNeverAdmitted: number;
  /** Outcome of every attempt: OK or the gRPC status. */
  byStatus: Record<string, number>;
  /** Stream start → Welcome, ms. */
  timeToAdmit: Summary;
  /** Stream start → refusal status, ms. */
  timeToReject: Summary;
  /** Users that were refused before they got in: how long from their first attempt until admitted, ms. */
  waitForSlot: Summary;
}

export function connectionReport(a: AttemptRecords, users?: number): ConnectionReport {
  const admit: number[] = [], reject: number[] = [];
  const firstTry = new Map<number, number>(), admittedAt = new Map<number, number>(), refusedFirst = new Set<number>();
  for (let i = 0; i < a.start.length; i++) {
    const u = a.user[i]!;
    if (!firstTry.has(u)) firstTry.set(u, a.start[i]!);
    if (a.outcome[i] === 'OK') {
      admit.push(a.end[i]! - a.start[i]!);
      if (!admittedAt.has(u)) admittedAt.set(u, a.end[i]!);
    } else {
      reject.push(a.end[i]! - a.start[i]!);
      if (!admittedAt.has(u)) refusedFirst.add(u);
    }
  }
  const waited = [...refusedFirst].filter((u) => admittedAt.has(u)).map((u) => admittedAt.get(u)! - firstTry.get(u)!);
  const totalUsers = users ?? firstTry.size;
  return {
    attempts: a.start.length,
    admitted: admit.length,
    usersAdmitted: admittedAt.size,
    usersNeverAdmitted: totalUsers - admittedAt.size,
    byStatus: countBy(a.outcome, (o) => o),
    timeToAdmit: roundSummary(summarize(admit)),
    timeToReject: roundSummary(summarize(reject)),
    waitForSlot: roundSummary(summarize(waited)),
  };
}

export interface Charts {
  /** Per second bucket (or coarser for long runs): latency p50/p99/max of replies completed in it. */
  latency: SeriesPoint[];
  overhead: SeriesPoint[];
  /** Per kind, the p50 series only. */
  latencyByKind: Record<string, { t: number; p50: number }[]>;
  /** Replies per second over time. */
  throughput: { t: number; perS: number }[];
  histLatency: Record<string, Bin[]>;
  histOverhead: Bin[];
}

/** Series relative to `originMs` (the run's start), bucketed so there are ≤ ~300 points. */
export function chartData(r: MessageRecords, originMs: number, spanS: number): Charts {
  const bucketMs = Math.max(1000, Math.ceil((spanS * 1000) / 300 / 1000) * 1000);
  const ok: number[] = [];
  for (let i = 0; i < r.sent.length; i++) if (r.error[i] === '' && r.response[i]! > 0) ok.push(i);
  const at = ok.map((i) => r.response[i]!);
  const lat = ok.map((i) => r.response[i]! - r.sent[i]!);
  const over = ok.map((i) => overheadMs(r.response[i]! - r.sent[i]!, r.processingMs[i]!));
  const rs = (s: SeriesPoint[]) => s.map((p) => ({ ...p, p50: round(p.p50), p99: round(p.p99), max: round(p.max) }));
  const latency = rs(timeSeries(at, lat, bucketMs, originMs));
  const latencyByKind: Charts['latencyByKind'] = {};
  const histLatency: Record<string, Bin[]> = {};
  KINDS.forEach((k, ki) => {
    const idx = ok.filter((i) => r.kind[i] === ki);
    if (idx.length === 0) return;
    latencyByKind[k] = timeSeries(idx.map((i) => r.response[i]!), idx.map((i) => r.response[i]! - r.sent[i]!), bucketMs, originMs).map((p) => ({ t: p.t, p50: round(p.p50) }));
    histLatency[k] = roundBins(logHistogram(idx.map((i) => r.response[i]! - r.sent[i]!)));
  });
  histLatency.all = roundBins(logHistogram(lat));
  return {
    latency,
    overhead: rs(timeSeries(at, over, bucketMs, originMs)),
    latencyByKind,
    throughput: latency.map((p) => ({ t: p.t, perS: round(p.count / (bucketMs / 1000), 1) })),
    histLatency,
    histOverhead: roundBins(logHistogram(over.map((x) => Math.max(0, x)))),
  };
}

function roundBins(bins: Bin[]): Bin[] {
  return bins.map((b) => ({ lo: round(b.lo, 3), hi: round(b.hi, 3), count: b.count }));
}
