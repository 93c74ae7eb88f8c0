import fc from 'fast-check';
import { decideRange } from './range';

describe('decideRange (Range of a media download, RFC 9110)', () => {
  it.each([
    [undefined, { kind: 'whole' }],
    ['bytes=0-1', { kind: 'part', start: 0, end: 1 }],
    ['bytes=100-199', { kind: 'part', start: 100, end: 199 }],
    ['bytes=990-', { kind: 'part', start: 990, end: 999 }],
    ['bytes=0-', { kind: 'part', start: 0, end: 999 }],
    ['bytes=-10', { kind: 'part', start: 990, end: 999 }],
    ['bytes=-5000', { kind: 'part', start: 0, end: 999 }],
    ['bytes=995-5000', { kind: 'part', start: 995, end: 999 }],
    ['Bytes = 3 - 4', { kind: 'part', start: 3, end: 4 }],
    ['bytes=1000-', { kind: 'unsatisfiable' }],
    ['bytes=1000-2000', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    // Ignored: the whole object.
    ['bytes=5-1', { kind: 'whole' }],
    ['bytes=0-1,5-6', { kind: 'whole' }],
    ['items=0-1', { kind: 'whole' }],
    ['bytes=', { kind: 'whole' }],
    ['bytes=-', { kind: 'whole' }],
    ['bytes=abc', { kind: 'whole' }],
    ['bytes=99999999999999999999-', { kind: 'whole' }],
  ])('%s of 1,000 bytes: %j', (header, decision) => {
    expect(decideRange(header, 1000)).toEqual(decision);
  });

  it('ignores the range when If-Range asks for a version it cannot vouch for', () => {
    expect(decideRange('bytes=0-1', 1000, true)).toEqual({ kind: 'whole' });
  });

  it('has nothing to give of an empty object', () => {
    expect(decideRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=-1', 0)).toEqual({ kind: 'unsatisfiable' });
  });

  it('never serves a byte outside the object, nor an empty part', () => {
    fc.assert(
      fc.property(fc.nat(10_000), fc.string({ maxLength: 30 }), fc.option(fc.nat(20_000)), fc.option(fc.nat(20_000)), (size, junk, a, b) => {
        for (const header of [junk, `bytes=${a ?? ''}-${b ?? ''}`]) {
          const d = decideRange(header, size);
          if (d.kind === 'part') {
            expect(d.start).toBeGreaterThanOrEqual(0);
            expect(d.end).toBeLessThan(size);
            expect(d.start).toBeLessThanOrEqual(d.end);
          }
        }
      }),
    );
  });
});
