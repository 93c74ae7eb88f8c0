import fc from 'fast-check';
import { Semaphore, SemaphoreTimeout } from './semaphore';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Semaphore', () => {
  it('never lets more than its limit of places be held at once, and runs every operation', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }).chain((limit) =>
          fc.tuple(fc.constant(limit), fc.array(fc.record({ places: fc.integer({ min: 1, max: limit }), ticks: fc.integer({ min: 0, max: 3 }) }), { maxLength: 30 })),
        ),
        async ([limit, ops]) => {
          const s = new Semaphore(limit);
          let now = 0;
          let peak = 0;
          const done = await Promise.all(
            ops.map(({ places, ticks }, i) =>
              s.use(
                async () => {
                  now += places;
                  peak = Math.max(peak, now);
                  for (let k = 0; k <= ticks; k++) await tick();
                  now -= places;
                  return i;
                },
                { places },
              ),
            ),
          );
          expect(done).toEqual(ops.map((_, i) => i));
          expect(peak).toBeLessThanOrEqual(limit);
          if (ops.length > 0) expect(peak).toBeGreaterThanOrEqual(ops[0]!.places);
          expect(s.stats).toEqual({ held: 0, waiting: 0 });
        },
      ),
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
    const left = s.use(async () => 'ran', { signal: gone.signal });
    const next = s.use(async () => 'next');
    gone.abort(new Error('deadline'));
    await expect(left).rejects.toThrow('deadline');
    expect(s.stats).toEqual({ held: 1, waiting: 1 });
    open();
    await first;
    expect(await next).toBe('next');
    await expect(s.use(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await s.use(async () => 'again')).toBe('again');
    await expect(s.use(async () => 'never', { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already');
  });

  it('serves a waiter that needs several places before smaller ones behind it, and lets those through when it gives up', async () => {
    const s = new Semaphore(2);
    let open!: () => void;
    const first = s.use(() => new Promise<void>((r) => (open = r)));
    const order: string[] = [];
    const big = s.use(async () => void order.push('big'), { places: 2 });
    const small = s.use(async () => void order.push('small'));
    await tick();
    expect(order).toEqual([]); // one place is free, but the big waiter is first
    open();
    await Promise.all([first, big, small]);
    expect(order).toEqual(['big', 'small']);

    let release!: () => void;
    const holder = s.use(() => new Promise<void>((r) => (release = r)));
    const tooLate = s.use(async () => 'ran', { places: 2, waitMs: 20 });
    const behind = s.use(async () => 'behind');
    const err = await tooLate.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SemaphoreTimeout);
    expect((err as SemaphoreTimeout).waitedMs).toBe(20);
    expect(await behind).toBe('behind'); // let through by the big waiter's leaving, not by the holder
    expect(s.stats).toEqual({ held: 1, waiting: 0 });
    release();
    await holder;
  });

  it('refuses a number of places it can never give', async () => {
    const s = new Semaphore(2);
    for (const bad of [0, 3, 1.5]) await expect(s.use(async () => 'never', { places: bad })).rejects.toThrow(RangeError);
    expect(s.stats).toEqual({ held: 0, waiting: 0 });
  });

  it('refuses a limit that is not a positive whole number', () => {
    for (const bad of [0, -1, 1.5, NaN]) expect(() => new Semaphore(bad)).toThrow(/positive whole limit/);
  });
});
