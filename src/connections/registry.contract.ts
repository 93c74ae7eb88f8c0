import type { AcquireRequest, ConnectionRegistry } from './port';

/** The contract every ConnectionRegistry adapter (memory, MongoDB) must keep. */
export function describeConnectionRegistry(name: string, factory: () => Promise<{ registry: ConnectionRegistry; other?: ConnectionRegistry; cleanup(): Promise<void> }>): void {
  describe(`ConnectionRegistry contract: ${name}`, () => {
    let registry: ConnectionRegistry;
    let other: ConnectionRegistry;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      const f = await factory();
      registry = f.registry;
      other = f.other ?? f.registry;
      cleanup = f.cleanup;
    });
    afterEach(async () => cleanup?.());

    const req = (clientId: string, over: Partial<AcquireRequest> = {}): AcquireRequest => ({
      clientId, sessionId: `s-${clientId}-${Math.random().toString(36).slice(2)}`, gatewayId: 'g1', conversationId: `c-${clientId}`,
      now: 1_000_000, leaseMs: 10_000, maxClients: 50, ...over,
    });

    it('admits exactly maxClients of many concurrent acquires, across registries sharing the store', async () => {
      const results = await Promise.all(
        Array.from({ length: 80 }, (_, i) => (i % 2 ? registry : other).acquire(req(`c${i}`, { gatewayId: i % 2 ? 'g1' : 'g2' }))),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(50);
      expect(results.filter((r) => !r.ok && r.reason === 'full')).toHaveLength(30);
      expect(await registry.count()).toBe(50);
    });

    it('admits exactly 50 of 200 distinct clients acquiring at once through two registries', async () => {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 ? registry : other).acquire(req(`many${i}`, { gatewayId: i % 2 ? 'g1' : 'g2', maxClients: 50 }))),
      );
      const admitted = results.flatMap((r) => (r.ok ? [r.lease.clientId] : []));
      expect(admitted).toHaveLength(50);
      expect(new Set(admitted).size).toBe(50);
      expect(results.filter((r) => !r.ok && r.reason === 'full')).toHaveLength(150);
      expect(await other.count()).toBe(50);
    });

    it('hands each expired lease to exactly one of several registries sweeping at once', async () => {
      const acquired = await Promise.all(Array.from({ length: 30 }, (_, i) => registry.acquire(req(`exp${i}`, { now: 0, leaseMs: 100 }))));
      expect(acquired.every((r) => r.ok)).toBe(true);
      const sweeps = await Promise.all([registry.expire(500), other.expire(500), registry.expire(500), other.expire(500)]);
      const expired = sweeps.flat().map((l) => l.clientId).sort();
      expect(expired).toEqual(Array.from({ length: 30 }, (_, i) => `exp${i}`).sort());
      expect(await registry.count()).toBe(0);
    });

    it('refuses a second connection of the same client as duplicate, even concurrently', async () => {
      const results = await Promise.all([registry.acquire(req('dup')), other.acquire(req('dup')), registry.acquire(req('dup'))]);
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok && r.reason === 'duplicate')).toHaveLength(2);
    });

    it('admits a client whose first connection was released through another registry just before (no refusal from an older view)', async () => {
      const first = req('a');
      expect((await registry.acquire(first)).ok).toBe(true);
      expect((await other.acquire(req('b'))).ok).toBe(true);
      expect(await other.acquire(req('a'))).toMatchObject({ ok: false, reason: 'duplicate' });
      expect(await registry.release(first.sessionId)).toBe(true);
      expect((await other.acquire(req('a'))).ok).toBe(true);
    });

    it('admits into a full house a slot freed through another registry just before (no "full" from an older view)', async () => {
      const first = req('a', { maxClients: 2 });
      expect((await registry.acquire(first)).ok).toBe(true);
      expect((await other.acquire(req('b', { maxClients: 2 }))).ok).toBe(true);
      expect(await other.acquire(req('c', { maxClients: 2 }))).toMatchObject({ ok: false, reason: 'full' });
      expect(await registry.release(first.sessionId)).toBe(true);
      expect((await other.acquire(req('c', { maxClients: 2 }))).ok).toBe(true);
      expect(await registry.acquire(req('d', { maxClients: 2 }))).toMatchObject({ ok: false, reason: 'full' });
    });

    it('frees the slot on release, once', async () => {
      const r = req('a', { maxClients: 1 });
      expect((await registry.acquire(r)).ok).toBe(true);
      expect((await registry.acquire(req('b', { maxClients: 1 }))).ok).toBe(false);
      expect(await registry.release(r.sessionId)).toBe(true);
      expect(await registry.release(r.sessionId)).toBe(false);
      expect((await registry.acquire(req('b', { maxClients: 1 }))).ok).toBe(true);
    });

    it('gives back every slot of a holder at once (a gateway shutting down), and only its: the slots go to others at once, through any registry', async () => {
      const max = { maxClients: 4 };
      const mine = ['a', 'b', 'c'].map((c) => req(c, { holder: 'g1/run1', ...max }));
      for (const r of mine) expect((await registry.acquire(r)).ok).toBe(true);
      expect((await other.acquire(req('d', { gatewayId: 'g2', holder: 'g2/run1', ...max }))).ok).toBe(true);
      // Both holders' heartbeats carry their counts (the MongoDB adapter proves a full house from them from the second renewal on).
      expect([...(await registry.renew('g1/run1', 1_000_100, 10_000))].sort()).toEqual(mine.map((r) => r.sessionId).sort());
      expect(await registry.renew('g1/run1', 1_000_200, 10_000)).toBe('all');
      await other.renew('g2/run1', 1_000_100, 10_000);
      await other.renew('g2/run1', 1_000_200, 10_000);
      expect(await other.acquire(req('e', max))).toMatchObject({ ok: false, reason: 'full' });
      expect(await registry.releaseHolder('g1/run1')).toBe(3);
      expect(await registry.count()).toBe(1);
      for (const r of mine) expect(await registry.release(r.sessionId)).toBe(false);
      for (const c of ['e', 'f', 'g']) expect((await other.acquire(req(c, max))).ok).toBe(true);
      expect(await registry.acquire(req('h', max))).toMatchObject({ ok: false, reason: 'full' });
      expect(await registry.releaseHolder('g1/run1')).toBe(0);
    });

    it('expires leases that were not renewed, and renews per gateway, naming the sessions renewed', async () => {
      const a = req('a', { gatewayId: 'g1', now: 0, leaseMs: 100 });
      await registry.acquire(a);
      await registry.acquire(req('b', { gatewayId: 'g2', now: 0, leaseMs: 100 }));
      expect(await registry.renew('g1', 50, 100)).toEqual([a.sessionId]);
      const expired = await registry.expire(120);
      expect(expired.map((l) => l.clientId)).toEqual(['b']);
      expect(await registry.count()).toBe(1);
      expect((await registry.expire(151)).map((l) => l.clientId)).toEqual(['a']);
      expect(await registry.count()).toBe(0);
      // A swept lease is not revived by its gateway's next renewal: the gateway learns it lost the slot.
      expect(await registry.renew('g1', 160, 100)).toEqual([]);
    });

    it('answers a renewal with "all" while its holder\'s heartbeat is live, and names the sessions kept after a lapse (a long pause)', async () => {
      const a = req('a', { holder: 'g1/run1', now: 0, leaseMs: 100 });
      const b = req('b', { holder: 'g1/run1', now: 0, leaseMs: 100 });
      for (const r of [a, b]) expect((await registry.acquire(r)).ok).toBe(true);
      expect(((await registry.renew('g1/run1', 50, 100)) as string[]).sort()).toEqual([a.sessionId, b.sessionId].sort());
      expect(await registry.renew('g1/run1', 120, 100)).toBe('all');
      // Paused past its heartbeat (220): another gateway sweeps both slots, and a client takes one.
      expect((await other.expire(230)).map((l) => l.clientId).sort()).toEqual(['a', 'b']);
      expect((await other.acquire(req('a', { holder: 'g2/run1', now: 235, leaseMs: 100 }))).ok).toBe(true);
      expect(await registry.renew('g1/run1', 250, 100)).toEqual([]);
      expect((await registry.acquire(req('c', { holder: 'g1/run1', now: 260, leaseMs: 100 }))).ok).toBe(true);
      expect(await registry.renew('g1/run1', 300, 100)).toBe('all');
    });

    it('keeps a slot claimed after its holder\'s last renewal until its own expiry, though that heartbeat has lapsed (an admission racing a sweep as the store comes back)', async () => {
      const a = req('a', { holder: 'g1/run1', now: 0, leaseMs: 100 });
      expect((await registry.acquire(a)).ok).toBe(true);
      expect(await registry.renew('g1/run1', 50, 100)).toEqual([a.sessionId]);
      // The store was gone past the heartbeat's expiry (150). Back at 200, the gateway admits a client before its
      // next renewal, and a sweep reads the heartbeat as it stood: lapsed.
      const c = req('c', { holder: 'g1/run1', now: 200, leaseMs: 100 });
      expect((await registry.acquire(c)).ok).toBe(true);
      // 'a' lapsed with the heartbeat (swept here, or already by the admission); 'c' is held until 300.
      expect((await other.expire(210)).map((l) => l.clientId)).not.toContain('c');
      expect(await registry.count()).toBe(1);
      expect((await other.acquire(req('c', { holder: 'g2/run1', now: 220, leaseMs: 100 })))).toMatchObject({ ok: false });
      // Its own expiry passed with no renewal: then it goes.
      expect((await other.expire(301)).map((l) => l.clientId)).toEqual(['c']);
    });

    it('never frees the slot of a holder that keeps renewing, long past the expiry its claim was written with', async () => {
      const a = req('a', { holder: 'g1/run1', now: 0, leaseMs: 100 });
      expect((await registry.acquire(a)).ok).toBe(true);
      for (let t = 80; t <= 800; t += 80) {
        // The first renewal (no heartbeat yet) names the session; then the heartbeat is live: every lease kept.
        expect(await other.renew('g1/run1', t, 100)).toEqual(t === 80 ? [a.sessionId] : 'all');
        expect(await registry.expire(t + 50)).toEqual([]);
      }
      expect((await other.acquire(req('a', { holder: 'g2/run1', now: 850 }))).ok).toBe(false);
    });

    it('renews none of a restarted gateway\'s previous slots (a new holder, the same gateway id); they come back once the old holder is silent', async () => {
      const old = req('a', { gatewayId: 'g1', holder: 'g1/run1', now: 0, leaseMs: 100 });
      await registry.acquire(old);
      await registry.renew('g1/run1', 50, 100);
      expect(await registry.renew('g1/run2', 100, 100)).toEqual([]);
      expect((await other.expire(151)).map((l) => l.sessionId)).toEqual([old.sessionId]);
      expect((await registry.acquire(req('a', { gatewayId: 'g1', holder: 'g1/run2', now: 160 }))).ok).toBe(true);
    });

    it('lets the client of a gateway that died back in once its heartbeat lapses, not after the lease its claim was written with', async () => {
      await registry.acquire(req('a', { holder: 'dead/run1', now: 0, leaseMs: 60_000 }));
      await registry.renew('dead/run1', 10, 100);
      expect((await other.acquire(req('a', { holder: 'g2/run1', now: 300, leaseMs: 100 }))).ok).toBe(true);
    });

    it('tells a second connection whose holder was heard from lately (duplicate) from one whose holder\'s heartbeat is late (holder-late, with the time until it lapses)', async () => {
      const first = req('a', { holder: 'g1/run1', now: 0, leaseMs: 1_000 });
      expect((await registry.acquire(first)).ok).toBe(true);
      // Heard from at the acquire (0), then at each renewal; late once silent for more than 300 ms.
      expect(await other.acquire(req('a', { holder: 'g2/run1', now: 250, lateAfterMs: 300 }))).toMatchObject({ ok: false, reason: 'duplicate' });
      expect(await registry.renew('g1/run1', 400, 1_000)).toEqual([first.sessionId]);
      expect(await other.acquire(req('a', { holder: 'g2/run1', now: 650, lateAfterMs: 300 }))).toMatchObject({ ok: false, reason: 'duplicate' });
      const late = await other.acquire(req('a', { holder: 'g2/run1', now: 900, lateAfterMs: 300 }));
      expect(late).toMatchObject({ ok: false, reason: 'holder-late', retryAfterMs: 500, holder: { sessionId: first.sessionId } });
      // Without a lateness bound a live lease is a duplicate however old its last renewal.
      expect(await other.acquire(req('a', { holder: 'g2/run1', now: 1_300 }))).toMatchObject({ ok: false, reason: 'duplicate' });
      // The holder renews again: no longer late. It stops: the slot is free once the heartbeat lapses.
      expect(await registry.renew('g1/run1', 1_350, 1_000)).toBe('all');
      expect(await other.acquire(req('a', { holder: 'g2/run1', now: 1_400, lateAfterMs: 300 }))).toMatchObject({ ok: false, reason: 'duplicate' });
      expect((await other.acquire(req('a', { holder: 'g2/run1', now: 2_350, lateAfterMs: 300 }))).ok).toBe(true);
    });

    it('refuses a client connected through another registry as duplicate, not full, in a full house this registry knows only by count', async () => {
      // CI, 2026-11-25 (test/stack.e2e.test.ts): in a full house, a client connected on gateway A that tried gateway B
      // got RESOURCE_EXHAUSTED, not ALREADY_EXISTS. B's view of the slots, read before A's claims, missed the
      // client's; the gateways' counts of their slots proved the house full, and it was refused on them.
      const at = (clientId: string, holder: string) => req(clientId, { holder, gatewayId: holder, now: Date.now(), leaseMs: 600_000, maxClients: 4 });
      expect((await registry.acquire(at('a', 'g1/run1'))).ok).toBe(true);
      const held = new Map<string, string>();
      for (const c of ['b', 'c', 'd']) {
        const r = at(c, 'g2/run1');
        expect((await other.acquire(r)).ok).toBe(true);
        held.set(c, r.sessionId);
      }
      // Each holder's heartbeat counts its slots from its second renewal on.
      for (let i = 0; i < 2; i++) await Promise.all([registry.renew('g1/run1', Date.now(), 600_000), other.renew('g2/run1', Date.now(), 600_000)]);
      expect(await registry.acquire(at('b', 'g1/run1'))).toMatchObject({ ok: false, reason: 'duplicate', holder: { sessionId: held.get('b') } });
      expect(await registry.acquire(at('e', 'g1/run1'))).toMatchObject({ ok: false, reason: 'full' });
      // And once a refusal has proven the house full (the next ones may refuse on what the registry knows).
      expect(await registry.acquire(at('c', 'g1/run1'))).toMatchObject({ ok: false, reason: 'duplicate', holder: { sessionId: held.get('c') } });
      expect(await registry.acquire(at('f', 'g1/run1'))).toMatchObject({ ok: false, reason: 'full' });
      expect(await registry.acquire(at('d', 'g1/run1'))).toMatchObject({ ok: false, reason: 'duplicate', holder: { sessionId: held.get('d') } });
      expect(await registry.count()).toBe(4);
    });

    it('lets a client whose lease expired connect again, and counts a full house with expired leases as free', async () => {
      await registry.acquire(req('a', { now: 0, leaseMs: 100, maxClients: 1 }));
      const again = await registry.acquire(req('a', { now: 200, leaseMs: 100, maxClients: 1 }));
      expect(again.ok).toBe(true);
      const b = await registry.acquire(req('b', { now: 400, leaseMs: 100, maxClients: 1 }));
      expect(b.ok).toBe(true);
    });
  });
}
