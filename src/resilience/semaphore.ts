/**
 * At most `limit` holders at once; the others wait, first come first served.
 * A waiter whose signal aborts leaves the queue with the signal's reason and
 * takes no place.
 */
export class Semaphore {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`a semaphore needs a positive whole limit, got ${limit}`);
  }

  /** Holders now, and waiters. */
  get stats(): { held: number; waiting: number } {
    return { held: this.held, waiting: this.waiting.length };
  }

  /** Runs `op` holding a place (at once when one is free), waiting for one first if all are held. */
  use<T>(op: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.held < this.limit && this.waiting.length === 0) {
      this.held++;
      return this.holding(op);
    }
    return this.wait(signal).then(() => this.holding(op));
  }

  private async holding<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } finally {
      this.held--;
      this.waiting.shift()?.();
    }
  }

  private wait(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', abort);
        this.held++;
        resolve();
      };
      const abort = () => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.waiting.push(go);
    });
  }
}
