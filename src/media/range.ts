/**
 * The `Range` header of a media download (RFC 9110 §14), for the store on
 * disk: browsers ask for ranges to play and seek audio and video, and Safari
 * plays nothing from a server that answers them with the whole object. One
 * range of bytes is served; anything else the server may ignore (several
 * ranges, another unit, a range it cannot read) gets the whole object, as
 * S3 does for what it does not read.
 */
export type RangeDecision =
  /** Serve the whole object (200): no Range, or one this server ignores. */
  | { kind: 'whole' }
  /** Serve bytes `start`..`end`, both included (206, `Content-Range: bytes start-end/size`). */
  | { kind: 'part'; start: number; end: number }
  /** No byte of it exists (416, `Content-Range: bytes *\/size`). */
  | { kind: 'unsatisfiable' };

const ONE_RANGE = /^bytes=(\d{0,15})-(\d{0,15})$/i;

/** What to serve of an object of `size` bytes for `header` (`ifRange`: an If-Range was sent, which this server has no validator to meet). */
export function decideRange(header: string | undefined, size: number, ifRange = false): RangeDecision {
  if (header === undefined || ifRange) return { kind: 'whole' };
  const m = ONE_RANGE.exec(header.replace(/\s+/g, ''));
  if (!m) return { kind: 'whole' };
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '' && last === '') return { kind: 'whole' };
  if (first === '') {
    // The last `last` bytes.
    const n = Number(last);
    return n === 0 || size === 0 ? { kind: 'unsatisfiable' } : { kind: 'part', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return { kind: 'whole' }; // not a valid range: ignored
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'part', start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}
