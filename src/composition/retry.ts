import type { Logger } from 'pino';

export interface RetryOptions {
  /** Give up after this many attempts (default: never, for start-up waits on an engine). */
  attempts?: number;
  initialMs?: number;
  maxMs?: number;
}

/**
 * Runs `f` until it succeeds, waiting with exponential backoff between attempts
 * and saying which engine is unavailable, so an operator sees why a process is
 * not ready instead of a crash loop.
 */
export async function retryWithBackoff<T>(what: string, logger: Pick<Logger, 'warn'>, f: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const { attempts = Infinity, initialMs = 250, maxMs = 5_000 } = opts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await f();
    } catch (err) {
      if (attempt >= attempts) throw err;
      const delayMs = Math.min(initialMs * 2 ** (attempt - 1), maxMs);
      logger.warn({ attempt, delayMs, err: err instanceof Error ? err.message : String(err) }, `${what} unavailable; retrying in ${delayMs} ms`);
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}
