/**
 * The first-message rule as a pure decision: a connection that has not sent a
 * message within `deadlineMs` of connecting is closed and its slot freed.
 */
export interface DeadlineState {
  readonly connectedAt: number;
  readonly firstMessageAt: number | null;
}

export type DeadlineDecision =
  | { type: 'Satisfied' }
  | { type: 'Pending'; remainingMs: number }
  | { type: 'Expired'; overdueMs: number };

export function decideDeadline(state: DeadlineState, now: number, deadlineMs: number): DeadlineDecision {
  if (state.firstMessageAt !== null) return { type: 'Satisfied' };
  const remainingMs = state.connectedAt + deadlineMs - now;
  if (remainingMs > 0) return { type: 'Pending', remainingMs };
  return { type: 'Expired', overdueMs: now - (state.connectedAt + deadlineMs) };
}

export function recordMessage(state: DeadlineState, now: number): DeadlineState {
  return state.firstMessageAt === null ? { ...state, firstMessageAt: now } : state;
}
