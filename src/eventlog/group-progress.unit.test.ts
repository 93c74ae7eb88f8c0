import { GroupProgress } from './group-progress';

/** A group whose committed offset on "t/0" moves by `step` at each poll. */
function movingGroup(step: number) {
  let offset = 0;
  let polls = 0;
  let fail: Error | undefined;
  const progress = new GroupProgress(
    async () => {
      polls++;
      await new Promise((r) => setTimeout(r, 1));
      if (fail) throw fail;
      offset += step;
      return new Map([['t/0', offset]]);
    },
    { pollMs: 2, clock: Date.now, closed: () => false },
  );
  return { progress, polls: () => polls, failWith: (e: Error | undefined) => (fail = e) };
}

describe('GroupProgress: many waiters, one poll at a time', () => {
  it('given 50 sessions waiting for the same group, when it catches up, then all are answered by one poll loop, not 50', async () => {
    const { progress, polls } = movingGroup(10);
    const waits = Array.from({ length: 50 }, () => progress.reach(new Map([['t/0', 100]]), Date.now() + 5_000));
    expect(await Promise.all(waits)).toEqual(Array(50).fill(true));
    // Ten polls reach offset 100; alone, each of the 50 waiters polled ten times (500).
    expect(polls()).toBeLessThanOrEqual(12);
    expect(progress.waiting).toBe(0);
  });

  it('given waiters with different targets, each is answered when its own target is reached, and one past its deadline gets false', async () => {
    const { progress } = movingGroup(5);
    const order: string[] = [];
    const near = progress.reach(new Map([['t/0', 10]]), Date.now() + 5_000).then((ok) => (order.push('near'), ok));
    const far = progress.reach(new Map([['t/0', 60]]), Date.now() + 5_000).then((ok) => (order.push('far'), ok));
    const never = progress.reach(new Map([['t/1', 1]]), Date.now() + 50).then((ok) => (order.push('never'), ok));
    expect(await Promise.all([near, far, never])).toEqual([true, true, false]);
    expect(order[0]).toBe('near');
  });

  it('given a poll that fails, then the waiters of that moment get the error and a later waiter polls afresh', async () => {
    const { progress, failWith } = movingGroup(1);
    failWith(new Error('broker down'));
    await expect(progress.reach(new Map([['t/0', 3]]), Date.now() + 5_000)).rejects.toThrow('broker down');
    failWith(undefined);
    await expect(progress.reach(new Map([['t/0', 3]]), Date.now() + 5_000)).resolves.toBe(true);
  });

  it('given no target (an empty log), then it answers at once without polling', async () => {
    const { progress, polls } = movingGroup(1);
    await expect(progress.reach(new Map(), Date.now() + 5_000)).resolves.toBe(true);
    expect(polls()).toBe(0);
  });
});
