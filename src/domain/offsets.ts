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

export interface OffsetState {
  /** One past the highest offset seen (tracked or skipped). */
  readonly next: number;
  /** Offsets handed to a handler and not yet completed, ascending. */
  readonly pending: readonly number[];
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
  return { next: nextOffset, pending: [] };
}

/** The offset to resume from: the oldest unfinished one, or everything seen. */
export function committableOf(state: OffsetState): number {
  return state.pending.length > 0 ? state.pending[0] : state.next;
}

/** An event was handed to a handler. Offsets must be tracked in increasing order. */
export function track(state: OffsetState, offset: number): OffsetUpdate {
  checkOffset(offset);
  if (offset < state.next) {
    throw new OffsetError(`offset ${offset} tracked out of order (expected >= ${state.next})`);
  }
  return update({ next: offset + 1, pending: [...state.pending, offset] });
}

/**
 * An offset was seen and needs no handling: it counts as done. Skipping an
 * offset below `next` changes nothing (it was already accounted for).
 */
export function skip(state: OffsetState, offset: number): OffsetUpdate {
  checkOffset(offset);
  if (offset < state.next) return update(state);
  return update({ next: offset + 1, pending: state.pending });
}

/** The handler of a tracked offset finished. */
export function complete(state: OffsetState, offset: number): OffsetUpdate {
  checkOffset(offset);
  const i = indexOf(state.pending, offset);
  if (i < 0) throw new OffsetError(`offset ${offset} completed but not in flight`);
  return update({ next: state.next, pending: [...state.pending.slice(0, i), ...state.pending.slice(i + 1)] });
}

/** Binary search: pending is ascending because offsets are tracked in order. */
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
