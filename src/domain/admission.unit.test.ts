import { admission, admissionStateOf, expiryOf, renewalKeptAll, renewedSessions, type AdmissionCommand, type AdmissionEvent, type LeaseState } from './admission';
import { spec } from '../../test/decider-specification';
import { fold } from './decider';

const acquire = (clientId: string, now = 1000, maxClients = 2): AdmissionCommand => ({
  type: 'Acquire', clientId, sessionId: `s-${clientId}-${now}`, gatewayId: 'g1', conversationId: `c-${clientId}`, now, leaseMs: 100, maxClients,
});
const lease = (clientId: string, now = 1000, gatewayId = 'g1'): LeaseState => ({
  clientId, sessionId: `s-${clientId}-${now}`, gatewayId, conversationId: `c-${clientId}`, acquiredAt: now, expiresAt: now + 100,
});
const admitted = (clientId: string, now = 1000, gatewayId = 'g1'): AdmissionEvent => ({ type: 'Admitted', lease: lease(clientId, now, gatewayId) });
const rule = spec(admission);
/** g1's heartbeat renewed at `at` until `until`, in a run of renewals begun at `since`. */
const renewedAt = (at: number, until: number, since = 1000): AdmissionEvent => ({ type: 'HolderRenewed', holder: 'g1', heartbeat: { since, expiresAt: until, renewedAt: at } });

describe('admission decider', () => {
  it('given room, when a client acquires, then it is admitted with a lease', () => {
    const { state } = rule.given([]).when(acquire('a')).then([admitted('a')]);
    expect(state.leases.size).toBe(1);
  });

  it('given the client already holds a live lease, when it acquires again, then it is refused as duplicate and the first lease stays', () => {
    rule.given([admitted('a')]).when(acquire('a', 1050)).thenState((state, events) => {
      expect(events).toEqual([{ type: 'Refused', reason: 'duplicate', clientId: 'a', holder: lease('a') }]);
      expect(state.leases.get('a')?.sessionId).toBe('s-a-1000');
    });
  });

  it('given the client\'s lease whose holder has not renewed it for longer than the acquire\'s lateAfterMs, then it is refused as holder-late with the time until it lapses', () => {
    const late = { ...acquire('a', 1050), lateAfterMs: 40 };
    rule.given([admitted('a')]).when(late).then([{ type: 'Refused', reason: 'holder-late', clientId: 'a', holder: lease('a'), retryAfterMs: 50 }]);
    rule.given([admitted('a'), renewedAt(1030, 1130)]).when(late)
      .then([{ type: 'Refused', reason: 'duplicate', clientId: 'a', holder: { ...lease('a'), expiresAt: 1130, renewedAt: 1030 } }]);
  });

  it('given max clients connected, when another acquires, then it is refused as full', () => {
    rule.given([admitted('a'), admitted('b')]).when(acquire('c', 1010)).then([{ type: 'Refused', reason: 'full', clientId: 'c' }]);
  });

  it('given a full house with one expired lease, when another acquires, then the expired lease is reclaimed', () => {
    const { state } = rule.given([admitted('a', 1000), admitted('b', 1050)]).when(acquire('c', 1100))
      .then([{ type: 'Expired', lease: lease('a', 1000) }, admitted('c', 1100)]);
    expect([...state.leases.keys()].sort()).toEqual(['b', 'c']);
  });

  it('given an expired lease of the same client, when it reconnects, then it is admitted', () => {
    rule.given([admitted('a', 1000)]).when(acquire('a', 1200)).then([{ type: 'Expired', lease: lease('a', 1000) }, admitted('a', 1200)]);
  });

  it('given a lease, when its session releases, then the slot is free; releasing twice changes nothing', () => {
    const { state } = rule.given([admitted('a')]).when({ type: 'Release', sessionId: 's-a-1000' }).then([{ type: 'Released', lease: lease('a') }]);
    expect(state.leases.size).toBe(0);
    rule.given([admitted('a'), { type: 'Released', lease: lease('a') }]).when({ type: 'Release', sessionId: 's-a-1000' }).then([]);
  });

  it('given leases of two holders, when one gives all of its back (shutting down), then exactly its leases are released, as its heartbeat had them', () => {
    const { state } = rule.given([admitted('a'), admitted('b', 1000, 'g2'), admitted('c', 1010), renewedAt(1050, 1150)])
      .when({ type: 'ReleaseHolder', holder: 'g1' })
      .then([{ type: 'Released', lease: { ...lease('a'), expiresAt: 1150, renewedAt: 1050 } }, { type: 'Released', lease: { ...lease('c', 1010), expiresAt: 1150, renewedAt: 1050 } }]);
    expect([...state.leases.keys()]).toEqual(['b']);
    rule.given([admitted('b', 1000, 'g2')]).when({ type: 'ReleaseHolder', holder: 'g1' }).then([]);
  });

  it('given a stale session, when it releases after the client reconnected, then the new lease is kept', () => {
    const reconnected = [admitted('a', 1000), { type: 'Expired', lease: lease('a', 1000) } as AdmissionEvent, admitted('a', 1200)];
    expect(admission.evolve(reconnected.reduce(admission.evolve, admission.initialState()), { type: 'Released', lease: lease('a', 1000) }).leases.get('a')?.sessionId).toBe('s-a-1200');
  });

  it('given leases of two gateways, when one renews, then only its live leases move', () => {
    const { state } = rule.given([admitted('a'), admitted('b', 1000, 'g2')]).when({ type: 'Renew', gatewayId: 'g1', now: 1090, leaseMs: 100 })
      .then([renewedAt(1090, 1190, 1090)]);
    expect(expiryOf(state.leases.get('a')!, state.heartbeats)).toBe(1190);
    expect(expiryOf(state.leases.get('b')!, state.heartbeats)).toBe(1100);
    expect(renewedSessions(state, 'g1', 1150)).toEqual(['s-a-1000']);
    expect(renewedSessions(state, 'g2', 1150)).toEqual([]);
  });

  it('given an expired lease, when renewing, then it is not revived', () => {
    const given = [admitted('a')];
    expect(renewedSessions(rule.given(given).when({ type: 'Expire', now: 0 }).then([]).state, 'g1', 1100)).toEqual([]);
    rule.given(given).when({ type: 'Renew', gatewayId: 'g1', now: 1100, leaseMs: 100 }).then([{ type: 'HolderRenewed', holder: 'g1', heartbeat: { since: 1100, expiresAt: 1200, renewedAt: 1100 } }]);
    rule.given([...given, renewedAt(1100, 1200, 1100)]).when({ type: 'Expire', now: 1150 }).then([{ type: 'Expired', lease: lease('a') }]);
  });

  it('given a holder that keeps renewing, then its leases outlive the expiry they were acquired with, and come back once it stops', () => {
    const run = [admitted('a'), renewedAt(1080, 1180), renewedAt(1160, 1260)];
    rule.given(run).when({ type: 'Expire', now: 1250 }).then([]);
    rule.given(run).when(acquire('b', 1250, 1)).then([{ type: 'Refused', reason: 'full', clientId: 'b' }]);
    rule.given(run).when({ type: 'Expire', now: 1260 }).then([{ type: 'Expired', lease: { ...lease('a'), expiresAt: 1260, renewedAt: 1160 } }]);
  });

  it('given a lease acquired after its holder\'s last renewal, then it keeps its own expiry until the next renewal, which extends it', () => {
    const run = [renewedAt(1000, 1030), admitted('a', 1020)];
    rule.given(run).when({ type: 'Expire', now: 1100 }).then([]);
    rule.given(run).when({ type: 'Expire', now: 1120 }).then([{ type: 'Expired', lease: lease('a', 1020) }]);
    rule.given([...run, renewedAt(1025, 1125)]).when({ type: 'Expire', now: 1120 }).then([]);
  });

  it('given a holder whose heartbeat lapsed, when it renews again, then it renews only the leases still live: one lapsed before is not revived', () => {
    const run = [admitted('a', 900), admitted('b', 1040), renewedAt(950, 1010, 950)];
    const { state } = rule.given(run).when({ type: 'Renew', gatewayId: 'g1', now: 1050, leaseMs: 100 })
      .then([{ type: 'HolderRenewed', holder: 'g1', heartbeat: { since: 1050, expiresAt: 1150, renewedAt: 1050 } }]);
    expect(renewedSessions(fold(admission, run), 'g1', 1050)).toEqual(['s-b-1040']);
    expect(admission.decide({ type: 'Expire', now: 1100 }, state)).toEqual([{ type: 'Expired', lease: { ...lease('a', 900), expiresAt: 1000 } }]);
    expect(expiryOf(state.leases.get('b')!, state.heartbeats)).toBe(1150);
  });

  it('given 10,000 leases of one holder, when it renews, then one heartbeat changes and no lease is touched', () => {
    const state = admissionStateOf(Array.from({ length: 10_000 }, (_, i) => lease(`c${i}`)));
    const events = admission.decide({ type: 'Renew', gatewayId: 'g1', now: 1050, leaseMs: 100 }, state);
    expect(events).toEqual([renewedAt(1050, 1150, 1050)]);
    const after = admission.evolve(state, events[0]!);
    expect(after.leases).toBe(state.leases);
    expect(after.heartbeats?.size).toBe(1);
    expect(admission.decide({ type: 'Expire', now: 1149 }, after)).toEqual([]);
  });

  it('given leases, when expiring at a time, then exactly those past their expiry go', () => {
    const { state } = rule.given([admitted('a', 1000), admitted('b', 1050)]).when({ type: 'Expire', now: 1100 }).then([{ type: 'Expired', lease: lease('a', 1000) }]);
    expect([...state.leases.keys()]).toEqual(['b']);
  });
});

describe('admission decider with a count of slots held beyond the leases listed (heldAtLeast)', () => {
  it('refuses as full once the count reaches the cap, however few leases are listed, expired ones included', () => {
    expect(admission.decide(acquire('c', 1010, 3), { leases: new Map([['a', lease('a')]]), heldAtLeast: 3 })).toEqual([{ type: 'Refused', reason: 'full', clientId: 'c' }]);
    expect(admission.decide(acquire('c', 1010, 3), { leases: new Map([['a', lease('a')]]), heldAtLeast: 3, noneExpireBefore: 1100 })).toEqual([{ type: 'Refused', reason: 'full', clientId: 'c' }]);
    // The listed lease expired: it would be reclaimed, but the count says the house is full of live ones.
    expect(admission.decide(acquire('c', 1200, 3), { leases: new Map([['a', lease('a')]]), heldAtLeast: 3 })).toEqual([{ type: 'Refused', reason: 'full', clientId: 'c' }]);
  });

  it('changes nothing below the cap, and a listed live lease of the client is still refused as duplicate', () => {
    expect(admission.decide(acquire('c', 1010, 3), { leases: new Map([['a', lease('a')]]), heldAtLeast: 2 })).toEqual([admitted('c', 1010)]);
    expect(admission.decide(acquire('a', 1010, 3), { leases: new Map([['a', lease('a')]]), heldAtLeast: 3 })).toEqual([{ type: 'Refused', reason: 'duplicate', clientId: 'a', holder: lease('a') }]);
  });
});

describe('admission decider with the optional indexes', () => {
  /** Leases whose every scan throws: a decision made with the indexes must not need one. */
  const unscannable = (entries: [string, LeaseState][]): ReadonlyMap<string, LeaseState> => {
    const m = new Map(entries);
    const fail = () => {
      throw new Error('scanned every lease');
    };
    return Object.assign(m, { values: fail, entries: fail, forEach: fail, [Symbol.iterator]: fail });
  };
  const held = [lease('a'), lease('b')].map((l): [string, LeaseState] => [l.clientId, l]);

  it('refuses a client at a full server without scanning the leases when none can have expired', () => {
    expect(admission.decide(acquire('c', 1010), { leases: unscannable(held), noneExpireBefore: 1100 })).toEqual([{ type: 'Refused', reason: 'full', clientId: 'c' }]);
  });

  it('expires nothing without scanning the leases when none can have expired', () => {
    expect(admission.decide({ type: 'Expire', now: 1050 }, { leases: unscannable(held), noneExpireBefore: 1100 })).toEqual([]);
  });

  it('admits with room without scanning the leases when none can have expired', () => {
    expect(admission.decide(acquire('c', 1010, 3), { leases: unscannable(held), noneExpireBefore: 1100 })).toEqual([admitted('c', 1010)]);
  });

  it('scans (and reclaims expired leases) once the bound is reached, deciding as without the index', () => {
    const state = { leases: new Map(held), noneExpireBefore: 1100 };
    expect(admission.decide(acquire('c', 1100), state)).toEqual(admission.decide(acquire('c', 1100), { leases: new Map(held) }));
  });

  it('finds the lease to release by session id without scanning, and releases nothing for an unknown or stale session', () => {
    const sessions = new Map([['s-a-1000', 'a'], ['s-b-1000', 'b']]);
    expect(admission.decide({ type: 'Release', sessionId: 's-b-1000' }, { leases: unscannable(held), sessions })).toEqual([{ type: 'Released', lease: lease('b') }]);
    expect(admission.decide({ type: 'Release', sessionId: 's-x' }, { leases: unscannable(held), sessions })).toEqual([]);
    expect(admission.decide({ type: 'Release', sessionId: 's-a-1000' }, { leases: unscannable(held), sessions: new Map([['s-a-1000', 'b']]) })).toEqual([]);
  });

  it('a renewal keeps every lease of its holder without reading them only when the heartbeat it replaces was live at its time', () => {
    expect(renewalKeptAll({ expiresAt: 1100 }, 1099)).toBe(true);
    expect(renewalKeptAll({ expiresAt: 1100 }, 1100)).toBe(false);
    expect(renewalKeptAll(undefined, 0)).toBe(false);
    expect(renewalKeptAll(null, 0)).toBe(false);
    // As the decider sees it: while the heartbeat is live, every lease it renewed, and every one claimed since, is live.
    const { state } = rule.given([admitted('a'), renewedAt(1050, 1150), admitted('b', 1100)]).when({ type: 'Expire', now: 1149 }).then([]);
    expect(renewalKeptAll(state.heartbeats?.get('g1'), 1149)).toBe(true);
    expect(renewedSessions(state, 'g1', 1149).sort()).toEqual(['s-a-1000', 's-b-1100']);
    // Once it lapsed, a sweep may have taken them: the renewal must name the live ones.
    expect(renewalKeptAll(state.heartbeats?.get('g1'), 1150)).toBe(false);
  });
});
