import type { ChatError } from './gen/chatflow/v1/chat_pb';

/** A ChatError as the page shows it; `sendAgainInMs`: the server said the message may be sent again after this long. */
export interface ChatErrorView {
  text: string;
  sendAgainInMs?: number;
}

/** Codes whose message says all a person needs (the server words them for people); others keep their code beside. */
const TOLD_IN_WORDS = new Set(['INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED']);

/**
 * What the page says of a message not answered (or not taken): the server's
 * own words, never a label guessed from the code (RESOURCE_EXHAUSTED is a
 * model that is rate-limited or a server short of memory as often as a file
 * too large), and, when the server gave retry_after_ms (a failure that may
 * pass), when it can be sent again.
 */
export function chatErrorView(e: Pick<ChatError, 'code' | 'message' | 'retryAfterMs'>): ChatErrorView {
  const words = e.message || `failed (${e.code})`;
  const text = !e.message || TOLD_IN_WORDS.has(e.code) ? words : `${words} (${e.code})`;
  const ms = Number(e.retryAfterMs);
  if (!(ms > 0)) return { text };
  return { text: `${text}; you can send it again in ${Math.ceil(ms / 1000)} s`, sendAgainInMs: ms };
}
