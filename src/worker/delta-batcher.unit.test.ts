// DeltaBatcher: how a reply's streamed words become ResponseDelta messages.
import fc from 'fast-check';
import { DeltaBatcher } from './delta-batcher';

describe('DeltaBatcher', () => {
  // jest's fake clock: Date.now moves as the timers run, each timer firing at its own time.
  const clock = () => Date.now();
  const advance = (ms: number) => jest.advanceTimersByTime(ms);

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_000 });
  });
  afterEach(() => jest.useRealTimers());

  it('without an interval, sends the words of one turn as one delta, each turn its own', () => {
    const sent: string[] = [];
    const b = new DeltaBatcher((t) => sent.push(t), 0, clock);
    b.push('one');
    b.push(' two');
    expect(sent).toEqual([]);
    jest.runOnlyPendingTimers();
    expect(sent).toEqual(['one two']);
    b.push(' three');
    jest.runOnlyPendingTimers();
    expect(sent).toEqual(['one two', ' three']);
  });

  it('with an interval, sends the first words at once and gathers what follows until the interval since the last delta is up', () => {
    const sent: Array<[number, string]> = [];
    const b = new DeltaBatcher((t) => sent.push([Date.now(), t]), 100, clock);
    b.push('one');
    advance(0);
    expect(sent).toEqual([[1_000, 'one']]);
    advance(25);
    b.push(' two');
    advance(25);
    b.push(' three');
    advance(49);
    expect(sent).toHaveLength(1); // 99 ms since the first
    advance(1);
    expect(sent).toEqual([[1_000, 'one'], [1_100, ' two three']]);
    // A pause longer than the interval: the next words go at once again.
    advance(500);
    b.push(' four');
    advance(0);
    expect(sent.at(-1)).toEqual([1_600, ' four']);
  });

  it('flush sends what waits at once and the interval counts from it; discard drops it', () => {
    const sent: string[] = [];
    const b = new DeltaBatcher((t) => sent.push(t), 100, clock);
    b.push('one');
    advance(0);
    b.push(' two');
    b.flush();
    expect(sent).toEqual(['one', ' two']);
    expect(b.sent).toBe(true);
    b.push(' three');
    b.discard();
    advance(1_000);
    expect(sent).toEqual(['one', ' two']);
    expect(b.streamed).toBe(true);
  });

  it('held, sends nothing, flush included; released, sends what it gathered at once, as one delta, and streams on', () => {
    const sent: string[] = [];
    const b = new DeltaBatcher((t) => sent.push(t), 100, clock);
    b.hold();
    b.push('one ');
    advance(500);
    b.push('two ');
    b.flush();
    advance(500);
    expect(sent).toEqual([]);
    expect([b.streamed, b.sent]).toEqual([false, false]);
    b.release();
    expect(b.streamed).toBe(true);
    advance(0);
    expect(sent).toEqual(['one two ']);
    b.push('three');
    advance(99);
    expect(sent).toEqual(['one two ']);
    advance(1);
    expect(sent).toEqual(['one two ', 'three']);
  });

  it('held, discard drops the words, and a release with nothing gathered sends nothing', () => {
    const sent: string[] = [];
    const b = new DeltaBatcher((t) => sent.push(t), 0, clock);
    b.hold();
    b.push('one');
    b.discard();
    b.release();
    advance(10);
    expect(sent).toEqual([]);
    expect(b.streamed).toBe(false);
  });

  it('whatever the words and their timing, the deltas add up to the words, in order, never two within one interval', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 300 }), word: fc.string({ minLength: 1, maxLength: 5 }) }), { minLength: 1, maxLength: 40 }),
        (interval, words) => {
          const sent: Array<[number, string]> = [];
          const b = new DeltaBatcher((t) => sent.push([Date.now(), t]), interval, clock);
          const pushedAt: number[] = [];
          for (const { gap, word } of words) {
            advance(gap);
            b.push(word);
            pushedAt.push(Date.now());
          }
          advance(interval + 1);
          expect(sent.map(([, t]) => t).join('')).toBe(words.map((w) => w.word).join(''));
          for (let i = 1; i < sent.length; i++) expect(sent[i]![0] - sent[i - 1]![0]).toBeGreaterThanOrEqual(interval);
          // No word waits longer than the interval: the delta carrying its last character went within it.
          let end = 0;
          words.forEach(({ word }, i) => {
            end += word.length;
            let carried = 0;
            const delta = sent.find(([, t]) => (carried += t.length) >= end)!;
            expect(delta[0] - pushedAt[i]!).toBeLessThanOrEqual(interval);
          });
        },
      ),
      { numRuns: 200 },
    );
  });
});
