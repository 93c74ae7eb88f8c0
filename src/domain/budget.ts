import type { Decider } from './decider';

/**
 * The processing budget as a pure decider: at most `max` messages in
 * processing at once. A message that finds the budget spent waits (it is not
 * refused), so backpressure reaches the log, never the client.
 */
export interface BudgetState {
  readonly inProcessing: number;
  readonly peak: number;
}

export type BudgetCommand = { type: 'Start'; max: number } | { type: 'Finish' };
export type BudgetEvent = { type: 'Started' } | { type: 'MustWait' } | { type: 'Finished' };

export function initialBudget(): BudgetState {
  return { inProcessing: 0, peak: 0 };
}

export function decideBudget(command: BudgetCommand, state: BudgetState): BudgetEvent[] {
  switch (command.type) {
    case 'Start':
      return state.inProcessing < command.max ? [{ type: 'Started' }] : [{ type: 'MustWait' }];
    case 'Finish':
      if (state.inProcessing === 0) throw new Error('Finish without a matching Start');
      return [{ type: 'Finished' }];
    default: {
      const never: never = command;
      throw new Error(`unknown command ${JSON.stringify(never)}`);
    }
  }
}

export function evolveBudget(state: BudgetState, event: BudgetEvent): BudgetState {
  switch (event.type) {
    case 'Started': {
      const inProcessing = state.inProcessing + 1;
      return { inProcessing, peak: Math.max(state.peak, inProcessing) };
    }
    case 'Finished':
      return { ...state, inProcessing: state.inProcessing - 1 };
    case 'MustWait':
      return state;
    default: {
      const never: never = event;
      throw new Error(`unknown event ${JSON.stringify(never)}`);
    }
  }
}

export const budget: Decider<BudgetCommand, BudgetEvent, BudgetState> = {
  decide: decideBudget,
  evolve: evolveBudget,
  initialState: initialBudget,
};
