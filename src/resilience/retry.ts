import type { Logger } from 'pino';

export interface BackoffOptions {
  /** Wait before the 2nd attempt (ms); doubled each time after. */
  baseMs?: number;
  /** Longest wait between two attempts (ms). */
  maxMs?: number;
  /**
   * `full`: a random wait in [0, d]; `equal`: in [d/2, d]; `none`: d. Jitter
   * keeps many callers that failed together from retrying together.
   */
  jitter?: 'none' | 'equal' | 'full';
}

export interface RetryOptions extends BackoffOptions {
  /** Most attempts in all (default: no limit; a deadline or a signal ends it). */
  attempts?: number;
  /** Time (`clock()` ms) after which no new attempt starts and no wait is begun: the last error is thrown. */
  deadline?: number;
  /** Stops waiting at once (rejects with the signal's reason); an attempt in progress gets it as its second argument. */
  signal?: AbortSignal;
  /** Errors worth another attempt (default: every error). Any other is thrown at once. */
  retryable?: (err: unknown) => boolean;
  /** Told of each failed attempt that will be retried (to log it). */
  onRetry?: (info: { err: unknown; attempt: number; delayMs: number }) => void;
  clock?: () => number;
  random?: () => number;
}

/** The wait after failed attempt `attempt` (1-based): exponential, capped, with jitter. */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const { baseMs = 250, maxMs = 5_000, jitter = 'equal' } = opts;
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  if (jitter === 'full') return random() * d;
  if (jitter === 'equal') return d / 2 + random() * (d / 2);
  return d;
}

/**
 * The one retry of the code base: runs `fn` until it succeeds, an error is
 * not `retryable`, the attempts are used up or the deadline passes (each of
 * these throws the last error), or `signal` aborts (throws its reason).
 * A wait never runs past the deadline: the last attempt starts at it at the
 * latest.
 */
export function retry<T>(fn: (attempt: number, signal?: AbortSignal) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  // The first attempt alone, without the loop's async frame: it is nearly always the only one, and the worker
  // retries two or three claims writes a message this way (~7 MB/s of its garbage at saturation, issue 15).
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason);
  let first: Promise<T>;
  try {
    first = Promise.resolve(fn(1, signal));
  } catch (err) {
    first = Promise.reject(err);
  }
  return first.then(undefined, (err: unknown) => retryAfter(fn, opts, err));
}

/** The attempts after a first one failed with `firstErr`. */
async function retryAfter<T>(fn: (attempt: number, signal?: AbortSignal) => Promise<T>, opts: RetryOptions, firstErr: unknown): Promise<T> {
  const { attempts = Infinity, deadline = Infinity, signal, retryable = () => true, onRetry, clock = Date.now, random = Math.random } = opts;
  let err = firstErr;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    const now = clock();
    if (attempt >= attempts || now >= deadline || !retryable(err)) throw err;
    const delayMs = Math.max(0, Math.min(backoffDelay(attempt, opts, random), deadline - now));
    onRetry?.({ err, attempt, delayMs });
    await sleep(delayMs, signal);
    signal?.throwIfAborted();
    try {
      return await fn(attempt + 1, signal);
    } catch (e) {
      err = e;
    }
  }
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const aborted = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * Start-up waits on an engine: retries `f` (by default for ever) and says
 * which engine is unavailable, so an operator sees why a process is not ready
 * instead of a crash loop. With a `signal`, the wait ends as soon as it aborts
 * (an operator stopping a process that waits for an engine that is not there),
 * also in the middle of an attempt (a driver's own connect can take seconds);
 * what that attempt opens after is given to `discard` (closed, not leaked).
 */
export function retryWithBackoff<T>(what: string, logger: Pick<Logger, 'warn'>, f: () => Promise<T>, opts: RetryOptions & { discard?: (late: T) => unknown } = {}): Promise<T> {
  const { discard, ...retryOpts } = opts;
  const waited = retry(f, {
    onRetry: ({ err, attempt, delayMs }) =>
      logger.warn({ attempt, delayMs: Math.round(delayMs), err: err instanceof Error ? err.message : String(err) }, `${what} unavailable; retrying in ${Math.round(delayMs)} ms`),
    ...retryOpts,
  });
  const { signal } = opts;
  if (!signal) return waited;
  return abortable(waited, signal).catch((err: unknown) => {
    if (signal.aborted) void waited.then((late) => discard?.(late), () => undefined);
    throw err;
  });
}

/** `p`, or a rejection with the signal's reason as soon as it aborts (p itself is not stopped: it is only no longer waited for). No signal: `p`. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const aborted = () => reject(signal.reason);
    signal.addEventListener('abort', aborted, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', aborted));
  });
}
