import { MemoryReplyClaims } from './memory';
import { CONTRACT_DEAD_AFTER_MS, describeReplyClaims } from './claims.contract';

describeReplyClaims('memory', async () => ({ claims: new MemoryReplyClaims({ deadAfterMs: CONTRACT_DEAD_AFTER_MS }), cleanup: async () => {} }));

describe('MemoryReplyClaims once an outcome is in the log (only its owner, generation and time are kept)', () => {
  const enc = (s: string) => new TextEncoder().encode(s);

  it('still tells a late commit of the owner Committed and another Superseded; release and a second confirm change nothing; a dead owner changes nothing', async () => {
    const c = new MemoryReplyClaims({ deadAfterMs: CONTRACT_DEAD_AFTER_MS });
    await c.beat('wA', 0);
    await c.beat('wB', 0);
    expect(await c.claim('m1', 'wA', 1)).toEqual({ type: 'claimed', gen: 1, taken: false });
    expect(await c.commit('m1', 'wA', 1, enc('reply'))).toBe(true);
    await c.confirmAppended('m1', 2);
    expect(await c.commit('m1', 'wA', 1, enc('reply'))).toBe(true);
    expect(await c.commit('m1', 'wB', 2, enc('other'))).toBe(false);
    await c.release('m1', 'wA', 1);
    await c.confirmAppended('m1', 50);
    // Long after wA died: still answered, not handed over.
    expect(await c.claim('m1', 'wB', 10 * CONTRACT_DEAD_AFTER_MS)).toEqual({ type: 'answered' });
    // Pruned by the time it was first appended (2), not the second confirm (50).
    expect((await c.prune(2 + 100, 100)).messages).toBe(1);
    expect(await c.claim('m1', 'wB', 10 * CONTRACT_DEAD_AFTER_MS)).toEqual({ type: 'claimed', gen: 1, taken: false });
  });
});
