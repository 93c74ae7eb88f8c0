import { Code, type ConnectError } from '@connectrpc/connect';

/** A message refused in passing is sent again at most this many times before it is shown failed. */
export const SEND_ATTEMPTS = 3;

/** Send it again (same client_message_id) in `retryInMs`, or show it failed with `text` (`retryable`: offer a retry button). */
export type SendOutcome = { retryInMs: number } | { text: string; retryable: boolean };

/**
 * What the page does with a Send the server refused, `attempt` times sent
 * again already. A refusal in passing (the connection dropped, the gateway
 * restarting, the disk full for a moment, too many uploads being received at
 * once) is sent again after the server's `retry-after-ms`, or a growing pause
 * when it says none; after SEND_ATTEMPTS, or for any other refusal, the
 * message is shown failed in the server's words. RESOURCE_EXHAUSTED that says
 * when to come back is the server being busy; without, a file too large or a
 * server short of memory, as its words say (no label is guessed from the code).
 */
export function onSendRefused(err: ConnectError, attempt: number): SendOutcome {
  const hint = Number(err.metadata.get('retry-after-ms'));
  const retryAfterMs = Number.isFinite(hint) && hint > 0 ? hint : undefined;
  const busy = err.code === Code.ResourceExhausted && retryAfterMs !== undefined;
  const transient = busy || err.code === Code.Unavailable || err.code === Code.Unknown || err.code === Code.Canceled;
  if (transient && attempt < SEND_ATTEMPTS) return { retryInMs: retryAfterMs ?? 500 * 2 ** attempt };
  return { text: busy ? `Server busy: ${err.rawMessage}` : failureText(err), retryable: transient || err.code === Code.NotFound };
}

function failureText(err: ConnectError): string {
  if (err.code === Code.NotFound) return `Not delivered (the session moved): ${err.rawMessage}`;
  return err.rawMessage || `failed (${Code[err.code]})`;
}
