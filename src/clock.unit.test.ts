import { steadyClock } from './clock';

describe('steadyClock', () => {
  it('reads as the wall clock did when made, moves with the monotonic clock, and not with steps of the wall clock', () => {
    let wall = 1_800_000_000_000;
    let mono = 5_000.25;
    const steady = steadyClock(() => wall, () => mono);
    expect(steady()).toBe(1_800_000_000_000);
    mono += 1_500;
    wall += 1_500;
    expect(steady()).toBe(1_800_000_001_500);
    wall += 3_600_000; // date -s an hour ahead
    mono += 10;
    expect(steady()).toBe(1_800_000_001_510);
    wall -= 7_200_000; // and two hours back
    mono += 10;
    expect(steady()).toBe(1_800_000_001_520);
  });

  it('gives whole milliseconds that never go back (they go into int64 fields)', () => {
    let mono = 0.4;
    const steady = steadyClock(() => 1_000, () => mono);
    const seen: number[] = [];
    for (let i = 0; i < 50; i++) {
      mono += 0.37;
      seen.push(steady());
    }
    expect(seen.every(Number.isInteger)).toBe(true);
    expect(seen.every((v, i) => i === 0 || v >= seen[i - 1]!)).toBe(true);
  });

  it('runs on the process clocks by default', async () => {
    const steady = steadyClock();
    expect(Math.abs(steady() - Date.now())).toBeLessThan(50);
    const a = steady();
    await new Promise((r) => setTimeout(r, 30));
    expect(steady() - a).toBeGreaterThanOrEqual(25);
  });
});
