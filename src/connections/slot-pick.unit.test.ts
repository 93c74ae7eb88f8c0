import fc from 'fast-check';
import { freeSlot, homeSlot, pickSlot, type Walk } from './slot-pick';

describe('pickSlot', () => {
  it('walks from home over the holder\'s own numbers to the first free one, and draws at random past another holder\'s', () => {
    const mine = new Set([5, 6, 7]), theirs = new Set([8]);
    const taken = (n: number) => mine.has(n) || theirs.has(n);
    expect(pickSlot(20, taken, (n) => mine.has(n), 5, () => 0.5)).toBe(10);
    mine.delete(6);
    expect(pickSlot(20, taken, (n) => mine.has(n), 5, () => 0.5)).toBe(6);
    expect(pickSlot(3, () => true, () => true, 1, Math.random)).toBeUndefined();
    expect(freeSlot(4, (n) => n !== 1, 2)).toBe(1);
    expect(homeSlot('gw-a/run1', 1_000)).toBe(782);
  });

  it('given the place the last walk reached, kept until a slot is freed or a number lost, then it picks what a walk from home picks', () => {
    // The gateway keeps `reached` per holder on its view and forgets it when the view frees a slot or marks a
    // number (SlotView.walks); in between, slots are only claimed.
    type Op = { kind: 'pick'; holder: 0 | 1 } | { kind: 'free'; at: number } | { kind: 'lost'; at: number } | { kind: 'claim'; holder: 0 | 1; at: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('pick' as const), holder: fc.constantFrom(0 as const, 1 as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('free' as const), at: fc.nat(999) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('lost' as const), at: fc.nat(999) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('claim' as const), holder: fc.constantFrom(0 as const, 1 as const), at: fc.nat(999) }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.array(op, { minLength: 50, maxLength: 300 }), fc.nat(), (max, ops, seed) => {
        const holderOf = new Map<number, 0 | 1>();
        const marked = new Set<number>();
        const walks = new Map<0 | 1, number>();
        const homes = [homeSlot('gw-1/a', max), homeSlot('gw-2/b', max)];
        const taken = (n: number) => holderOf.has(n) || marked.has(n);
        // The same draws for both picks.
        const randomFrom = (s: number) => () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s / 2 ** 32);
        let draws = seed;
        for (const o of ops) {
          if (o.kind === 'pick') {
            const ours = (n: number) => holderOf.get(n) === o.holder;
            const walk: Walk = { from: walks.get(o.holder) ?? 0 };
            const picked = pickSlot(max, taken, ours, homes[o.holder]!, randomFrom(draws), walk);
            expect(picked).toBe(pickSlot(max, taken, ours, homes[o.holder]!, randomFrom(draws)));
            draws++;
            if (walk.reached !== undefined) walks.set(o.holder, walk.reached);
            if (picked !== undefined) holderOf.set(picked, o.holder);
          } else if (o.kind === 'claim') {
            if (!taken(o.at % max)) holderOf.set(o.at % max, o.holder);
          } else if (o.kind === 'free') {
            if (holderOf.delete(o.at % max)) walks.clear();
          } else {
            // A claim being made on it (counted ours while out) lost its race: marked, and no one's in this view.
            holderOf.delete(o.at % max);
            marked.add(o.at % max);
            walks.clear();
          }
        }
      }),
    );
  });
});
