/**
 * How often one client may open a stream, as a pure decider: a token bucket
 * per client id, `burst` tokens, refilled at `perMinute`. Each attempt takes
 * a token, admitted or not (a refused attempt costs the server as much). A
 * page or CLI that reconnects, or waits for a slot every `retry-after-ms`,
 * stays far below; a client reconnecting in a loop (measured: ~250 admitted
 * streams a second from one client, each two durable events and a session
 * kept in the read models) is held to the refill rate.
 */
export interface ConnectBucket {
  readonly tokens: number;
  /** When `tokens` was counted. */
  readonly at: number;
}

export type ConnectVerdict =
  | { readonly ok: true; readonly bucket: ConnectBucket }
  | { readonly ok: false; readonly bucket: ConnectBucket; readonly retryAfterMs: number };

/** `perMinute` 0: no limit. Time comes in as `now` (ms); nothing here reads a clock. */
export function decideConnect(bucket: ConnectBucket | undefined, now: number, burst: number, perMinute: number): ConnectVerdict {
  if (perMinute <= 0) return { ok: true, bucket: { tokens: burst, at: now } };
  const perMs = perMinute / 60_000;
  const elapsed = bucket ? Math.max(0, now - bucket.at) : 0;
  const tokens = bucket ? Math.min(burst, bucket.tokens + elapsed * perMs) : burst;
  if (tokens >= 1) return { ok: true, bucket: { tokens: tokens - 1, at: now } };
  // The wait is checked with the refill's own sum: in floating point, ceil((1 - t) / r) ms can refill to
  // 0.9999999999999999 (2 in a row, 225 a minute), and a client that waited as told would be told to wait again.
  let retryAfterMs = Math.ceil((1 - tokens) / perMs);
  if (tokens + retryAfterMs * perMs < 1) retryAfterMs++;
  return { ok: false, bucket: { tokens, at: now }, retryAfterMs };
}

/** What a client held back is told. */
export function connectRateMessage(clientId: string, burst: number, perMinute: number, retryAfterMs: number): string {
  return `too many connections from client "${clientId}": at most ${perMinute} a minute (${burst} in a row); retry in ${retryAfterMs} ms`;
}
