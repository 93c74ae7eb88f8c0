import { spec } from '../../test/decider-specification';
import { mayKeepClaim, trusted, leaseKeeper, leaseTiming, type HeldSession, type LeaseKeeperEvent } from './lease';

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

describe('trusted', () => {
  const t = leaseTiming(10_000);
  it('given a renewal just sent, then the gateway vouches for its slots', () => expect(trusted({ renewedAt: 1_000, failingSince: null }, 1_050, t)).toBe(true));
  it('given no good renewal for trustMs, then it does not, not even for a slot claimed since', () => {
    expect(trusted({ renewedAt: 1_000, failingSince: 1_100 }, 1_000 + t.trustMs, t)).toBe(false);
    expect(trusted({ renewedAt: 1_000, failingSince: 1_100 }, 1_000 + t.trustMs - 1, t)).toBe(true);
  });
});

describe('mayKeepClaim', () => {
  const t = leaseTiming(10_000);
  const renewed = { renewedAt: 1_000, failingSince: null };
  it('given a trusted gateway, when its claim came back soon after it was sent, then it keeps the slot', () => {
    expect(mayKeepClaim(renewed, { admittedAt: 1_100, claimedAt: 1_150 }, t)).toBe(true);
  });
  it('given a trusted gateway, when its claim came back trustMs or more after it was sent (it waited on the store), then it gives the slot back', () => {
    const fresh = { renewedAt: 9_000, failingSince: null };
    expect(mayKeepClaim(fresh, { admittedAt: 1_000, claimedAt: 1_000 + t.trustMs - 1 }, t)).toBe(true);
    expect(mayKeepClaim(fresh, { admittedAt: 1_000, claimedAt: 1_000 + t.trustMs }, t)).toBe(false);
  });
  it('given a gateway that no longer vouches for its slots, when a claim comes back at once, then it gives the slot back', () => {
    expect(mayKeepClaim(renewed, { admittedAt: 1_000 + t.trustMs, claimedAt: 1_000 + t.trustMs }, t)).toBe(false);
  });
});

describe('lease keeper', () => {
  const rule = spec(leaseKeeper);
  const s = (sessionId: string, admittedAt: number, claimedAt = admittedAt): HeldSession => ({ sessionId, admittedAt, claimedAt });
  const renewed = (sentAt: number): LeaseKeeperEvent => ({ type: 'Renewed', sentAt });

  it('given sessions, when a renewal extends all of them, then nothing is lost', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: ['a', 'b'], held: [s('a', 0), s('b', 50)] }).then([renewed(100)]);
  });

  it('given no session to check, when a renewal comes back, then its answer is not walked (10,000 ids every renewal period)', () => {
    const unwalkable = Object.assign([] as string[], { [Symbol.iterator]: () => { throw new Error('walked the renewed ids'); } });
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: unwalkable, held: [] }).then([renewed(100)]);
  });

  it('a renewal that kept every lease (the store\'s heartbeat had not lapsed) loses none, whatever the sessions held', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: 'all', held: [s('a', 0), s('b', 50)] }).then([renewed(100)]);
  });

  it('given sessions, when a renewal misses one admitted before it was sent, then that session has lost its lease', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: ['a'], held: [s('a', 0), s('b', 50)] })
      .then([renewed(100), { type: 'LeasesLost', sessionIds: ['b'] }]);
  });

  it('given a session admitted after the renewal was sent, when the renewal misses it, then it is not lost', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: [], held: [s('late', 120)] }).then([renewed(100)]);
  });

  it('given a claim sent before the renewal but stored after it was sent, when the renewal misses it, then it is not lost', () => {
    rule.given([]).when({ type: 'RecordRenewal', sentAt: 100, renewed: [], held: [s('slow-insert', 80, 130)] }).then([renewed(100)]);
  });

  it('given a newer renewal recorded, when an older one comes back late, then it changes nothing', () => {
    rule.given([renewed(200)]).when({ type: 'RecordRenewal', sentAt: 100, renewed: [], held: [s('a', 0)] }).then([]);
  });

  it('given failing renewals, when checked before the trust window ends, then the sessions stay', () => {
    rule.given([renewed(100), { type: 'RenewalFailed', at: 150 }]).when({ type: 'Check', now: 599, trustMs: 500, held: [s('a', 0)] }).then([]);
  });

  it('given failing renewals, when checked after the trust window ends, then every session is untrusted, even one admitted since (its slot lives as long as the heartbeat)', () => {
    rule.given([renewed(100), { type: 'RenewalFailed', at: 150 }]).when({ type: 'Check', now: 600, trustMs: 500, held: [s('a', 0), s('fresh', 400)] })
      .then([{ type: 'TrustLost', sessionIds: ['a', 'fresh'], failingForMs: 450 }]);
  });

  it('given renewals failing, when one succeeds again, then failing is cleared and trust restarts from it', () => {
    const { state } = rule.given([renewed(100), { type: 'RenewalFailed', at: 150 }]).when({ type: 'RecordRenewal', sentAt: 700, renewed: ['a'], held: [s('a', 0)] }).then([renewed(700)]);
    expect(state).toEqual({ renewedAt: 700, failingSince: null });
  });

  it('given a failure already recorded, when another fails, then the start of the outage is kept', () => {
    rule.given([{ type: 'RenewalFailed', at: 150 }]).when({ type: 'RecordFailure', now: 300 }).then([]);
  });
});
