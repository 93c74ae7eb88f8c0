import type { Logger } from 'pino';

/** What a role builder returns: started once by the root, stopped once in reverse order. */
export interface Part {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The step a stop is at, shared by a process's lifecycles (for the hard-deadline log). */
export interface StopProgress {
  step: string;
}

/**
 * Named steps, undone in the reverse order they were done. A step registers
 * its stop only once it has started; a failing stop is logged and the others
 * still run. A role uses one of its own for its parts (`child`), so a failure
 * half-way through its start undoes just what it had started.
 */
export class Lifecycle {
  private readonly stops: { name: string; run: () => Promise<unknown> }[] = [];

  constructor(
    private readonly logger: Pick<Logger, 'error'>,
    readonly progress: StopProgress = { step: 'not stopping' },
  ) {}

  child(): Lifecycle {
    return new Lifecycle(this.logger, this.progress);
  }

  /** Registers what undoes a step just done. */
  onStop(name: string, run: () => Promise<unknown>): void {
    this.stops.push({ name, run });
  }

  /** Starts `part`, then registers its stop. */
  async start<P extends Part>(name: string, part: P): Promise<P> {
    await part.start();
    this.onStop(name, () => part.stop());
    return part;
  }

  /** Runs `start`; if it throws, undoes what this lifecycle had started and rethrows. */
  async all(start: () => Promise<void>): Promise<void> {
    try {
      await start();
    } catch (err) {
      await this.stopAll();
      throw err;
    }
  }

  async stopAll(): Promise<void> {
    for (let s = this.stops.pop(); s; s = this.stops.pop()) {
      this.progress.step = s.name;
      await s.run().catch((err: unknown) => this.logger.error({ err, step: s.name }, 'shutdown step failed'));
    }
  }
}
