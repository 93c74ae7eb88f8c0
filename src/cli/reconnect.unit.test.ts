import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { decideReconnect, FIRST_BACKOFF_MS, MAX_BACKOFF_MS, type StreamEnd } from './reconnect';

const lost: StreamEnd = { code: status.UNAVAILABLE, everWelcomed: true, cancelled: false, attempts: 0, lostForMs: 0, windowMs: 120_000 };

describe('decideReconnect', () => {
  test('a lost connection comes back after a short wait, doubling per failed attempt up to the cap', () => {
    expect(decideReconnect(lost)).toEqual({ type: 'reconnect', inMs: FIRST_BACKOFF_MS });
    expect(decideReconnect({ ...lost, attempts: 1, lostForMs: 600 })).toEqual({ type: 'reconnect', inMs: 2 * FIRST_BACKOFF_MS });
    expect(decideReconnect({ ...lost, attempts: 20, lostForMs: 60_000 })).toEqual({ type: 'reconnect', inMs: MAX_BACKOFF_MS });
  });

  test("the server's retry-after-ms wins over the back-off", () => {
    expect(decideReconnect({ ...lost, retryAfterMs: 2000 })).toEqual({ type: 'reconnect', inMs: 2000 });
    expect(decideReconnect({ ...lost, code: status.RESOURCE_EXHAUSTED, retryAfterMs: 3000, attempts: 2 })).toEqual({ type: 'reconnect', inMs: 3000 });
  });

  test('answers are not accidents: taken over, deadline, token, bad zone, a clean end', () => {
    for (const code of [status.OK, status.ALREADY_EXISTS, status.DEADLINE_EXCEEDED, status.UNAUTHENTICATED, status.INVALID_ARGUMENT, status.PERMISSION_DENIED, status.NOT_FOUND, status.CANCELLED]) {
      expect(decideReconnect({ ...lost, code })).toEqual({ type: 'end' });
    }
  });

  test('a message too large for the transport ends the session: sent again on every new stream, it would end each one', () => {
    // grpc-js's words: the server's receive limit (it ends the stream), the client's own send limit.
    for (const details of ['Received message larger than max (30000069 vs 17825792)', 'Attempted to send message with a size larger than 67108864']) {
      expect(decideReconnect({ ...lost, code: status.RESOURCE_EXHAUSTED, details })).toEqual({ type: 'end' });
    }
    // The server full when coming back, or the stream dropped for falling behind: still passing.
    expect(decideReconnect({ ...lost, code: status.RESOURCE_EXHAUSTED, details: 'the server is full: 50 clients are connected' })).toEqual({ type: 'reconnect', inMs: FIRST_BACKOFF_MS });
  });

  test('never when stopped by the user, never welcomed, or --reconnect-for 0', () => {
    expect(decideReconnect({ ...lost, cancelled: true })).toEqual({ type: 'end' });
    expect(decideReconnect({ ...lost, everWelcomed: false })).toEqual({ type: 'end' });
    expect(decideReconnect({ ...lost, windowMs: 0 })).toEqual({ type: 'end' });
  });

  test('gives up once the next attempt would come after the window', () => {
    expect(decideReconnect({ ...lost, attempts: 3, lostForMs: 119_000 })).toEqual({ type: 'end' });
    expect(decideReconnect({ ...lost, attempts: 0, lostForMs: 119_000 })).toEqual({ type: 'reconnect', inMs: FIRST_BACKOFF_MS });
  });

  test('property: a reconnect is always within the window and never sooner than the first back-off or the server asked', () => {
    fc.assert(
      fc.property(
        fc.record({
          code: fc.integer({ min: 0, max: 16 }),
          retryAfterMs: fc.option(fc.integer({ min: 1, max: 60_000 }), { nil: undefined }),
          everWelcomed: fc.boolean(),
          cancelled: fc.boolean(),
          attempts: fc.integer({ min: 0, max: 1000 }),
          lostForMs: fc.integer({ min: 0, max: 300_000 }),
          windowMs: fc.integer({ min: 0, max: 300_000 }),
        }),
        (end) => {
          const d = decideReconnect(end as StreamEnd);
          if (d.type !== 'reconnect') return;
          expect(end.lostForMs + d.inMs).toBeLessThanOrEqual(end.windowMs);
          expect(d.inMs).toBeGreaterThanOrEqual(end.retryAfterMs ?? FIRST_BACKOFF_MS);
          expect(d.inMs).toBeLessThanOrEqual(end.retryAfterMs ?? MAX_BACKOFF_MS);
          expect(end.everWelcomed && !end.cancelled).toBe(true);
        },
      ),
    );
  });
});
