import type { Logger } from 'pino';
import { NoResponderError, RemoteError, type Bus, type Subscription } from './port';

/** In-process bus for the embedded default (one process holds every stream). */
export class MemoryBus implements Bus {
  /** A subscriber that throws is logged here; the publisher and the other subscribers go on. */
  constructor(private readonly logger?: Logger) {}

  private readonly handlers = new Map<string, Set<(payload: Uint8Array) => void>>();
  private readonly responders = new Map<string, (payload: Uint8Array) => Promise<Uint8Array>>();

  async publish(subject: string, payload: Uint8Array): Promise<void> {
    const set = this.handlers.get(subject);
    if (!set) return;
    for (const h of [...set]) {
      // A failing subscriber must not break the publisher, the other subscribers, or the process.
      queueMicrotask(() => {
        try {
          h(payload);
        } catch (err) {
          this.logger?.error({ engine: 'memory-bus', err, subject }, 'subscriber failed');
        }
      });
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

  async request(subject: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const responder = this.responders.get(subject);
    if (!responder) throw new NoResponderError(subject);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new NoResponderError(subject, true)), timeoutMs)));
    try {
      return await Promise.race([
        responder(payload).catch((err: unknown) => {
          throw new RemoteError(err instanceof Error ? err.message : String(err));
        }),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  serve(subject: string, handler: (payload: Uint8Array) => Promise<Uint8Array>): Subscription {
    this.responders.set(subject, handler);
    return { unsubscribe: () => this.responders.get(subject) === handler && this.responders.delete(subject) };
  }

  /** One process, no connection to lose: never called. */
  onReconnect(): Subscription {
    return { unsubscribe: () => undefined };
  }

  /** Subscriptions take effect at once; what was published is delivered on the next microtasks. */
  async flush(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async close(): Promise<void> {
    this.handlers.clear();
    this.responders.clear();
  }
}
