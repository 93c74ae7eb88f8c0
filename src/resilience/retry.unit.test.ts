import { getEventListeners } from 'node:events';
import { abortable, backoffDelay, retry } from './retry';

const failing = (n: number, err: unknown = new Error('down')) => {
  let calls = 0;
  const fn = jest.fn(async () => {
    if (++calls <= n) throw err;
    return 'ok';
  });
  return fn;
};

describe('backoffDelay', () => {
  it('doubles from baseMs up to maxMs, jittered as asked', () => {
    const o = { baseMs: 100, maxMs: 1_000, jitter: 'none' as const };
    expect([1, 2, 3, 4, 5, 40].map((a) => backoffDelay(a, o))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(backoffDelay(3, { ...o, jitter: 'full' }, () => 0.5)).toBe(200);
    expect(backoffDelay(3, { ...o, jitter: 'equal' }, () => 0)).toBe(200);
    expect(backoffDelay(3, { ...o, jitter: 'equal' }, () => 1)).toBe(400);
  });
});

describe('retry', () => {
  it('retries until it succeeds', async () => {
    const fn = failing(3);
    await expect(retry(fn, { baseMs: 1 })).resolves.toBe('ok');
    expect(fn).toHaveBeenCalledTimes(4);
  });

  it('throws the last error once the attempts are used up', async () => {
    const fn = failing(10, new Error('still down'));
    await expect(retry(fn, { baseMs: 1, attempts: 3 })).rejects.toThrow('still down');
    expect(fn).toHaveBeenCalledTimes(3);
  });

  it('throws at once an error that is not retryable', async () => {
    const fn = failing(10, new TypeError('bug'));
    await expect(retry(fn, { baseMs: 1, retryable: (e) => !(e instanceof TypeError) })).rejects.toThrow('bug');
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('starts no attempt after the deadline and never waits past it', async () => {
    // Fake timers move Date.now and the timers together: on real ones a timer
    // may fire a millisecond before Date.now says it is due, which let a 5th
    // attempt start 1 ms before the deadline (CI, 2026-11-25).
    jest.useFakeTimers({ now: 0 });
    try {
      const fn = failing(1_000);
      const waits: number[] = [];
      const p = retry(fn, { baseMs: 50, maxMs: 50, jitter: 'none', deadline: 120, onRetry: ({ delayMs }) => waits.push(delayMs) });
      let rejectedAt = -1;
      const settled = expect(p.finally(() => (rejectedAt = Date.now()))).rejects.toThrow('down');
      await jest.advanceTimersByTimeAsync(1_000);
      await settled;
      expect(waits).toEqual([50, 50, 20]);
      expect(fn).toHaveBeenCalledTimes(4);
      expect(rejectedAt).toBe(120);
    } finally {
      jest.useRealTimers();
    }
  });

  it('stops waiting as soon as the signal aborts, with its reason', async () => {
    const ac = new AbortController();
    const fn = failing(1_000);
    const p = retry(fn, { baseMs: 60_000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stopping')), 20);
    const started = Date.now();
    await expect(p).rejects.toThrow('stopping');
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('reports each retry', async () => {
    const seen: number[] = [];
    await retry(failing(2), { baseMs: 1, jitter: 'none', onRetry: ({ attempt }) => seen.push(attempt) });
    expect(seen).toEqual([1, 2]);
  });
});

describe('abortable', () => {
  it('settles as the promise does while the signal stays quiet, and stops listening to it then', async () => {
    const ac = new AbortController();
    await expect(abortable(Promise.resolve(7), ac.signal)).resolves.toBe(7);
    await expect(abortable(Promise.reject(new Error('no')), ac.signal)).rejects.toThrow('no');
    await new Promise((r) => setImmediate(r));
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('rejects with the reason as soon as the signal aborts, also when it already has', async () => {
    const ac = new AbortController();
    const never = new Promise<void>(() => undefined);
    const p = abortable(never, ac.signal);
    ac.abort(new Error('taken away'));
    await expect(p).rejects.toThrow('taken away');
    await expect(abortable(never, ac.signal)).rejects.toThrow('taken away');
  });
});
