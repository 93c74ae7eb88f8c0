import { RecentSet } from './recent-set';

describe('RecentSet', () => {
  it('given more values than its capacity, then it forgets the oldest first', () => {
    const s = new RecentSet<string>(3);
    for (const v of ['a', 'b', 'c', 'd']) s.add(v);
    expect([s.has('a'), s.has('b'), s.has('c'), s.has('d'), s.size]).toEqual([false, true, true, true, 3]);
    s.add('e');
    expect([s.has('b'), s.has('c'), s.size]).toEqual([false, true, 3]);
  });

  it('given a value added again, then it keeps its first place and takes no second one', () => {
    const s = new RecentSet<string>(2);
    s.add('a');
    s.add('a');
    s.add('b');
    expect([s.has('a'), s.has('b'), s.size]).toEqual([true, true, 2]);
    s.add('c'); // 'a' is still the oldest
    expect([s.has('a'), s.has('b'), s.has('c')]).toEqual([false, true, true]);
  });

  it('given 25,000 values with capacity 10,000, then exactly the last 10,000 are held', () => {
    const s = new RecentSet<number>(10_000);
    for (let i = 0; i < 25_000; i++) s.add(i);
    expect(s.size).toBe(10_000);
    expect([s.has(14_999), s.has(15_000), s.has(24_999)]).toEqual([false, true, true]);
  });

  it('given a value deleted, then it is no longer held and its slot is free for the next one', () => {
    const s = new RecentSet<string>(2);
    s.add('a');
    s.add('b');
    s.delete('a');
    s.delete('never added');
    expect([s.has('a'), s.size]).toEqual([false, 1]);
    s.add('c'); // takes the next slot of the ring: 'b' stays
    expect([s.has('b'), s.has('c'), s.size]).toEqual([true, true, 2]);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new RecentSet(0)).toThrow(/positive integer/);
  });
});
