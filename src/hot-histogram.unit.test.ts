import fc from 'fast-check';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { HotHistogram } from './hot-histogram';

const BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.1, 1, 2.5];

/** The same observations into prom-client's Histogram and a HotHistogram, each in a registry of its own. */
function pair(labelNames: ('stage' | 'kind')[]) {
  const theirs = new Registry();
  const ours = new Registry();
  const opts = { name: 'x_seconds', help: 'x', labelNames, buckets: BUCKETS };
  return {
    theirs,
    ours,
    prom: new Histogram({ ...opts, registers: [theirs] }),
    hot: new HotHistogram({ ...opts, registers: [ours] }),
  };
}

/** Exposition lines, order-free (prom-client orders series by first observation, as we do, but lines of a series may differ in label order). */
function lines(text: string): string[] {
  return text.trim().split('\n').map((l) => {
    const m = /^(\w+)\{(.*)\} (\S+)$/.exec(l);
    if (!m) return l;
    return `${m[1]}{${m[2].split(',').sort().join(',')}} ${m[3]}`;
  }).sort();
}

const observation = fc.record({
  stage: fc.constantFrom('queue', 'write', 'settle'),
  kind: fc.constantFrom('text', 'audio'),
  // Bucket bounds themselves, zero, negatives and values above every bound.
  value: fc.oneof(fc.constantFrom(0, ...BUCKETS, 3), fc.double({ min: -1, max: 5, noNaN: true })),
});

describe('HotHistogram', () => {
  it('exposes exactly what prom-client\'s Histogram exposes for the same observations, labels or none', async () => {
    await fc.assert(fc.asyncProperty(fc.array(observation, { maxLength: 60 }), fc.boolean(), async (obs, labelled) => {
      const p = pair(labelled ? ['stage', 'kind'] : []);
      for (const o of obs) {
        if (labelled) {
          p.prom.observe({ stage: o.stage, kind: o.kind }, o.value);
          p.hot.observe({ stage: o.stage, kind: o.kind }, o.value);
        } else {
          p.prom.observe(o.value);
          p.hot.observe(o.value);
        }
      }
      expect(lines(await p.ours.metrics())).toEqual(lines(await p.theirs.metrics()));
    }), { numRuns: 200 });
  });

  it('sums across registries (a worker thread\'s into the process\'s /metrics) as prom-client does', async () => {
    const a = pair(['stage']);
    const b = pair(['stage']);
    for (const [h, v] of [[a, 0.002], [a, 0.5], [b, 0.002], [b, 9]] as const) {
      h.prom.observe({ stage: 'queue' }, v);
      h.hot.observe({ stage: 'queue' }, v);
    }
    const theirs = AggregatorRegistry.aggregate([await a.theirs.getMetricsAsJSON(), await b.theirs.getMetricsAsJSON()]);
    const ours = AggregatorRegistry.aggregate([await a.ours.getMetricsAsJSON(), await b.ours.getMetricsAsJSON()]);
    expect(lines(await ours.metrics())).toEqual(lines(await theirs.metrics()));
    expect(await ours.metrics()).toContain('x_seconds_count{stage="queue"} 4');
  });

  it('times with startTimer and observes through a child without a lookup', async () => {
    const { hot, ours } = pair(['stage']);
    const end = hot.startTimer({ stage: 'write' });
    expect(end()).toBeGreaterThanOrEqual(0);
    const child = hot.child({ stage: 'queue' });
    child.observe(0.003);
    child.observe(0.003);
    const text = await ours.metrics();
    expect(text).toContain('x_seconds_count{stage="write"} 1');
    expect(text).toContain('x_seconds_bucket{le="0.005",stage="queue"} 2');
    expect(text).toContain('x_seconds_bucket{le="0.001",stage="queue"} 0');
  });

  it('refuses what prom-client refuses: a label it was not given, a value that is not a finite number', () => {
    const { hot } = pair(['stage']);
    expect(() => hot.observe({ stage: 'queue', nope: 'x' } as never, 1)).toThrow(/nope/);
    expect(() => hot.observe({ stage: 'queue' }, Number.NaN)).toThrow(/not a valid number/);
    expect(() => hot.observe({ stage: 'queue' }, Number.POSITIVE_INFINITY)).toThrow(/not a valid number/);
    expect(() => new HotHistogram({ name: 'y', help: 'y', buckets: [1, 1] })).toThrow(/distinct/);
  });
});
