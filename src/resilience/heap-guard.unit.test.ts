import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { HeapReading } from '../domain/heap';
import { StandInHeap } from '../../test/stand-in-heap';
import { HeapGuard, v8Heap, heapReserveBytes } from './heap-guard';

const GiB = 2 ** 30;

describe('HeapGuard', () => {
  it('given a full collection that leaves the heap 90 % full, then it refuses saying why; at 70 % it takes work again', () => {
    const heap = new StandInHeap();
    const changes: boolean[] = [];
    const guard = new HeapGuard(85, (full) => changes.push(full), heap);
    guard.start();
    expect(guard.refusal()).toBeUndefined();

    heap.reading = { usedBytes: 0.9 * 4 * GiB, limitBytes: 4 * GiB };
    expect(guard.refusal()).toBeUndefined(); // read only after a full collection
    heap.collectTo(90);
    expect(guard.refusal()).toContain('3.6 GiB of 4 GiB');

    heap.collectTo(82);
    expect(guard.refusal()).toContain('3.3 GiB of 4 GiB'); // still refusing (above the resume line), with the new figure

    heap.collectTo(70);
    expect(guard.refusal()).toBeUndefined();
    expect(changes).toEqual([true, false]);

    guard.stop();
    expect(heap.watchers).toBe(0);
  });

  it('given 100 %, then it does not even watch', () => {
    const heap = new StandInHeap();
    new HeapGuard(100, undefined, heap).start();
    expect(heap.watchers).toBe(0);
  });

  it("reads this process's V8 heap after a real full collection", async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const seen = new Promise<HeapReading>((resolve) => {
      const stop = v8Heap.afterFullCollection(() => {
        stop();
        resolve(v8Heap.read());
      });
    });
    gc();
    const reading = await seen;
    expect(reading.usedBytes).toBeGreaterThan(0);
    expect(reading.limitBytes).toBeGreaterThan(reading.usedBytes);
    // The old generation's limit: the heap's without the young generation's share.
    expect(reading.limitBytes).toBeLessThan(getHeapStatistics().heap_size_limit);
  });

  it("keeps 5 semi-spaces of the heap limit out of the room for what lives, from the semi-space flag, the last one winning", () => {
    const MiB = 2 ** 20;
    expect(heapReserveBytes([])).toBe(80 * MiB);
    expect(heapReserveBytes(['--max-semi-space-size=64', 'dist/src/main.js'])).toBe(320 * MiB);
    expect(heapReserveBytes(['--max_semi_space_size', '32'])).toBe(160 * MiB);
    expect(heapReserveBytes(['--max-semi-space-size=8', '--heap-growing-percent=100', '--max-semi-space-size=64'])).toBe(320 * MiB);
    expect(heapReserveBytes(['--max-semi-space-size=nonsense'])).toBe(80 * MiB);
  });
});
