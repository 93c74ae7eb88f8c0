const monotonicMs = () => performance.now();

/**
 * Deltas produced in the same tick go out as one message: a model that
 * streams slowly still shows every token. With an interval, at most one
 * goes out per `intervalMs`: the first at once (the first words are not held
 * back), the words that follow gathered until the interval since the last
 * one is up. `sent`: a delta went out; `discard` drops the words not sent
 * yet, when the reply that carries them all follows. `streamed` tells
 * whether any word may be on its way to the client (after which the model
 * must not be asked again). `hold` keeps every word back until `release`
 * (the message's claim not yet known to be this worker's); the words
 * gathered meanwhile then go at once, as one delta. A class, not closures:
 * one per message in processing, and those lived long enough to be ~15 % of
 * the worker thread's old-generation garbage.
 */
export class DeltaBatcher {
  private pending = '';
  private immediate: NodeJS.Immediate | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private lastSentAt = -Infinity;
  private held = false;
  streamed = false;
  sent = false;

  constructor(
    private readonly send: (text: string) => void,
    private readonly intervalMs = 0,
    private readonly now: () => number = monotonicMs,
  ) {}

  push(text: string): void {
    this.pending += text;
    if (!this.held) this.schedule();
  }

  hold(): void {
    this.held = true;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    if (this.pending !== '') this.schedule();
  }

  flush(): void {
    this.unschedule();
    if (this.pending === '' || this.held) return;
    const text = this.pending;
    this.pending = '';
    this.sent = true;
    this.lastSentAt = this.now();
    this.send(text);
  }

  discard(): void {
    this.unschedule();
    this.pending = '';
  }

  private schedule(): void {
    this.streamed = true;
    if (this.immediate || this.timeout) return;
    const wait = this.lastSentAt + this.intervalMs - this.now();
    if (wait > 0) this.timeout = setTimeout(() => this.flush(), wait);
    else this.immediate = setImmediate(() => this.flush());
  }

  private unschedule(): void {
    clearImmediate(this.immediate);
    clearTimeout(this.timeout);
    this.immediate = this.timeout = undefined;
  }
}
