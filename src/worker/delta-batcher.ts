const monotonicMs = () => performance.now();

/**
 * Deltas produced in the same tick go out as one message: a model that
 * streams slowly still shows every token. With an interval, at most one
 * goes out per `intervalMs`: the first at once (the first words are not held
 * back), the words that follow gathered until the interval since the last
 * one is up. `sent`: a delta went out; `discard` drops the words not sent
 * yet, when the reply that carries them all follows. `streamed` tells
 * whether any word may be on its way to the client (after which the model
 * must not be asked again). A class, not closures: one per message in
 * processing, and those lived long enough to be ~15 % of the worker
 * thread's old-generation garbage.
 */
export class DeltaBatcher {
  private pending = '';
  private immediate: NodeJS.Immediate | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private lastSentAt = -Infinity;
  streamed = false;
  sent = false;

  constructor(
    private readonly send: (text: string) => void,
    private readonly intervalMs = 0,
    private readonly now: () => number = monotonicMs,
  ) {}

  push(text: string): void {
    this.streamed = true;
    this.pending += text;
    if (this.immediate || this.timeout) return;
    const wait = this.lastSentAt + this.intervalMs - this.now();
    if (wait > 0) this.timeout = setTimeout(() => this.flush(), wait);
    else this.immediate = setImmediate(() => this.flush());
  }

  flush(): void {
    this.unschedule();
    if (this.pending === '') return;
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

  private unschedule(): void {
    clearImmediate(this.immediate);
    clearTimeout(this.timeout);
    this.immediate = this.timeout = undefined;
  }
}
