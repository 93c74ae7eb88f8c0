import { fold, type Decider } from '../src/domain/decider';

/**
 * given/when/then for any decider (as emmett's `DeciderSpecification`):
 *   spec(admission).given([events]).when(command).then([events])
 *   spec(admission).given([events]).when(command).thenState((s) => …)
 * Test-only: imported by *.unit.test.ts files.
 */
export function spec<Command, Event, State>(decider: Decider<Command, Event, State>) {
  return {
    given(events: readonly Event[] = []) {
      const state = fold(decider, events);
      return {
        when(command: Command) {
          const events = decider.decide(command, state);
          const after = fold(decider, events, state);
          return {
            then(expected: unknown) {
              expect(events).toEqual(expected);
              return { state: after };
            },
            thenState(check: (state: State, events: Event[]) => void) {
              check(after, events);
            },
          };
        },
      };
    },
  };
}
