/**
 * The silence rule of a stream whose client pings over `Send` (a browser on
 * `Connect`: gRPC-Web has no client stream, so nothing else tells a live page
 * from one gone without closing its connection). A client that has pinged
 * once is held to it: a Send (a ping or a message) within `limitMs` of the
 * last, or the stream is taken for dead, closed, and its slot freed. A client
 * that never pings is not held to it (its transport's own keepalive is).
 */
export interface SilenceState {
  /** When its last Send came; null until its first ping. */
  readonly heardAt: number | null;
}

export type SilenceDecision =
  | { type: 'NotHeld' }
  | { type: 'Heard'; remainingMs: number }
  | { type: 'Silent'; silentMs: number };

export const notPinged: SilenceState = { heardAt: null };

export function decideSilence(state: SilenceState, now: number, limitMs: number): SilenceDecision {
  if (state.heardAt === null || limitMs <= 0) return { type: 'NotHeld' };
  const remainingMs = state.heardAt + limitMs - now;
  if (remainingMs > 0) return { type: 'Heard', remainingMs };
  return { type: 'Silent', silentMs: now - state.heardAt };
}

/** A Send arrived: a ping starts the rule, any Send of a client held to it counts as heard. */
export function recordSend(state: SilenceState, now: number, ping: boolean): SilenceState {
  return ping || state.heardAt !== null ? { heardAt: now } : state;
}
