/**
 * When a connection's input is not read, as a pure decider. The gateway
 * reads a client's next message only while that client is not behind; a
 * Chat stream that is behind stays paused (HTTP/2 flow control then stops
 * the sender: nothing is refused), a `Send` of a client with too many
 * messages unanswered is refused with `RESOURCE_EXHAUSTED` + `retry-after-ms`
 * (a unary call has no flow control, and a Send that waited would hold one of
 * the process's Send places meanwhile).
 *
 * Why the bound on unanswered messages: the workers process at most
 * CHATFLOW_MAX_PROCESSING messages at once and the rest wait in the log in
 * the order they came. One client pipelining thousands of messages put all
 * of them ahead of everyone else's (loadtest/flood.ts: 5,000 texts from one
 * stream at once, the simulated delays): the other clients' messages waited
 * up to 3.7 s behind them on the embedded default, 45 s on the stack (there
 * a partition runs 50 at once, and a client's messages all go to one);
 * held to 50 unanswered, 20 and 89 ms. One client then takes at most that
 * share of the processing places.
 */
export interface InputLoad {
  /** The client's frames queued beyond the outbound high-water mark (it does not read). */
  readonly outboundHigh: boolean;
  /** Messages whose durable append is in flight. */
  readonly appending: number;
  /** Bytes of uploads held in memory until stored. */
  readonly uploadBytes: number;
  /** Messages sent and not answered yet: appending, or accepted and waiting for their reply or error. */
  readonly unanswered: number;
}

export interface InputBounds {
  /** Appends in flight at most. */
  readonly appending: number;
  /** Upload bytes held at most (more is behind). */
  readonly uploadBytes: number;
  /** Unanswered messages at most (CHATFLOW_UNANSWERED_PER_CLIENT). */
  readonly unanswered: number;
}

export type BehindReason = 'outbound' | 'appends' | 'uploads' | 'unanswered';

/** Why the client is behind (its next message is not read), or undefined: it is not. */
export function behind(load: InputLoad, bounds: InputBounds): BehindReason | undefined {
  if (load.outboundHigh) return 'outbound';
  if (load.appending >= bounds.appending) return 'appends';
  if (load.uploadBytes > bounds.uploadBytes) return 'uploads';
  if (!mayTakeMessage(load.unanswered, bounds.unanswered)) return 'unanswered';
  return undefined;
}

/** Whether one more new message may be taken (a resend of a message already taken always may: it adds nothing to process). */
export function mayTakeMessage(unanswered: number, bound: number): boolean {
  return unanswered < bound;
}

/** What a client whose message is refused for its unanswered ones is told. */
export function unansweredMessage(bound: number, retryAfterMs: number): string {
  return `${bound} messages of yours wait for their answer, the most one client may have: this one was not taken; send it again (same client_message_id) once an answer came, or in ${retryAfterMs} ms`;
}
