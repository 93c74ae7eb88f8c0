import { status } from '@grpc/grpc-js';

/** Where the CLI stands when one of its Chat streams ends. */
export interface StreamEnd {
  code: status;
  /** The status's words. */
  details?: string;
  /** The server's `retry-after-ms` trailer, if it sent one. */
  retryAfterMs?: number;
  /** The session was welcomed at least once (only a session that was in comes back by itself). */
  everWelcomed: boolean;
  /** The user stopped it (Ctrl-C): never reconnect. */
  cancelled: boolean;
  /** Failed reconnect attempts since the connection was lost (0: it was just lost). */
  attempts: number;
  /** ms since the connection was lost (0 when it was just lost). */
  lostForMs: number;
  /** How long to keep trying (--reconnect-for); 0: never reconnect. */
  windowMs: number;
  /** The stream that ended was welcomed, and came back from a loss (not the session's first). */
  backFromLoss?: boolean;
  /** Replies are still owed to this session. */
  owed?: boolean;
  /** A person types the messages (no script). */
  interactive?: boolean;
  /** The user is leaving (/quit, end of the script): the session half-closed. */
  leaving?: boolean;
}

export type ReconnectDecision =
  | { type: 'reconnect'; inMs: number }
  /** At once, without counting an attempt: the stream was closed, not lost. */
  | { type: 'reopen' }
  /** Wait for the person's next message, then reconnect. */
  | { type: 'idle' }
  /** The session ends with the stream's status. */
  | { type: 'end' }
  /** The session ends as disconnected: the user left with every reply in, nothing went wrong. */
  | { type: 'left' };

/** The first wait and the longest one between attempts. */
export const FIRST_BACKOFF_MS = 500;
export const MAX_BACKOFF_MS = 15_000;

/**
 * Statuses after which the same stream can come back: the server going away
 * (restart, shutdown: UNAVAILABLE with retry-after-ms), the network (grpc-js
 * says UNAVAILABLE, or INTERNAL for a stream reset), the server full when
 * coming back or the stream dropped because the client fell behind
 * (RESOURCE_EXHAUSTED). The others are answers, not accidents: the stream
 * taken over by a newer connection (ALREADY_EXISTS), the first-message
 * deadline (DEADLINE_EXCEEDED), a token that expired (UNAUTHENTICATED), a bad
 * time zone, an ended conversation, a clean end (OK).
 */
const PASSING = new Set<status>([status.UNAVAILABLE, status.INTERNAL, status.RESOURCE_EXHAUSTED]);

/**
 * grpc-js's words for a message over a transport limit: the server's (it ends
 * the stream) or the client's own. Not passing: the message is sent again on
 * the next stream, which it ends the same way, for ever.
 */
export function tooLargeForTransport(details: string | undefined): boolean {
  return /Received message larger than max|Attempted to send message with a size larger than/.test(details ?? '');
}

/**
 * Whether and when the CLI opens its stream again: with back-off doubling
 * from FIRST_BACKOFF_MS up to MAX_BACKOFF_MS, or the server's retry-after-ms
 * when it gave one, for at most `windowMs` after the connection was lost.
 * A stream back from a loss is held to the first-message deadline like a new
 * one: closed by it while replies are owed, it is opened again at once (they
 * are replayed); in an interactive session with none, the next message does.
 */
export function decideReconnect(end: StreamEnd): ReconnectDecision {
  if (end.code === status.DEADLINE_EXCEEDED && end.backFromLoss && !end.leaving && !end.cancelled) {
    if (end.owed) return { type: 'reopen' };
    if (end.interactive) return { type: 'idle' };
  }
  if (end.cancelled || !end.everWelcomed || end.windowMs <= 0 || !PASSING.has(end.code) || tooLargeForTransport(end.details)) return { type: 'end' };
  if (end.leaving && !end.owed) return { type: 'left' };
  const inMs = end.retryAfterMs ?? Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** end.attempts);
  if (end.lostForMs + inMs > end.windowMs) return { type: 'end' };
  return { type: 'reconnect', inMs };
}
