/**
 * A map that remembers its last `capacity` distinct keys: setting one more
 * forgets the oldest. Like RecentSet (./recent-set.ts), the oldest is found in
 * a ring, not through `map.keys().next()`, which walks the holes V8 leaves at
 * the front of a Map after deletions. A key set again keeps its place; a
 * deleted key frees its slot.
 */
export class RecentMap<K, V> {
  private readonly map = new Map<K, { value: V; slot: number }>();
  private readonly ring: (K | undefined)[];
  private next = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`RecentMap capacity must be a positive integer, got ${capacity}`);
    this.ring = new Array<K | undefined>(capacity);
  }

  get size(): number {
    return this.map.size;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  get(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  set(key: K, value: V): void {
    const held = this.map.get(key);
    if (held) {
      held.value = value;
      return;
    }
    const oldest = this.ring[this.next];
    if (oldest !== undefined) this.map.delete(oldest);
    this.ring[this.next] = key;
    this.map.set(key, { value, slot: this.next });
    this.next = (this.next + 1) % this.capacity;
  }

  delete(key: K): void {
    const held = this.map.get(key);
    if (!held) return;
    this.map.delete(key);
    this.ring[held.slot] = undefined;
  }

  clear(): void {
    this.map.clear();
    this.ring.fill(undefined);
    this.next = 0;
  }
}
