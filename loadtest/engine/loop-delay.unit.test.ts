import { lateness, monitorLoop } from './loop-delay';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('lateness', () => {
  it('takes the timer interval off: a loop held 60 ms reads ≥ 50 ms late, and its figures are ordered', async () => {
    const loop = monitorLoop();
    await sleep(30);
    const until = performance.now() + 60;
    while (performance.now() < until); // holds the loop
    await sleep(30);
    const d = lateness(loop);
    // The timer due 5 ms after its last firing fired ≥ 60 ms after it: ≥ 55 late, less the interval's share before the hold.
    expect(d.max).toBeGreaterThanOrEqual(50);
    expect(d.p50).toBeGreaterThanOrEqual(0);
    expect(d.p50).toBeLessThanOrEqual(d.p99);
    expect(d.p99).toBeLessThanOrEqual(d.max);
  });

  it('is never negative, says 0.1 ms steps, and an idle loop is not 5 ms late (the interval is not counted)', async () => {
    const loop = monitorLoop();
    await sleep(100);
    const d = lateness(loop);
    // monitorEventLoopDelay's own figures are ≥ 5 ms here (its interval included); lateness is the part beyond it.
    expect(d.p50).toBeLessThan(5);
    for (const v of [d.p50, d.p99, d.max]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(Math.round(v * 10)).toBeCloseTo(v * 10, 6);
    }
  });
});
