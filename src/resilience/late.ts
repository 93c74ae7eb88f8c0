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
