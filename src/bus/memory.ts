import type { Bus, Subscription } from './port';

/** In-process bus for the embedded default (one process holds every stream). */
export class MemoryBus implements Bus {
  private readonly handlers = new Map<string, Set<(payload: Uint8Array) => void>>();

  async publish(subject: string, payload: Uint8Array): Promise<void> {
    const set = this.handlers.get(subject);
    if (!set) return;
    for (const h of [...set]) {
      // A failing subscriber must not break the publisher or the other subscribers.
      queueMicrotask(() => h(payload));
    }
  }

  subscribe(subject: string, handler: (payload: Uint8Array) => void): Subscription {
    let set = this.handlers.get(subject);
    if (!set) this.handlers.set(subject, (set = new Set()));
    set.add(handler);
    return {
      unsubscribe: () => {
        set.delete(handler);
        if (set.size === 0) this.handlers.delete(subject);
      },
    };
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}
