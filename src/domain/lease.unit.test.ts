import { leaseTiming } from './lease';

describe('leaseTiming', () => {
  it.each([1_000, 3_000, 10_000, 60_000])('given a %i ms lease, a dead gateway\'s slot is swept within it', (leaseMs) => {
    const t = leaseTiming(leaseMs);
    // Worst case: renewed just before dying, swept one full period after expiry.
    expect(t.ttlMs + t.sweepEveryMs).toBeLessThanOrEqual(leaseMs);
  });

  it.each([1_000, 10_000])('given a %i ms lease, a live gateway renews at least three times per lease', (leaseMs) => {
    const t = leaseTiming(leaseMs);
    expect(Math.floor(t.ttlMs / t.renewEveryMs)).toBeGreaterThanOrEqual(3);
  });
});
