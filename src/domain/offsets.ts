/**
 * Offset tracking for "commit only past finished messages" (kafkajs style).
 *
 * A consumer hands events of one partition to handlers in offset order but
 * they may finish out of order. The committable offset is the lowest offset
 * such that every offset before it is done: the offset to resume from after a
 * crash. Committing anything higher could lose an unfinished message.
 *
 * Offsets that are seen but never handed to a handler (other topics sharing
 * the log, events already processed) are `skip`ped: they count as done.
 *
 * Pure and immutable: no time, no IO. Misuse (going backwards, completing an
 * offset that is not in flight) is a bug in the caller and throws.
 */

/**
 * Offsets handed out and not completed, ascending, in chunks of at most
 * CHUNK: an update copies one chunk and the list of chunks (~n/32 + 32
 * values), not every offset in flight. With ~1,000 in flight at saturation,
 * whole-array copies were a third of the server's allocation (issue 15).
 */
type Chunk = readonly number[];
const CHUNK = 32;

export interface OffsetState {
  /** One past the highest offset seen (tracked or skipped). */
  readonly next: number;
  /** Offsets handed to a handler and not yet completed: ascending, chunked (see pendingOf). */
  readonly chunks: readonly Chunk[];
}

export interface OffsetUpdate {
  readonly state: OffsetState;
  /** Every offset below this one is done: the next offset to resume from. */
  readonly committable: number;
}

export class OffsetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OffsetError';
  }
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new OffsetError(`invalid offset ${offset}`);
}

const update = (state: OffsetState): OffsetUpdate => ({ state, committable: committableOf(state) });

/** Starts tracking at `nextOffset`: everything before it is already done. */
export function initialOffsets(nextOffset: number): OffsetState {
  checkOffset(nextOffset);
  return { next: nextOffset, chunks: [] };
}

/** The offsets in flight, ascending. */
export function pendingOf(state: OffsetState): number[] {
  return state.chunks.flat();
}

/** The offset to resume from: the oldest unfinished one, or everything seen. */
export function committableOf(state: OffsetState): number {
  return state.chunks.length > 0 ? state.chunks[0][0] : state.next;
}

/** An event was handed to a handler. Offsets must be tracked in increasing order. */
export function track(state: OffsetState, offset: number): OffsetUpdate {
  checkOffset(offset);
  if (offset < state.next) {
    throw new OffsetError(`offset ${offset} tracked out of order (expected >= ${state.next})`);
  }
  const { chunks } = state;
  const last = chunks[chunks.length - 1];
  const next = last && last.length < CHUNK ? [...chunks.slice(0, -1), [...last, offset]] : [...chunks, [offset]];
  return update({ next: offset + 1, chunks: next });
}

/**
 * An offset was seen and needs no handling: it counts as done. Skipping an
 * offset below `next` changes nothing (it was already accounted for).
 */
export function skip(state: OffsetState, offset: number): OffsetUpdate {
  checkOffset(offset);
  if (offset < state.next) return update(state);
  return update({ next: offset + 1, chunks: state.chunks });
}

/** The handler of a tracked offset finished. */
export function complete(state: OffsetState, offset: number): OffsetUpdate {
  checkOffset(offset);
  const { chunks } = state;
  const c = chunkOf(chunks, offset);
  const i = c < 0 ? -1 : indexOf(chunks[c], offset);
  if (i < 0) throw new OffsetError(`offset ${offset} completed but not in flight`);
  const chunk = chunks[c];
  const rest = chunk.length > 1 ? [[...chunk.slice(0, i), ...chunk.slice(i + 1)]] : [];
  return update({ next: state.next, chunks: [...chunks.slice(0, c), ...rest, ...chunks.slice(c + 1)] });
}

/** The chunk whose range holds `offset` (-1: none): chunks are ascending and do not overlap. */
function chunkOf(chunks: readonly Chunk[], offset: number): number {
  let lo = 0;
  let hi = chunks.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = chunks[mid];
    if (offset < c[0]) hi = mid - 1;
    else if (offset > c[c.length - 1]) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** Binary search: a chunk is ascending because offsets are tracked in order. */
function indexOf(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] === value) return mid;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * The same tracking as the pure functions above, for a consumer's hot path
 * (the embedded log's consumers hand out every event of the log): one object
 * changed in place, no allocation per event once its rings are big enough.
 * At saturation the pure tracker's copies and update objects were ~11 % of
 * the event loop's allocation (issue 15). `offsets.unit.test.ts` holds it to
 * the pure functions on random histories: same committable offset, same
 * offsets in flight, same refusals.
 */
export class OffsetTracker {
  private seen: number;
  /** Offsets in flight, ascending, from `head` for `size` slots of a ring; `done` marks those completed out of order. */
  private offsets = new Float64Array(64);
  private done = new Uint8Array(64);
  private head = 0;
  private size = 0;

  constructor(nextOffset: number) {
    checkOffset(nextOffset);
    this.seen = nextOffset;
  }

  /** One past the highest offset seen. */
  get next(): number {
    return this.seen;
  }

  /** The offset to resume from: the oldest unfinished one, or everything seen. */
  get committable(): number {
    return this.size > 0 ? this.offsets[this.head] : this.seen;
  }

  /** The offsets in flight, ascending. */
  pending(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) {
      const at = (this.head + i) & (this.offsets.length - 1);
      if (!this.done[at]) out.push(this.offsets[at]);
    }
    return out;
  }

  /** An event was handed to a handler (see `track`). */
  track(offset: number): void {
    checkOffset(offset);
    if (offset < this.seen) throw new OffsetError(`offset ${offset} tracked out of order (expected >= ${this.seen})`);
    if (this.size === this.offsets.length) this.grow();
    const at = (this.head + this.size) & (this.offsets.length - 1);
    this.offsets[at] = offset;
    this.done[at] = 0;
    this.size++;
    this.seen = offset + 1;
  }

  /** An offset needs no handling (see `skip`). */
  skip(offset: number): void {
    checkOffset(offset);
    if (offset >= this.seen) this.seen = offset + 1;
  }

  /** The handler of a tracked offset finished (see `complete`). */
  complete(offset: number): void {
    checkOffset(offset);
    const mask = this.offsets.length - 1;
    // Binary search over the ring's ascending slots.
    let lo = 0;
    let hi = this.size - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.offsets[(this.head + mid) & mask];
      if (v === offset) {
        found = (this.head + mid) & mask;
        break;
      }
      if (v < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    if (found < 0 || this.done[found]) throw new OffsetError(`offset ${offset} completed but not in flight`);
    this.done[found] = 1;
    // Completed slots at the head are dropped: the commit moves past them.
    while (this.size > 0 && this.done[this.head]) {
      this.head = (this.head + 1) & mask;
      this.size--;
    }
  }

  private grow(): void {
    const n = this.offsets.length;
    const offsets = new Float64Array(n * 2);
    const done = new Uint8Array(n * 2);
    for (let i = 0; i < this.size; i++) {
      offsets[i] = this.offsets[(this.head + i) & (n - 1)];
      done[i] = this.done[(this.head + i) & (n - 1)];
    }
    this.offsets = offsets;
    this.done = done;
    this.head = 0;
  }
}
