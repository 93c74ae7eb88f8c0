/** What orLate resolves with when the time ran out first. */
export const LATE = Symbol('late');

/**
 * `work`'s value, or LATE once `ms` have passed first; `work` then goes on,
 * unawaited. A rejection of `work` within `ms` rejects. The timer is cleared
 * either way, so a bound that is not needed holds no process open.
 */
export async function orLate<T>(work: Promise<T>, ms: number): Promise<T | typeof LATE> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof LATE>((resolve) => (timer = setTimeout(() => resolve(LATE), ms)));
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
