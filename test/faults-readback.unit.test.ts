import { readToStableEnd, type Ends } from './faults-readback';

/** A reader that reads `perPoll` events of each partition every time it is asked how far it got, up to what the log holds. */
function reader(log: Map<number, number>, perPoll = 50) {
  const read = new Map<number, number>();
  return () => {
    for (const [p, end] of log) read.set(p, Math.min(end, (read.get(p) ?? 0) + perPoll));
    return read as Ends;
  };
}

describe('the fault matrix read-back reads to the log\'s real end', () => {
  it('given end offsets that first come back short (a broker just restarted), when the log is read back, then it reads to the end a later fetch reports', async () => {
    const log = new Map([[0, 400], [9, 657]]);
    // The first answer says partition 9 ends at 587 (what the 18:53 run's read-back stopped at); later ones say 657.
    const answers = [new Map([[0, 400], [9, 587]]), log, log];
    let n = 0;
    const end = await readToStableEnd({ endOffsets: async () => answers[Math.min(n++, answers.length - 1)]!, readUpTo: reader(log), timeoutMs: 5_000, pollMs: 1 });
    expect(end.short).toEqual([]);
    expect(end.last).toEqual({ 0: 400, 9: 657 });
    expect(end.moved).toEqual([{ partition: 9, first: 587, last: 657 }]);
    expect(end.fetches).toBe(3);
  });

  it('given a reader that never gets past an offset, when the time is up, then the read-back says where it stopped instead of passing for the whole log', async () => {
    const log = new Map([[3, 120]]);
    const stuck = () => new Map([[3, 100]]) as Ends;
    const end = await readToStableEnd({ endOffsets: async () => log, readUpTo: stuck, timeoutMs: 50, pollMs: 5 });
    expect(end.short).toEqual([{ partition: 3, read: 100, end: 120 }]);
    expect(end.moved).toEqual([]);
  });

  it('given a log that does not move, when it is read to its end, then the ends are fetched twice (once to read to, once to confirm)', async () => {
    const log = new Map([[0, 10], [1, 0]]);
    const end = await readToStableEnd({ endOffsets: async () => log, readUpTo: reader(log), timeoutMs: 1_000, pollMs: 1 });
    expect(end).toMatchObject({ fetches: 2, short: [], moved: [] });
  });
});
