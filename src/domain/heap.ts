import { formatBytes } from './format-bytes';

/**
 * Memory as a pure decider: a process whose heap, right after a full
 * collection, fills `refusePercent` % of its room takes no new work; it takes
 * it again once that reading falls 5 points below. Left to grow, a full heap
 * first makes V8 collect without end (the event loop stalls for hundreds of
 * milliseconds at a time), then ends the process: with the embedded read
 * models, which keep every message in memory, that is where steady traffic
 * leads. Refusing new messages early keeps the process serving what it
 * accepted, its history and its health.
 */
export interface HeapReading {
  /** Bytes that live on the heap, read right after a full collection (not garbage not yet collected). */
  readonly usedBytes: number;
  /** The room the heap has for them before collecting no longer frees enough (see src/resilience/heap-guard.ts). */
  readonly limitBytes: number;
}

/** How far below the refusal threshold a reading must fall before new work is taken again. */
export const HEAP_RESUME_MARGIN_PERCENT = 5;

/** Whether the process refuses new work after `reading`, given whether it refused before. 100 % never refuses. */
export function decideHeapFull(wasFull: boolean, reading: HeapReading, refusePercent: number): boolean {
  if (refusePercent >= 100 || reading.limitBytes <= 0) return false;
  // In whole bytes times whole percents: no rounding decides a reading on the line.
  const used = 100 * reading.usedBytes;
  return wasFull ? used > (refusePercent - HEAP_RESUME_MARGIN_PERCENT) * reading.limitBytes : used >= refusePercent * reading.limitBytes;
}

/** What a refused client is told: why, and that retrying soon will not help (the operator must act). */
export function heapFullMessage(reading: HeapReading): string {
  return (
    `the server's memory is nearly full (${formatBytes(reading.usedBytes)} of ${formatBytes(reading.limitBytes)} in use after a full collection): ` +
    'it takes no new messages or connections; messages already accepted are still answered and history still reads. ' +
    'Its operator must give it more memory (on the embedded default, the history can also move to MongoDB: MONGODB_URI)'
  );
}
