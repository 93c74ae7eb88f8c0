/**
 * The shape every rule of the domain takes (as in emmett's `Decider`): a pure
 * `decide(command, state) → events`, a pure `evolve(state, event) → state`, and
 * the state before any event. Time and ids arrive inside commands; nothing here
 * reads a clock or draws a random number. Adapters (memory, MongoDB) load a
 * state, call `decide`, and carry out the events; they never re-state a rule.
 */
export interface Decider<Command, Event, State> {
  decide(command: Command, state: State): Event[];
  evolve(state: State, event: Event): State;
  initialState(): State;
}

/** Folds events into a state with the decider's `evolve`. */
export function fold<Command, Event, State>(decider: Decider<Command, Event, State>, events: readonly Event[], state = decider.initialState()): State {
  return events.reduce((s, e) => decider.evolve(s, e), state);
}

/** Decides a command and applies its events: what an in-memory adapter does. */
export function run<Command, Event, State>(decider: Decider<Command, Event, State>, command: Command, state: State): { events: Event[]; state: State } {
  const events = decider.decide(command, state);
  return { events, state: fold(decider, events, state) };
}
