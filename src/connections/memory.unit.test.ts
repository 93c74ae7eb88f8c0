import { admission, renewedSessions, type AdmissionCommand, type AdmissionEvent } from '../domain/admission';
import { run } from '../domain/decider';
import { MemoryConnectionRegistry } from './memory';

// The memory registry keeps its leases mutable and indexed (one gateway may hold
// 10,000): its answers must stay those of the pure decider applied by copy.

const acquire = (i: number, now: number, maxClients: number): AdmissionCommand => ({
  type: 'Acquire', clientId: `c${i}`, sessionId: `s${i}-${now}`, gatewayId: i % 3 === 0 ? 'g2' : 'g1', conversationId: `conv${i}`, now, leaseMs: 100, maxClients,
});

/** A small deterministic PRNG (mulberry32), so a failure replays. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('MemoryConnectionRegistry', () => {
  it.each([1, 2, 3, 4, 5])('answers as the pure decider does over a random history of acquires, releases, renewals and expiries (seed %i)', async (seed) => {
    const rnd = prng(seed);
    const registry = new MemoryConnectionRegistry();
    let state = admission.initialState();
    const reference = (c: AdmissionCommand): AdmissionEvent[] => {
      const r = run(admission, c, state);
      state = r.state;
      return r.events;
    };
    const sessions: string[] = [];
    /** By holder: the sessions its last renewal kept, and those it claimed since. */
    const keptBy = new Map<string, Set<string>>();
    const kept = (g: string) => keptBy.get(g) ?? keptBy.set(g, new Set()).get(g)!;
    let now = 1000;
    for (let step = 0; step < 3000; step++) {
      now += Math.floor(rnd() * 15);
      const op = rnd();
      if (op < 0.5) {
        const c = acquire(Math.floor(rnd() * 12), now, 6) as Extract<AdmissionCommand, { type: 'Acquire' }>;
        const got = await registry.acquire(c);
        const want = reference(c);
        expect(got.ok).toBe(want.some((e) => e.type === 'Admitted'));
        if (got.ok) {
          sessions.push(c.sessionId);
          kept(c.gatewayId).add(c.sessionId);
        }
        else expect(got.reason).toBe((want.find((e) => e.type === 'Refused') as { reason: string }).reason);
      } else if (op < 0.7 && sessions.length) {
        const s = sessions[Math.floor(rnd() * sessions.length)]!;
        for (const k of keptBy.values()) k.delete(s);
        expect(await registry.release(s)).toBe(reference({ type: 'Release', sessionId: s }).length > 0);
      } else if (op < 0.9) {
        const g = rnd() < 0.5 ? 'g1' : 'g2';
        const want = renewedSessions(state, g, now);
        expect(reference({ type: 'Renew', gatewayId: g, now, leaseMs: 100 })).toHaveLength(1);
        const got = await registry.renew(g, now, 100);
        // 'all': every session the holder's previous renewal kept, or claimed since, and not released, is still live.
        if (got === 'all') expect(want).toEqual(expect.arrayContaining([...kept(g)]));
        else expect(got.sort()).toEqual(want.sort());
        keptBy.set(g, new Set(want));
      } else {
        const want = reference({ type: 'Expire', now }).flatMap((e) => (e.type === 'Expired' ? [e.lease.sessionId] : []));
        expect((await registry.expire(now)).map((l) => l.sessionId).sort()).toEqual(want.sort());
      }
      expect(await registry.count()).toBe(state.leases.size);
    }
  });

  it('holding 10,000 leases of one holder, renews them and sweeps (nothing expired) writing no entry per lease', async () => {
    const registry = new MemoryConnectionRegistry();
    const n = 10_000;
    for (let i = 0; i < n; i++) {
      expect((await registry.acquire({ clientId: `c${i}`, sessionId: `s${i}`, gatewayId: 'g1', conversationId: `conv${i}`, now: 1000, leaseMs: 1000, maxClients: n })).ok).toBe(true);
    }
    const set = jest.spyOn(Map.prototype, 'set');
    try {
      for (let t = 1500; t <= 5000; t += 500) {
        expect(await registry.renew('g1', t, 1000)).toEqual(t === 1500 ? expect.arrayContaining([]) : 'all');
        expect(await registry.expire(t + 100)).toEqual([]);
        expect((await registry.acquire({ clientId: 'late', sessionId: `late${t}`, gatewayId: 'g1', conversationId: 'x', now: t + 200, leaseMs: 1000, maxClients: n })).ok).toBe(false);
      }
      // Renewing lease by lease writes n entries per renewal; one heartbeat per holder writes one.
      expect(set.mock.calls.length).toBeLessThan(100);
    } finally {
      set.mockRestore();
    }
    expect((await registry.expire(6001)).length).toBe(n);
  });

  it('holding 2,000 leases, renews, admits, refuses and releases without copying the lease map per lease', async () => {
    const registry = new MemoryConnectionRegistry();
    const n = 2000;
    for (let i = 0; i < n; i++) expect((await registry.acquire({ ...acquire(i, 1000, n), leaseMs: 10_000 } as never)).ok).toBe(true);
    const set = jest.spyOn(Map.prototype, 'set');
    try {
      expect(await registry.renew('g1', 1500, 10_000)).toHaveLength(n - Math.ceil(n / 3));
      expect((await registry.acquire({ ...acquire(n, 1600, n), leaseMs: 10_000 } as never)).ok).toBe(false);
      expect(await registry.release(`s7-1000`)).toBe(true);
      expect((await registry.acquire({ ...acquire(n + 1, 1700, n), leaseMs: 10_000 } as never)).ok).toBe(true);
      // Copy-per-event: a renewal of n leases alone sets n × n entries; in place: about one per lease.
      expect(set.mock.calls.length).toBeLessThan(4 * n);
    } finally {
      set.mockRestore();
    }
  });
});
