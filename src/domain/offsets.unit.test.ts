import fc from 'fast-check';
import { committableOf, complete, initialOffsets, OffsetError, OffsetTracker, pendingOf, skip, track, type OffsetState } from './offsets';

/** Tracks the given offsets in order, starting from `start`. */
const tracked = (start: number, ...offsets: number[]): OffsetState =>
  offsets.reduce((s, o) => track(s, o).state, initialOffsets(start));

describe('offset tracker', () => {
  it('given a fresh tracker, then everything before the start is committable', () => {
    const s = initialOffsets(7);
    expect(committableOf(s)).toBe(7);
    expect([s.next, pendingOf(s)]).toEqual([7, []]);
  });

  it('given a negative or fractional start, then it throws', () => {
    expect(() => initialOffsets(-1)).toThrow(OffsetError);
    expect(() => initialOffsets(1.5)).toThrow(/invalid offset/);
  });

  it('given offsets in flight, when nothing is done, then the oldest in flight is committable', () => {
    const r = track(tracked(0, 0), 1);
    expect(r.committable).toBe(0);
    expect(pendingOf(r.state)).toEqual([0, 1]);
  });

  it('given 0,1,2 in flight, when 0 completes, then 1 is committable', () => {
    expect(complete(tracked(0, 0, 1, 2), 0).committable).toBe(1);
  });

  it('given 0,1,2 in flight, when 2 then 1 complete out of order, then 0 still holds the commit back', () => {
    let s = tracked(0, 0, 1, 2);
    s = complete(s, 2).state;
    const r = complete(s, 1);
    expect(r.committable).toBe(0);
    expect(pendingOf(r.state)).toEqual([0]);
  });

  it('given only 0 left in flight, when it completes, then everything seen is committable', () => {
    const s = complete(complete(tracked(0, 0, 1, 2), 2).state, 1).state;
    expect(complete(s, 0).committable).toBe(3);
  });

  it('given a gap between tracked offsets, then the gap counts as done', () => {
    const s = tracked(0, 0, 5);
    expect(complete(s, 0).committable).toBe(5);
    expect(complete(complete(s, 0).state, 5).committable).toBe(6);
  });

  it('given an offset below the last tracked one, when tracked, then it throws', () => {
    expect(() => track(tracked(0, 3), 3)).toThrow(/out of order/);
    expect(() => track(initialOffsets(10), 9)).toThrow(OffsetError);
  });

  it('given an untracked offset, when completed, then it is rejected', () => {
    expect(() => complete(tracked(0, 0, 2), 1)).toThrow(/not in flight/);
    expect(() => complete(initialOffsets(0), 0)).toThrow(OffsetError);
  });

  it('given an offset already completed, when completed again, then it is rejected', () => {
    const s = complete(tracked(0, 0, 1), 0).state;
    expect(() => complete(s, 0)).toThrow(/not in flight/);
  });

  it('given nothing in flight, when an offset is skipped, then the commit moves past it', () => {
    const r = skip(initialOffsets(0), 4);
    expect(r.committable).toBe(5);
    expect([r.state.next, pendingOf(r.state)]).toEqual([5, []]);
  });

  it('given an offset in flight, when a later one is skipped, then the commit waits for the one in flight', () => {
    const r = skip(tracked(0, 0), 1);
    expect(r.committable).toBe(0);
    expect(complete(r.state, 0).committable).toBe(2);
  });

  it('given an offset already seen, when skipped, then nothing changes', () => {
    const s = tracked(0, 0, 3);
    const r = skip(s, 2);
    expect(r.state).toBe(s);
    expect(r.committable).toBe(0);
  });

  it('given any state, then updates never mutate it', () => {
    const s = tracked(0, 0, 1);
    const copy = JSON.parse(JSON.stringify(s));
    complete(s, 1);
    track(s, 2);
    skip(s, 9);
    expect(s).toEqual(copy);
  });

  it('given any run of tracks, skips and completions in any order, then it agrees with a plain sorted list and never changes an earlier state', () => {
    // The model: the offsets in flight as a plain array, `next` as a number.
    type Op = { kind: 'track' | 'skip'; gap: number } | { kind: 'complete'; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('track' as const), gap: fc.nat(3) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('skip' as const), gap: fc.nat(3) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('complete' as const), pick: fc.nat() }) },
    );
    fc.assert(
      fc.property(fc.nat(1000), fc.array(op, { maxLength: 400 }), (start, ops) => {
        let state = initialOffsets(start);
        let model = { next: start, pending: [] as number[] };
        const history: [OffsetState, number[]][] = [];
        for (const o of ops) {
          history.push([state, [...model.pending]]);
          if (o.kind === 'complete') {
            if (model.pending.length === 0) continue;
            const offset = model.pending[o.pick % model.pending.length];
            state = complete(state, offset).state;
            model = { next: model.next, pending: model.pending.filter((x) => x !== offset) };
          } else {
            const offset = model.next + o.gap;
            state = (o.kind === 'track' ? track(state, offset) : skip(state, offset)).state;
            model = { next: offset + 1, pending: o.kind === 'track' ? [...model.pending, offset] : model.pending };
          }
          expect(pendingOf(state)).toEqual(model.pending);
          expect(state.next).toBe(model.next);
          expect(committableOf(state)).toBe(model.pending[0] ?? model.next);
        }
        for (const [old, pending] of history) expect(pendingOf(old)).toEqual(pending);
      }),
      { numRuns: 200 },
    );
  });

  describe('OffsetTracker (in place, for hot paths)', () => {
    // Completed again: preferably one completed out of order, still behind the oldest in flight.
    const twice = (completed: number[], committable: number) => completed.filter((x) => x > committable).at(-1) ?? completed.at(-1) ?? -1;

    it('given any run of tracks, skips and completions (valid or not), then it agrees with the pure tracker: offsets in flight, committable, refusals', () => {
      type Op = { kind: 'track' | 'skip'; gap: number } | { kind: 'complete'; pick: number } | { kind: 'bad'; what: 'old-track' | 'unknown' | 'twice' | 'negative' };
      const op: fc.Arbitrary<Op> = fc.oneof(
        { weight: 4, arbitrary: fc.record({ kind: fc.constant('track' as const), gap: fc.nat(3) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('skip' as const), gap: fc.integer({ min: -2, max: 3 }) }) },
        { weight: 4, arbitrary: fc.record({ kind: fc.constant('complete' as const), pick: fc.nat() }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('bad' as const), what: fc.constantFrom('old-track' as const, 'unknown' as const, 'twice' as const, 'negative' as const) }) },
      );
      fc.assert(
        fc.property(fc.nat(1000), fc.array(op, { maxLength: 600 }), (start, ops) => {
          let pure = initialOffsets(start);
          const mine = new OffsetTracker(start);
          const completed: number[] = [];
          for (const o of ops) {
            const pending = pendingOf(pure);
            let offset: number;
            let apply: 'track' | 'skip' | 'complete';
            if (o.kind === 'complete') {
              if (pending.length === 0) continue;
              offset = pending[o.pick % pending.length];
              apply = 'complete';
            } else if (o.kind === 'bad') {
              offset = o.what === 'old-track' ? pure.next - 1 : o.what === 'unknown' ? pure.next + 5 : o.what === 'twice' ? twice(completed, committableOf(pure)) : -1;
              apply = o.what === 'old-track' ? 'track' : 'complete';
            } else {
              offset = Math.max(0, pure.next + o.gap);
              apply = o.kind;
            }
            let pureErr: unknown;
            let mineErr: unknown;
            try {
              pure = (apply === 'track' ? track(pure, offset) : apply === 'skip' ? skip(pure, offset) : complete(pure, offset)).state;
            } catch (err) {
              pureErr = err;
            }
            try {
              mine[apply](offset);
            } catch (err) {
              mineErr = err;
            }
            expect(mineErr instanceof OffsetError).toBe(pureErr instanceof OffsetError);
            expect(mineErr === undefined).toBe(pureErr === undefined);
            if (apply === 'complete' && pureErr === undefined) completed.push(offset);
            expect(mine.pending()).toEqual(pendingOf(pure));
            expect(mine.next).toBe(pure.next);
            expect(mine.committable).toBe(committableOf(pure));
          }
        }),
        { numRuns: 300 },
      );
    });

    it('given 10,000 offsets in flight (its ring grown many times), when they complete from the newest down, then the oldest holds the commit until the end', () => {
      const t = new OffsetTracker(5);
      for (let o = 5; o < 10_005; o++) t.track(o);
      for (let o = 10_004; o > 5; o--) t.complete(o);
      expect([t.committable, t.pending()]).toEqual([5, [5]]);
      t.complete(5);
      expect([t.committable, t.pending()]).toEqual([10_005, []]);
    });

    it('given a negative or fractional start, then it throws, as the pure tracker does', () => {
      expect(() => new OffsetTracker(-1)).toThrow(OffsetError);
      expect(() => new OffsetTracker(0.5)).toThrow(/invalid offset/);
    });
  });
});
