import type { HeapReading } from '../src/domain/heap';
import type { HeapSource } from '../src/resilience/heap-guard';

/** A heap whose readings and full collections a test decides (startTestApp's `heap` override; the real one: src/resilience/heap-guard.unit.test.ts). */
export class StandInHeap implements HeapSource {
  reading: HeapReading = { usedBytes: 0.2 * 4 * 2 ** 30, limitBytes: 4 * 2 ** 30 };
  private readonly listeners = new Set<() => void>();

  read(): HeapReading {
    return this.reading;
  }

  afterFullCollection(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** How many guards watch its collections. */
  get watchers(): number {
    return this.listeners.size;
  }

  /** A full collection that leaves `percent` % of the room in use. */
  collectTo(percent: number): void {
    this.reading = { usedBytes: (percent / 100) * this.reading.limitBytes, limitBytes: this.reading.limitBytes };
    for (const l of this.listeners) l();
  }
}
