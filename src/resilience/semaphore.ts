/** How long to wait for places, and what may cut the wait short. */
export interface UseOptions {
  /** Places the operation holds (1 to the limit); 1 unless said. */
  places?: number;
  /** A waiter whose signal aborts leaves the queue with the signal's reason. */
  signal?: AbortSignal;
  /** Longest wait for the places, in ms; past it the waiter leaves with a SemaphoreTimeout. 0 or absent: no bound. */
  waitMs?: number;
}

/** A waiter gave up after `UseOptions.waitMs`. */
export class SemaphoreTimeout extends Error {
  constructor(readonly waitedMs: number) {
    super(`waited ${waitedMs} ms for a place`);
    this.name = 'SemaphoreTimeout';
  }
}

interface Waiter {
  places: number;
  go: () => void;
}

/**
 * At most `limit` places held at once; the others wait, first come first
 * served (a waiter that needs more places than are free holds back the ones
 * behind it, so a big holder is never starved by small ones). A waiter that
 * gives up (its signal, its `waitMs`) takes no place.
 */
export class Semaphore {
  private held = 0;
  private readonly waiting: Waiter[] = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`a semaphore needs a positive whole limit, got ${limit}`);
  }

  /** Places held now, and waiters. */
  get stats(): { held: number; waiting: number } {
    return { held: this.held, waiting: this.waiting.length };
  }

  /** Runs `op` holding its places (at once when they are free), waiting for them first otherwise. */
  use<T>(op: () => Promise<T>, opts: UseOptions = {}): Promise<T> {
    const places = opts.places ?? 1;
    if (!Number.isInteger(places) || places < 1 || places > this.limit) {
      return Promise.reject(new RangeError(`asked for ${places} places of a semaphore of ${this.limit}`));
    }
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
    if (this.waiting.length === 0 && this.held + places <= this.limit) {
      this.held += places;
      return this.holding(op, places);
    }
    return this.wait(places, opts).then(() => this.holding(op, places));
  }

  private async holding<T>(op: () => Promise<T>, places: number): Promise<T> {
    try {
      return await op();
    } finally {
      this.held -= places;
      this.wake();
    }
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.held + this.waiting[0]!.places <= this.limit) this.waiting.shift()!.go();
  }

  private wait(places: number, { signal, waitMs }: UseOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener('abort', abort);
        clearTimeout(timer);
      };
      const leave = (reason: unknown) => {
        done();
        this.waiting.splice(this.waiting.indexOf(w), 1);
        this.wake(); // the ones behind may fit now
        reject(reason);
      };
      const abort = () => leave(signal!.reason);
      const w: Waiter = {
        places,
        go: () => {
          done();
          this.held += places;
          resolve();
        },
      };
      const timer = waitMs ? setTimeout(() => leave(new SemaphoreTimeout(waitMs)), waitMs) : undefined;
      signal?.addEventListener('abort', abort, { once: true });
      this.waiting.push(w);
    });
  }
}
