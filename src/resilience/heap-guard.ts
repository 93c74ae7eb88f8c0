import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { decideHeapFull, heapFullMessage, type HeapReading } from '../domain/heap';

/** Where heap readings come from, and when a reading means what is live. */
export interface HeapSource {
  read(): HeapReading;
  /** Calls `listener` after each full (mark-compact) collection, when the heap holds what is live; returns the unsubscribe. */
  afterFullCollection(listener: () => void): () => void;
}

/** V8's semi-space when no flag sets it (Node 20, 64-bit). */
const DEFAULT_SEMI_SPACE_MB = 16;

/** `--max-semi-space-size` in bytes, from NODE_OPTIONS or the command line, the later one winning as in node. */
export function semiSpaceBytes(flags: readonly string[]): number {
  let mb = DEFAULT_SEMI_SPACE_MB;
  for (let i = 0; i < flags.length; i++) {
    const m = /^--max[-_]semi[-_]space[-_]size(?:=(\d+))?$/.exec(flags[i]!);
    if (!m) continue;
    const value = Number(m[1] ?? flags[i + 1]);
    if (Number.isFinite(value) && value > 0) mb = value;
  }
  return mb * 2 ** 20;
}

/**
 * What the heap limit holds beyond room for what lives: V8's heap_size_limit
 * is the old generation's limit plus the young generation's (3 semi-spaces),
 * and the old generation keeps room for what a scavenge may promote into it
 * at once (2 more). Measured: with `--max-old-space-size=300` and 64 MB
 * semi-spaces (a 492 MB limit), V8 ran a full collection every ~200 ms from
 * ~180 MB in use on, and the server's CPU per message went ×5.
 */
export function heapReserveBytes(flags: readonly string[]): number {
  return 5 * semiSpaceBytes(flags);
}

const RESERVE = heapReserveBytes([...(process.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean), ...process.execArgv]);

/**
 * This process's V8 heap: what the old generation holds (where what outlives
 * a few collections lives, the read models among it) against the room it
 * has for that (see heapReserveBytes). perf_hooks' `gc` entries say when a
 * full collection ended.
 */
export const v8Heap: HeapSource = {
  read() {
    const s = getHeapStatistics();
    let young = 0;
    for (const space of getHeapSpaceStatistics()) {
      if (space.space_name === 'new_space' || space.space_name === 'new_large_object_space') young += space.space_used_size;
    }
    return { usedBytes: s.used_heap_size - young, limitBytes: s.heap_size_limit - RESERVE };
  },
  afterFullCollection(listener) {
    const observer = new PerformanceObserver((list) => {
      if (list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) listener();
    });
    observer.observe({ entryTypes: ['gc'] });
    return () => observer.disconnect();
  },
};

/**
 * Applies the heap rule (src/domain/heap.ts) to this process: read after each
 * full collection only, so garbage not yet collected never passes for a full
 * heap. Started before the read models replay the log, so a replay that
 * fills the heap is seen by the collections it causes.
 */
export class HeapGuard {
  private full = false;
  private last?: HeapReading;
  private unsubscribe?: () => void;

  constructor(
    private readonly refusePercent: number,
    private readonly onChange: (full: boolean, reading: HeapReading) => void = () => undefined,
    private readonly source: HeapSource = v8Heap,
  ) {}

  start(): void {
    if (this.refusePercent >= 100 || this.unsubscribe) return;
    this.unsubscribe = this.source.afterFullCollection(() => this.check());
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Whether new messages and connections are refused now. */
  get refusing(): boolean {
    return this.full;
  }

  /** Why new messages and connections are refused now (what the client is told), or undefined. */
  refusal(): string | undefined {
    return this.full && this.last ? heapFullMessage(this.last) : undefined;
  }

  private check(): void {
    const reading = this.source.read();
    this.last = reading;
    const full = decideHeapFull(this.full, reading, this.refusePercent);
    if (full === this.full) return;
    this.full = full;
    this.onChange(full, reading);
  }
}
