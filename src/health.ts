/**
 * Why this process cannot serve right now, one reason per named source
 * (`event-log`: the log cannot append; more sources may add theirs). `/healthz`
 * and the gRPC health service both read it: any reason = not serving.
 */
export class HealthConditions {
  private readonly reasons = new Map<string, string>();
  private readonly listeners = new Set<() => void>();

  /** Sets (a string) or clears (undefined) the reason of `source`. */
  set(source: string, reason: string | undefined): void {
    if (this.reasons.get(source) === reason) return;
    if (reason === undefined) this.reasons.delete(source);
    else this.reasons.set(source, reason);
    for (const l of this.listeners) l();
  }

  get ok(): boolean {
    return this.reasons.size === 0;
  }

  /** The current reasons, in plain words (each names what is wrong). */
  list(): string[] {
    return [...this.reasons.values()];
  }

  /** Calls `listener` after every change; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
