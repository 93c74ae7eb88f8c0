/** A consumer group's committed offsets, per "topic/partition". */
export type GroupOffsets = ReadonlyMap<string, number>;

interface Waiter {
  /** Offsets the group must reach, per "topic/partition" (what is reached is deleted). */
  readonly targets: Map<string, number>;
  readonly deadline: number;
  resolve(reached: boolean): void;
  reject(err: unknown): void;
}

/**
 * Waits for one consumer group to reach given offsets, for any number of
 * waiters with one poll of the group's offsets at a time. Every gateway
 * session that waits for the read models (a resume, a continued
 * conversation's resend check, a resume's second replay pass) used to poll
 * the broker itself every 25 ms: after an outage, with the projector behind,
 * 50 reconnecting sessions made ~2,000 admin requests a second.
 *
 * A waiter's targets are its own (the log's end when it asked), so sharing
 * the poll never answers it with a position read before it asked: every
 * poll's answer is newer than every waiter already registered.
 */
export class GroupProgress {
  private readonly waiters = new Set<Waiter>();
  private polling = false;

  constructor(
    private readonly fetchOffsets: () => Promise<GroupOffsets>,
    private readonly opts: { pollMs: number; clock: () => number; closed: () => boolean },
  ) {}

  /** Resolves true once the group has reached every target, false at `deadline` (or once closed). */
  reach(targets: ReadonlyMap<string, number>, deadline: number): Promise<boolean> {
    if (targets.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve, reject) => {
      this.waiters.add({ targets: new Map(targets), deadline, resolve, reject });
      void this.poll();
    });
  }

  /** How many wait now (for tests and metrics). */
  get waiting(): number {
    return this.waiters.size;
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      while (this.expire() > 0) {
        let offsets: GroupOffsets;
        try {
          offsets = await this.fetchOffsets();
        } catch (err) {
          // The waiters registered so far learn of it (as each did when it polled alone); later ones poll afresh.
          for (const w of this.waiters) w.reject(err);
          this.waiters.clear();
          return;
        }
        for (const w of this.waiters) {
          for (const [key, target] of w.targets) if ((offsets.get(key) ?? -1) >= target) w.targets.delete(key);
          if (w.targets.size === 0) {
            this.waiters.delete(w);
            w.resolve(true);
          }
        }
        if (this.waiters.size > 0) await new Promise((r) => setTimeout(r, this.opts.pollMs));
      }
    } finally {
      this.polling = false;
    }
  }

  /** Answers false to the waiters past their deadline (all of them once closed); returns how many wait on. */
  private expire(): number {
    const now = this.opts.clock();
    const closed = this.opts.closed();
    for (const w of this.waiters) {
      if (closed || now > w.deadline) {
        this.waiters.delete(w);
        w.resolve(false);
      }
    }
    return this.waiters.size;
  }
}
