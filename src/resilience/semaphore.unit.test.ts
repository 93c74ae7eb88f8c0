import fc from 'fast-check';
import { Semaphore } from './semaphore';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Semaphore', () => {
  it('never lets more than its limit hold at once, and runs every operation', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 30 }), async (limit, waits) => {
        const s = new Semaphore(limit);
        let now = 0;
        let peak = 0;
        const done = await Promise.all(
          waits.map((w, i) =>
            s.use(async () => {
              peak = Math.max(peak, ++now);
              for (let k = 0; k <= w; k++) await tick();
              now--;
              return i;
            }),
          ),
        );
        expect(done).toEqual(waits.map((_, i) => i));
        expect(peak).toBeLessThanOrEqual(limit);
        if (waits.length > 0) expect(peak).toBe(Math.min(limit, waits.length));
        expect(s.stats).toEqual({ held: 0, waiting: 0 });
      }),
    );
  });

  it('serves waiters in the order they came', async () => {
    const s = new Semaphore(1);
    const order: number[] = [];
    let open!: () => void;
    const first = s.use(() => new Promise<void>((r) => (open = r)));
    const rest = [1, 2, 3].map((n) => s.use(async () => void order.push(n)));
    open();
    await Promise.all([first, ...rest]);
    expect(order).toEqual([1, 2, 3]);
  });

  it('a waiter whose signal aborts leaves the queue and takes no place; a failing operation gives its place back', async () => {
    const s = new Semaphore(1);
    let open!: () => void;
    const first = s.use(() => new Promise<void>((r) => (open = r)));
    const gone = new AbortController();
    const left = s.use(async () => 'ran', gone.signal);
    const next = s.use(async () => 'next');
    gone.abort(new Error('deadline'));
    await expect(left).rejects.toThrow('deadline');
    expect(s.stats).toEqual({ held: 1, waiting: 1 });
    open();
    await first;
    expect(await next).toBe('next');
    await expect(s.use(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await s.use(async () => 'again')).toBe('again');
    await expect(s.use(async () => 'never', AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });

  it('refuses a limit that is not a positive whole number', () => {
    for (const bad of [0, -1, 1.5, NaN]) expect(() => new Semaphore(bad)).toThrow(/positive whole limit/);
  });
});
