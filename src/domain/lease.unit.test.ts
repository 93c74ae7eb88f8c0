import { spec } from '../../test/decider-specification';
import { leaseKeeper, leaseTiming, type HeldSession, type LeaseKeeperEvent } from './lease';

describe('leaseTiming', () => {
  it.each([1_000, 3_000, 10_000, 60_000])('given a %i ms lease, a dead gateway\'s slot is swept within it', (leaseMs) => {
    const t = leaseTiming(leaseMs);
    // Worst case: renewed just before dying, swept one full period after expiry.
    expect(t.ttlMs + t.sweepEveryMs).toBeLessThanOrEqual(leaseMs);
  });

  it.each([1_000, 10_000])('given a %i ms lease, a live gateway renews at least three times per lease, and twice before it stops trusting', (leaseMs) => {
    const t = leaseTiming(leaseMs);
    expect(Math.floor(t.ttlMs / t.renewEveryMs)).toBeGreaterThanOrEqual(3);
    expect(Math.floor(t.trustMs / t.renewEveryMs)).toBeGreaterThanOrEqual(2);
  });

  it.each([1_000, 10_000, 60_000])('given a %i ms lease, a gateway that cannot renew closes its sessions a full sweep period before any lease can be swept', (leaseMs) => {
    const t = leaseTiming(leaseMs);
    // Checked every sweep period, so the latest close is trustMs + sweepEveryMs; the earliest sweep is at ttlMs.
    expect(t.trustMs + t.sweepEveryMs).toBeLessThanOrEqual(t.ttlMs - t.sweepEveryMs);
  });
});

describe('lease keeper', () => {
  const rule = spec(leaseKeeper);
  const s = (sessionId: string, admittedAt: number): HeldSession => ({ sessionId, admittedAt });
  const renewed = (sentAt: number): LeaseKeeperEvent => ({ type: 'Renewed', sentAt });

  it('given sessions, when a renewal extends all of them, then nothing is lost', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: ['a', 'b'], held: [s('a', 0), s('b', 50)] }).then([renewed(100)]);
  });

  it('given sessions, when a renewal misses one admitted before it was sent, then that session has lost its lease', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: ['a'], held: [s('a', 0), s('b', 50)] })
      .then([renewed(100), { type: 'LeasesLost', sessionIds: ['b'] }]);
  });

  it('given a session admitted after the renewal was sent, when the renewal misses it, then it is not lost', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: [], held: [s('late', 120)] }).then([renewed(100)]);
  });

  it('given a newer renewal recorded, when an older one comes back late, then it changes nothing', () => {
    rule.given([renewed(200)]).when({ type: 'RecordRenewal', sentAt: 100, renewed: [], held: [s('a', 0)] }).then([]);
  });

  it('given failing renewals, when checked before the trust window ends, then the sessions stay', () => {
    rule.given([renewed(100), { type: 'RenewalFailed', at: 150 }]).when({ type: 'Check', now: 599, trustMs: 500, held: [s('a', 0)] }).then([]);
  });

  it('given failing renewals, when checked after the trust window ends, then every session older than the last renewal is untrusted', () => {
    rule.given([renewed(100), { type: 'RenewalFailed', at: 150 }]).when({ type: 'Check', now: 600, trustMs: 500, held: [s('a', 0), s('fresh', 400)] })
      .then([{ type: 'TrustLost', sessionIds: ['a'], failingForMs: 450 }]);
  });

  it('given renewals failing, when one succeeds again, then failing is cleared and trust restarts from it', () => {
    const { state } = rule.given([renewed(100), { type: 'RenewalFailed', at: 150 }]).when({ type: 'RecordRenewal', sentAt: 700, renewed: ['a'], held: [s('a', 0)] }).then([renewed(700)]);
    expect(state).toEqual({ renewedAt: 700, failingSince: null });
  });

  it('given a failure already recorded, when another fails, then the start of the outage is kept', () => {
    rule.given([{ type: 'RenewalFailed', at: 150 }]).when({ type: 'RecordFailure', now: 300 }).then([]);
  });
});
