import type { ReplyClaims } from './port';

/** deadAfterMs every factory must configure. */
export const CONTRACT_DEAD_AFTER_MS = 3_000;

/**
 * The contract every ReplyClaims adapter (memory, MongoDB) keeps. `other` is a
 * second instance on the same store (another worker process) where the adapter
 * has one; it must be configured with deadAfterMs = CONTRACT_DEAD_AFTER_MS.
 */
export function describeReplyClaims(name: string, factory: () => Promise<{ claims: ReplyClaims; other?: ReplyClaims; cleanup(): Promise<void> }>): void {
  describe(`ReplyClaims contract: ${name}`, () => {
    let a: ReplyClaims;
    let b: ReplyClaims;
    let cleanup: () => Promise<void>;
    let n = 0;
    let id: string;
    const t0 = 1_000_000;
    const event = (text: string) => new TextEncoder().encode(text);
    beforeEach(async () => {
      const f = await factory();
      a = f.claims;
      b = f.other ?? f.claims;
      cleanup = f.cleanup;
      id = `m-${Date.now()}-${n++}`;
      await a.beat('wA', t0);
      await b.beat('wB', t0);
    });
    afterEach(async () => cleanup?.());

    it('gives a message to one live owner; the other waits, then finds it answered', async () => {
      expect(await a.claim(id, 'wA', t0)).toEqual({ type: 'claimed', gen: 1, taken: false });
      expect(await b.claim(id, 'wB', t0 + 10)).toEqual({ type: 'busy', holder: 'wA' });
      expect(await a.claim(id, 'wA', t0 + 20)).toEqual({ type: 'claimed', gen: 1, taken: false }); // a retry of the holder keeps it
      expect(await a.commit(id, 'wA', 1, event('reply'))).toBe(true);
      expect(await b.claim(id, 'wB', t0 + 30)).toEqual({ type: 'busy', holder: 'wA' }); // recorded, being appended
      await a.confirmAppended(id, t0 + 35);
      expect(await b.claim(id, 'wB', t0 + 40)).toEqual({ type: 'answered' });
    });

    it('of many owners claiming at once, exactly one gets the message', async () => {
      const owners = Array.from({ length: 12 }, (_, i) => `w${i}`);
      await Promise.all(owners.map((o) => a.beat(o, t0)));
      const results = await Promise.all(owners.map((o, i) => (i % 2 ? a : b).claim(id, o, t0 + 1)));
      expect(results.filter((r) => r.type === 'claimed')).toHaveLength(1);
      expect(results.filter((r) => r.type === 'busy')).toHaveLength(11);
    });

    it('hands a dead holder\'s claim over (no beat for deadAfterMs), and only one outcome of the two holders counts', async () => {
      expect((await a.claim(id, 'wA', t0)).type).toBe('claimed');
      const later = t0 + CONTRACT_DEAD_AFTER_MS + 1;
      await b.beat('wB', later);
      expect(await b.claim(id, 'wB', later)).toEqual({ type: 'claimed', gen: 2, taken: true });
      // The zombie (wA, gen 1) and its successor (wB, gen 2) both finish, at the same moment.
      const [za, zb] = await Promise.all([a.commit(id, 'wA', 1, event('zombie')), b.commit(id, 'wB', 2, event('successor'))]);
      expect([za, zb].filter(Boolean)).toHaveLength(1);
      expect(await a.commit(id, 'wA', 1, event('again'))).toBe(za);
    });

    it('refuses the commit of a generation its owner never claimed, and records nothing', async () => {
      expect((await a.claim(id, 'wA', t0)).type).toBe('claimed');
      await expect(b.commit(id, 'wB', 1, event('not mine'))).rejects.toThrow(/never claimed/);
      await expect(a.commit(id, 'wB', 1, event('not mine'))).rejects.toThrow(/never claimed/);
      expect(await a.commit(id, 'wA', 1, event('mine'))).toBe(true);
    });

    it('lets the next owner in at once when the holder releases the message', async () => {
      expect((await a.claim(id, 'wA', t0)).type).toBe('claimed');
      await a.release(id, 'wA', 1);
      expect(await b.claim(id, 'wB', t0 + 1)).toEqual({ type: 'claimed', gen: 2, taken: true });
      await a.release(id, 'wA', 1); // twice: nothing more
      expect(await a.claim(id, 'wA', t0 + 2)).toEqual({ type: 'busy', holder: 'wB' });
    });

    it('keeps an outcome whose owner died before confirming it, for the next owner to check against the log', async () => {
      expect((await a.claim(id, 'wA', t0)).type).toBe('claimed');
      expect(await a.commit(id, 'wA', 1, event('the reply'))).toBe(true);
      const later = t0 + CONTRACT_DEAD_AFTER_MS + 1;
      const found = await b.claim(id, 'wB', later);
      expect(found.type).toBe('unconfirmed');
      expect(found.type === 'unconfirmed' && new TextDecoder().decode(found.event)).toBe('the reply');
      await b.confirmAppended(id, later);
      expect(await b.claim(id, 'wB', later + 1)).toEqual({ type: 'answered' });
      expect(await b.claim(`${id}-other`, 'wB', later + 1)).toEqual({ type: 'claimed', gen: 1, taken: false });
    });

    it('prunes the records of a message answered longer ago than keepMs, and only those; the heartbeats of workers silent as long', async () => {
      const keepMs = 60_000;
      const [old, recent, pending] = [`${id}-old`, `${id}-recent`, `${id}-pending`];
      for (const m of [old, recent, pending]) expect((await a.claim(m, 'wA', t0)).type).toBe('claimed');
      for (const m of [old, recent]) expect(await a.commit(m, 'wA', 1, event(`reply to ${m}`))).toBe(true);
      await a.confirmAppended(old, t0);
      await a.confirmAppended(recent, t0 + keepMs);
      await a.beat('wSilent', t0);
      // Nothing is old enough yet.
      expect(await b.prune(t0 + keepMs - 1, keepMs)).toEqual({ messages: 0, heartbeats: 0 });
      // The old message's records go, and the heartbeats silent since t0 (wA, wB, wSilent): an absent heartbeat
      // says "dead" as a lapsed one does.
      expect(await b.prune(t0 + keepMs + 10, keepMs)).toEqual({ messages: 1, heartbeats: 3 });
      // The pruned message is forgotten (the worker's read-model check, long caught up, is what answers a copy of it now).
      expect(await b.claim(old, 'wB', t0 + keepMs + 20)).toEqual({ type: 'claimed', gen: 1, taken: false });
      // The recent one is still answered; the one never answered is still held, however old.
      expect(await b.claim(recent, 'wB', t0 + keepMs + 20)).toEqual({ type: 'answered' });
      expect(await a.claim(pending, 'wA', t0 + keepMs + 20)).toEqual({ type: 'claimed', gen: 1, taken: false });
      // Pruning again finds nothing more; a later prune takes the recent one, and spares a worker that beats.
      expect(await a.prune(t0 + keepMs + 10, keepMs)).toEqual({ messages: 0, heartbeats: 0 });
      await a.beat('wA', t0 + 2 * keepMs);
      expect(await a.prune(t0 + 2 * keepMs, keepMs)).toEqual({ messages: 1, heartbeats: 0 });
    });
  });
}
