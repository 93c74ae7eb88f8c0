import { decideAdmission, evolveAdmission, initialAdmissionState, type AdmissionCommand, type AdmissionState } from './admission';

const acquire = (clientId: string, now = 1000, maxClients = 2): AdmissionCommand => ({
  type: 'Acquire', clientId, sessionId: `s-${clientId}-${now}`, gatewayId: 'g1', conversationId: `c-${clientId}`, now, leaseMs: 100, maxClients,
});
const run = (state: AdmissionState, command: AdmissionCommand) => {
  const events = decideAdmission(command, state);
  return { events, state: events.reduce(evolveAdmission, state) };
};
const given = (...commands: AdmissionCommand[]) => commands.reduce((s, c) => run(s, c).state, initialAdmissionState());

describe('admission decider', () => {
  it('given room, when a client acquires, then it is admitted with a lease', () => {
    const { events, state } = run(initialAdmissionState(), acquire('a'));
    expect(events).toEqual([{ type: 'Admitted', lease: expect.objectContaining({ clientId: 'a', expiresAt: 1100 }) }]);
    expect(state.leases.size).toBe(1);
  });

  it('given the client already holds a live lease, when it acquires again, then it is refused as duplicate and the first lease stays', () => {
    const state = given(acquire('a'));
    const { events, state: after } = run(state, acquire('a', 1050));
    expect(events).toEqual([expect.objectContaining({ type: 'Refused', reason: 'duplicate' })]);
    expect(after.leases.get('a')?.sessionId).toBe('s-a-1000');
  });

  it('given max clients connected, when another acquires, then it is refused as full', () => {
    const state = given(acquire('a'), acquire('b'));
    expect(run(state, acquire('c', 1010)).events).toEqual([{ type: 'Refused', reason: 'full', clientId: 'c' }]);
  });

  it('given a full house with one expired lease, when another acquires, then the expired lease is reclaimed', () => {
    const state = given(acquire('a', 1000), acquire('b', 1050));
    const { events, state: after } = run(state, acquire('c', 1100));
    expect(events.map((e) => e.type)).toEqual(['Expired', 'Admitted']);
    expect([...after.leases.keys()].sort()).toEqual(['b', 'c']);
  });

  it('given an expired lease of the same client, when it reconnects, then it is admitted', () => {
    const state = given(acquire('a', 1000));
    expect(run(state, acquire('a', 1200)).events.map((e) => e.type)).toEqual(['Expired', 'Admitted']);
  });

  it('given a lease, when its session releases, then the slot is free; releasing twice changes nothing', () => {
    const state = given(acquire('a'));
    const { events, state: after } = run(state, { type: 'Release', sessionId: 's-a-1000' });
    expect(events.map((e) => e.type)).toEqual(['Released']);
    expect(after.leases.size).toBe(0);
    expect(run(after, { type: 'Release', sessionId: 's-a-1000' }).events).toEqual([]);
  });

  it('given a stale session, when it releases after the client reconnected, then the new lease is kept', () => {
    const state = given(acquire('a', 1000), acquire('a', 1200));
    const stale = { clientId: 'a', sessionId: 's-a-1000', gatewayId: 'g1', conversationId: 'c-a', acquiredAt: 1000, expiresAt: 1100 };
    expect(evolveAdmission(state, { type: 'Released', lease: stale }).leases.get('a')?.sessionId).toBe('s-a-1200');
  });

  it('given leases of two gateways, when one renews, then only its live leases move', () => {
    const state = given(acquire('a'), { ...acquire('b'), gatewayId: 'g2' } as AdmissionCommand);
    const { events, state: after } = run(state, { type: 'Renew', gatewayId: 'g1', now: 1090, leaseMs: 100 });
    expect(events).toEqual([{ type: 'Renewed', sessionId: 's-a-1000', clientId: 'a', expiresAt: 1190 }]);
    expect(after.leases.get('a')?.expiresAt).toBe(1190);
    expect(after.leases.get('b')?.expiresAt).toBe(1100);
  });

  it('given an expired lease, when renewing, then it is not revived', () => {
    const state = given(acquire('a'));
    expect(run(state, { type: 'Renew', gatewayId: 'g1', now: 1100, leaseMs: 100 }).events).toEqual([]);
  });

  it('given leases, when expiring at a time, then exactly those past their expiry go', () => {
    const state = given(acquire('a', 1000), acquire('b', 1050));
    const { events, state: after } = run(state, { type: 'Expire', now: 1100 });
    expect(events).toEqual([{ type: 'Expired', lease: expect.objectContaining({ clientId: 'a' }) }]);
    expect([...after.leases.keys()]).toEqual(['b']);
  });
});
