import { RecentMap } from './recent-map';

describe('RecentMap', () => {
  it('forgets the oldest key beyond its capacity', () => {
    const m = new RecentMap<string, number>(3);
    for (const [i, k] of ['a', 'b', 'c', 'd'].entries()) m.set(k, i);
    expect([m.has('a'), m.get('b'), m.get('c'), m.get('d'), m.size]).toEqual([false, 1, 2, 3, 3]);
  });

  it('keeps a key set again in its place, with the new value', () => {
    const m = new RecentMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    m.set('a', 3);
    m.set('c', 4); // evicts a: set first, and setting it again did not move it
    expect([m.has('a'), m.get('b'), m.get('c')]).toEqual([false, 2, 4]);
  });

  it('a deleted key frees its slot and is not evicted later under a new entry of the same key', () => {
    const m = new RecentMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    m.delete('a');
    m.set('a', 3); // takes the next slot (a's old one): the ring holds a once
    m.set('c', 4); // evicts b
    expect([m.get('a'), m.has('b'), m.get('c'), m.size]).toEqual([3, false, 4, 2]);
  });

  it('clear forgets everything', () => {
    const m = new RecentMap<number, null>(2);
    m.set(1, null);
    m.clear();
    m.set(2, null);
    m.set(3, null);
    expect([m.has(1), m.has(2), m.has(3), m.get(2)]).toEqual([false, true, true, null]);
  });

  it('stays cheap at 10,000 entries under constant churn', () => {
    const m = new RecentMap<number, number>(10_000);
    for (let i = 0; i < 100_000; i++) m.set(i, i);
    expect(m.size).toBe(10_000);
    expect(m.has(89_999)).toBe(false);
    expect(m.get(99_999)).toBe(99_999);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new RecentMap(0)).toThrow(/positive integer/);
  });
});
