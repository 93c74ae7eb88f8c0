/** What orLate resolves with when the time ran out first. */
export const LATE = Symbol('late');

/**
 * `work`'s value, or LATE once `ms` have passed first; `work` then goes on,
 * unawaited. A rejection of `work` within `ms` rejects. The timer is cleared
 * either way, so a bound that is not needed holds no process open. One
 * promise settled by whichever comes first, not a race of two and a
 * `finally`: the gateway bounds every message's append with it (issue 15).
 */
export function orLate<T>(work: Promise<T>, ms: number): Promise<T | typeof LATE> {
  return new Promise<T | typeof LATE>((resolve, reject) => {
    const timer = setTimeout(() => resolve(LATE), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * `work`'s outcome, or a rejection with `signal`'s reason as soon as it aborts
 * first (`work` then goes on, unawaited: the caller stops it). No signal: `work`.
 */
export function unlessCalledOff<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const calledOff = () => reject(signal.reason);
    if (signal.aborted) return calledOff();
    signal.addEventListener('abort', calledOff, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', calledOff));
  });
}
