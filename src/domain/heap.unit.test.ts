import fc from 'fast-check';
import { decideHeapFull, HEAP_RESUME_MARGIN_PERCENT, heapFullMessage } from './heap';

const GiB = 2 ** 30;
const at = (percent: number) => ({ usedBytes: percent * 10, limitBytes: 1000 });

describe('heap rule', () => {
  it('given a heap below the threshold, then new work is taken; at or above it, refused', () => {
    expect(decideHeapFull(false, at(84.9), 85)).toBe(false);
    expect(decideHeapFull(false, at(85), 85)).toBe(true);
    expect(decideHeapFull(false, at(99), 85)).toBe(true);
  });

  it('given a process already refusing, then it takes work again only 5 points below the threshold', () => {
    expect(decideHeapFull(true, at(84), 85)).toBe(true);
    expect(decideHeapFull(true, at(80.1), 85)).toBe(true);
    expect(decideHeapFull(true, at(80), 85)).toBe(false);
    expect(HEAP_RESUME_MARGIN_PERCENT).toBe(5);
  });

  it('given 100 %, then it never refuses, however full the heap', () => {
    fc.assert(fc.property(fc.boolean(), fc.double({ min: 0, max: 200, noNaN: true }), (was, p) => !decideHeapFull(was, at(p), 100)));
  });

  it('never refuses below the resume line nor takes work above the threshold, whatever it did before', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 6, max: 99 }), fc.double({ min: 0, max: 120, noNaN: true }), (was, refuse, p) => {
        const full = decideHeapFull(was, at(p), refuse);
        if (p >= refuse) return full;
        if (p <= refuse - HEAP_RESUME_MARGIN_PERCENT) return !full;
        return full === was;
      }),
    );
  });

  it('tells the client what is full, by how much, and that its operator must act', () => {
    const m = heapFullMessage({ usedBytes: 3.5 * GiB, limitBytes: 4 * GiB });
    expect(m).toContain('3.5 GiB of 4 GiB');
    expect(m).toContain('no new messages');
    expect(m).toContain('MONGODB_URI');
  });
});
