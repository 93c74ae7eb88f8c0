import { decideBudget, evolveBudget, initialBudget, type BudgetCommand, type BudgetState } from './budget';

const step = (s: BudgetState, c: BudgetCommand) => decideBudget(c, s).reduce(evolveBudget, s);

describe('processing budget', () => {
  it('given room, when a message starts, then it is in processing and the peak follows', () => {
    const s = step(initialBudget(), { type: 'Start', max: 2 });
    expect(s).toEqual({ inProcessing: 1, peak: 1 });
  });
  it('given the budget spent, when another starts, then it must wait and nothing changes', () => {
    const full = step(step(initialBudget(), { type: 'Start', max: 2 }), { type: 'Start', max: 2 });
    expect(decideBudget({ type: 'Start', max: 2 }, full)).toEqual([{ type: 'MustWait' }]);
    expect(step(full, { type: 'Start', max: 2 })).toEqual(full);
  });
  it('given a message in processing, when it finishes, then a slot frees and the peak is kept', () => {
    const s = step(step(initialBudget(), { type: 'Start', max: 2 }), { type: 'Finish' });
    expect(s).toEqual({ inProcessing: 0, peak: 1 });
  });
  it('given nothing in processing, when Finish arrives, then it is a bug and throws', () => {
    expect(() => decideBudget({ type: 'Finish' }, initialBudget())).toThrow(/without a matching Start/);
  });
  it('given 600 starts against a budget of 500, then exactly 500 start', () => {
    let s = initialBudget();
    let started = 0;
    for (let i = 0; i < 600; i++) {
      const events = decideBudget({ type: 'Start', max: 500 }, s);
      if (events[0].type === 'Started') started++;
      s = events.reduce(evolveBudget, s);
    }
    expect(started).toBe(500);
    expect(s.peak).toBe(500);
  });
});
