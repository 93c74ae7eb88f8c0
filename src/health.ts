/**
 * Whether this process should get traffic, as a set of named reasons not to:
 * serving when there is none. Each part of the process sets and clears its own
 * reason (`starting`, `draining`, ...); `/healthz` reports them and the gRPC
 * health service follows them (SERVING / NOT_SERVING).
 */
export class Health {
  private readonly reasons = new Map<string, string>();
  private readonly listeners: ((serving: boolean) => void)[] = [];

  constructor(initial: Record<string, string> = {}) {
    for (const [name, detail] of Object.entries(initial)) this.reasons.set(name, detail);
  }

  get serving(): boolean {
    return this.reasons.size === 0;
  }

  /** Reason name → what a person reads, e.g. `{ draining: 'shutting down' }`. */
  get unavailable(): Record<string, string> {
    return Object.fromEntries(this.reasons);
  }

  set(reason: string, detail: string): void {
    const was = this.serving;
    this.reasons.set(reason, detail);
    if (was) this.notify();
  }

  /** Sets `reason` when given a detail, clears it when given undefined (for sources that report a state). */
  report(reason: string, detail: string | undefined): void {
    if (detail === undefined) this.clear(reason);
    else this.set(reason, detail);
  }

  clear(reason: string): void {
    if (!this.reasons.delete(reason) || !this.serving) return;
    this.notify();
  }

  /** Called now with the current state, then on every change. */
  onChange(listener: (serving: boolean) => void): void {
    this.listeners.push(listener);
    listener(this.serving);
  }

  private notify(): void {
    for (const l of this.listeners) l(this.serving);
  }
}
