import { connectionReport, messageReport } from './analyze';
import { addAttempt, addMessage, emptyAttempts, emptyMessages, mergeMessages } from './engine/records';
import { countBy, logHistogram, maxOf, minOf, overheadMs, percentile, slope, sortedCopy, strideIndices, summarize, timeSeries } from './stats';

describe('percentile (nearest rank)', () => {
  const xs = sortedCopy([15, 20, 35, 40, 50]);

  it('returns a value that was measured: rank ⌈p/100 · n⌉', () => {
    expect(percentile(xs, 5)).toBe(15);
    expect(percentile(xs, 30)).toBe(20);
    expect(percentile(xs, 40)).toBe(20);
    expect(percentile(xs, 50)).toBe(35);
    expect(percentile(xs, 100)).toBe(50);
  });

  it('p0 is the minimum, p99 of 100 values is the 99th', () => {
    const hundred = sortedCopy(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(percentile(hundred, 0)).toBe(1);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 99.9)).toBe(100);
  });

  it('is null on no data and refuses p outside [0, 100]', () => {
    expect(percentile([], 50)).toBeNull();
    expect(() => percentile(xs, 101)).toThrow(RangeError);
  });
});

describe('summarize', () => {
  it('sorts a copy and reports count, mean, min, p50/p90/p99, max', () => {
    const input = [5, 1, 4, 2, 3];
    expect(summarize(input)).toEqual({ count: 5, mean: 3, min: 1, p50: 3, p90: 5, p99: 5, max: 5 });
    expect(input).toEqual([5, 1, 4, 2, 3]);
  });

  it('is all null on an empty set', () => {
    expect(summarize([])).toEqual({ count: 0, mean: null, min: null, p50: null, p90: null, p99: null, max: null });
  });
});

describe('overhead', () => {
  it('is latency minus the processing time the worker reports', () => {
    expect(overheadMs(1537, 1500)).toBe(37);
    expect(overheadMs(3.5, 0)).toBe(3.5);
  });

  it('messageReport computes latency, overhead and time to Accepted per kind and overall', () => {
    const r = emptyMessages();
    // text: sent at 1000, Accepted at 1002, reply at 1510 after 500 ms of processing → latency 510, overhead 10.
    let i = addMessage(r, 0, 1000);
    r.accepted[i] = 1002;
    r.response[i] = 1510;
    r.processingMs[i] = 500;
    // video: latency 2520, processing 2500 → overhead 20.
    i = addMessage(r, 2, 1100);
    r.accepted[i] = 1105;
    r.response[i] = 3620;
    r.processingMs[i] = 2500;
    // audio: a ChatError (a failure: no latency, no overhead).
    i = addMessage(r, 1, 1200);
    r.response[i] = 1300;
    r.error[i] = 'INVALID_ARGUMENT';
    // text: never answered.
    addMessage(r, 0, 1300);

    const m = messageReport(r);
    expect(m.overall.count).toBe(4);
    expect(m.overall.answered).toBe(2);
    expect(m.overall.failures).toBe(2);
    expect(m.failuresByCode).toEqual({ INVALID_ARGUMENT: 1, NO_REPLY: 1 });
    expect(m.byKind.text!.latency.p50).toBe(510);
    expect(m.byKind.text!.overhead.p50).toBe(10);
    expect(m.byKind.text!.failures).toBe(1);
    expect(m.byKind.video!.overhead.max).toBe(20);
    expect(m.byKind.audio!.answered).toBe(0);
    expect(m.overall.overhead).toMatchObject({ count: 2, p50: 10, p99: 20, mean: 15 });
    expect(m.overall.toAccepted).toMatchObject({ count: 2, p50: 2, max: 5 });
    // Throughput: 2 replies over first send (1000) → last reply (3620) = 2.62 s.
    expect(m.spanS).toBe(2.62);
    expect(m.overall.throughputPerS).toBeCloseTo(2 / 2.62, 2);
  });
});

describe('connectionReport', () => {
  it('separates time to admit from time to reject and measures how long refused users waited for a slot', () => {
    const a = emptyAttempts();
    addAttempt(a, 0, 0, 3, 'OK');
    addAttempt(a, 1, 10, 11, 'RESOURCE_EXHAUSTED');
    addAttempt(a, 1, 2011, 2012.5, 'RESOURCE_EXHAUSTED');
    addAttempt(a, 1, 4012, 4016, 'OK');
    addAttempt(a, 2, 20, 22, 'RESOURCE_EXHAUSTED');
    const c = connectionReport(a, 3);
    expect(c.attempts).toBe(5);
    expect(c.admitted).toBe(2);
    expect(c.usersAdmitted).toBe(2);
    expect(c.usersNeverAdmitted).toBe(1);
    expect(c.byStatus).toEqual({ OK: 2, RESOURCE_EXHAUSTED: 3 });
    expect(c.timeToAdmit).toMatchObject({ p50: 3, max: 4 });
    expect(c.timeToReject).toMatchObject({ min: 1, p50: 1.5, max: 2 });
    expect(c.waitForSlot).toMatchObject({ count: 1, p50: 4006 });
  });
});

describe('histograms and series', () => {
  it('logHistogram puts every value in a log-spaced bin and loses none', () => {
    const values = [0.05, 0.5, 1, 1.2, 9.99, 10, 250, 3000];
    const bins = logHistogram(values, { lo: 1, perDecade: 1 });
    expect(bins.reduce((a, b) => a + b.count, 0)).toBe(values.length);
    expect(bins[0]).toEqual({ lo: 0, hi: 10, count: 5 });
    expect(bins.map((b) => b.hi)).toEqual([10, 100, 1000, 10000]);
    expect(bins.map((b) => b.count)).toEqual([5, 1, 1, 1]);
    expect(logHistogram([])).toEqual([]);
  });

  it('timeSeries buckets by completion time and reports per-bucket percentiles', () => {
    const s = timeSeries([1000, 1500, 1999, 2100, 4500], [10, 20, 30, 5, 7], 1000, 1000);
    expect(s).toEqual([
      { t: 0, count: 3, p50: 20, p99: 30, max: 30 },
      { t: 1, count: 1, p50: 5, p99: 5, max: 5 },
      { t: 3, count: 1, p50: 7, p99: 7, max: 7 },
    ]);
  });

  it('strideIndices keeps at most max indices, in order', () => {
    expect(strideIndices(5, 10)).toEqual([0, 1, 2, 3, 4]);
    expect(strideIndices(10, 4)).toEqual([0, 2, 5, 7]);
  });

  it('slope, countBy, minOf/maxOf', () => {
    expect(slope([0, 1, 2, 3], [1, 3, 5, 7])).toBeCloseTo(2);
    expect(slope([1], [1])).toBeNull();
    expect(countBy(['a', 'b', 'a'], (x) => x)).toEqual({ a: 2, b: 1 });
    const big = Array.from({ length: 300_000 }, (_, i) => i);
    expect(minOf(big, [-1])).toBe(-1);
    expect(maxOf(big)).toBe(299_999);
  });

  it('mergeMessages concatenates the columns of several client processes (large arrays too)', () => {
    const a = emptyMessages(), b = emptyMessages();
    for (let i = 0; i < 200_000; i++) addMessage(a, 0, i);
    addMessage(b, 2, 7);
    const m = mergeMessages([a, b]);
    expect(m.sent.length).toBe(200_001);
    expect(m.kind[200_000]).toBe(2);
    expect(m.error.every((e) => e === '')).toBe(true);
  });
});
