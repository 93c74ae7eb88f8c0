import { budget, type BudgetEvent } from './budget';
import { run } from './decider';
import { spec } from '../../test/decider-specification';

const rule = spec(budget);
const started: BudgetEvent = { type: 'Started' };

describe('processing budget', () => {
  it('given room, when a message starts, then it is in processing and the peak follows', () => {
    const { state } = rule.given([]).when({ type: 'Start', max: 2 }).then([started]);
    expect(state).toEqual({ inProcessing: 1, peak: 1 });
  });
  it('given the budget spent, when another starts, then it must wait and nothing changes', () => {
    const { state } = rule.given([started, started]).when({ type: 'Start', max: 2 }).then([{ type: 'MustWait' }]);
    expect(state).toEqual({ inProcessing: 2, peak: 2 });
  });
  it('given a message in processing, when it finishes, then a slot frees and the peak is kept', () => {
    const { state } = rule.given([started]).when({ type: 'Finish' }).then([{ type: 'Finished' }]);
    expect(state).toEqual({ inProcessing: 0, peak: 1 });
  });
  it('given nothing in processing, when Finish arrives, then it is a bug and throws', () => {
    expect(() => rule.given([]).when({ type: 'Finish' })).toThrow(/without a matching Start/);
  });
  it('given 600 starts against a budget of 500, then exactly 500 start', () => {
    let state = budget.initialState();
    let count = 0;
    for (let i = 0; i < 600; i++) {
      const r = run(budget, { type: 'Start', max: 500 }, state);
      if (r.events[0].type === 'Started') count++;
      state = r.state;
    }
    expect(count).toBe(500);
    expect(state.peak).toBe(500);
  });
});
