import { headers, NoRespondersError, RequestError, TimeoutError, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { LATE, orLate } from '../resilience/late';
import { backoffDelay, retryWithBackoff } from '../resilience/retry';
import { NoResponderError, RemoteError, type Bus, type Subscription } from './port';

export interface NatsBusOptions {
  /** One URL or a comma-separated list, e.g. `nats://127.0.0.1:4222`. */
  url: string;
  /** Shown by the server's monitoring pages for this connection. */
  name?: string;
  logger: Logger;
  /** Start-up called off (the process stopped while NATS is away): connect gives up at once with its reason. */
  signal?: AbortSignal;
}

/** A reply carrying this header holds a responder's error message as its payload. */
const ERROR_HEADER = 'ChatFlow-Error';
/** Every replica of a session's responder is one queue group: a request is handled once. */
const RESPONDER_QUEUE = 'chatflow-responders';
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5_000;
const DRAIN_TIMEOUT_MS = 5_000;

/**
 * The bus on NATS core (no JetStream: delivery is at-most-once by design).
 * Publishes are not flushed one by one; the connection's own buffering sends
 * them in batches, and close() drains everything still pending.
 */
export class NatsBus implements Bus {
  private closing?: Promise<void>;
  /** False from a disconnect until the reconnect (see connected). */
  private up = true;
  private readonly reconnectListeners = new Set<() => void>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
  ) {}

  /**
   * Connects, waiting for the server for as long as it takes (it may start after us), as the other engines are
   * waited for at start: attempts retried with backoff, each one said, and given up at once when start-up is called
   * off (nats.js's own wait for a first connection cannot be stopped). Once connected, reconnects never give up.
   */
  static async connect(opts: NatsBusOptions): Promise<NatsBus> {
    const { logger } = opts;
    const servers = opts.url.split(',').map((s) => s.trim()).filter(Boolean);
    let attempt = 0;
    const nc = await retryWithBackoff(
      `NATS at ${servers.join(',')}`,
      logger.child({ engine: 'nats' }),
      () =>
        connect({
          servers,
          name: opts.name,
          maxReconnectAttempts: -1,
          reconnectDelayHandler: () => backoffDelay(++attempt, { baseMs: BACKOFF_MIN_MS, maxMs: BACKOFF_MAX_MS, jitter: 'equal' }),
        }),
      { baseMs: BACKOFF_MIN_MS, maxMs: BACKOFF_MAX_MS, signal: opts.signal, discard: (late) => late.close() },
    );
    attempt = 0;
    const bus = new NatsBus(nc, logger);
    bus.watchStatus(() => (attempt = 0));
    logger.info({ engine: 'nats', server: nc.getServer() }, 'NATS connected');
    return bus;
  }

  async publish(subject: string, payload: Uint8Array): Promise<void> {
    this.nc.publish(subject, payload);
  }

  subscribe(subject: string, handler: (payload: Uint8Array) => void): Subscription {
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          this.logger.warn({ engine: 'nats', err, subject }, 'subscription error');
          return;
        }
        try {
          handler(msg.data);
        } catch (e) {
          // A failing subscriber must not take the connection's dispatch loop down with it.
          this.logger.error({ engine: 'nats', err: e, subject }, 'subscriber failed');
        }
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  async request(subject: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    let reply: Msg;
    try {
      reply = await this.nc.request(subject, payload, { timeout: timeoutMs });
    } catch (err) {
      // v3 wraps the cause: RequestError(cause: NoRespondersError) or a TimeoutError.
      if ((err instanceof RequestError && err.isNoResponders()) || err instanceof NoRespondersError) throw new NoResponderError(subject);
      if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError)) throw new NoResponderError(subject, true);
      throw err;
    }
    if (reply.headers?.has(ERROR_HEADER)) throw new RemoteError(Buffer.from(reply.data).toString('utf8'));
    return reply.data;
  }

  serve(subject: string, handler: (payload: Uint8Array) => Promise<Uint8Array>): Subscription {
    const sub = this.nc.subscribe(subject, {
      queue: RESPONDER_QUEUE,
      callback: (err, msg) => {
        if (err) {
          this.logger.warn({ engine: 'nats', err, subject }, 'responder subscription error');
          return;
        }
        void this.answer(msg, handler);
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  /** Resolves once the server has everything sent before it (subscriptions included): a round trip to the server. */
  flush(): Promise<void> {
    return this.nc.flush();
  }

  connected(): boolean {
    return this.up && !this.nc.isClosed();
  }

  onReconnect(listener: () => void): Subscription {
    this.reconnectListeners.add(listener);
    return { unsubscribe: () => void this.reconnectListeners.delete(listener) };
  }

  /** Drains (pending publishes go out, subscriptions finish); with the server gone, gives up after a while. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      if ((await orLate(this.nc.drain(), DRAIN_TIMEOUT_MS)) === LATE) this.logger.warn({ engine: 'nats', timeoutMs: DRAIN_TIMEOUT_MS }, 'NATS drain did not finish; closing anyway');
    } catch (err) {
      this.logger.warn({ engine: 'nats', err }, 'NATS drain failed; closing');
    } finally {
      if (!this.nc.isClosed()) await this.nc.close();
    }
  }

  private async answer(msg: Msg, handler: (payload: Uint8Array) => Promise<Uint8Array>): Promise<void> {
    let reply: Uint8Array;
    let opts: { headers: MsgHdrs } | undefined;
    try {
      reply = await handler(msg.data);
    } catch (err) {
      reply = Buffer.from(err instanceof Error ? err.message : String(err), 'utf8');
      opts = { headers: headers() };
      opts.headers.set(ERROR_HEADER, '1');
    }
    try {
      msg.respond(reply, opts);
    } catch (err) {
      // The connection closed while the handler ran: the requester sees a timeout.
      this.logger.warn({ engine: 'nats', err, subject: msg.subject }, 'could not send a reply');
    }
  }

  private watchStatus(onReconnect: () => void): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        switch (s.type) {
          case 'disconnect':
            this.up = false;
            this.logger.warn({ engine: 'nats', server: s.server }, 'NATS disconnected; reconnecting');
            break;
          case 'reconnect':
            this.up = true;
            onReconnect();
            this.logger.warn({ engine: 'nats', server: s.server }, 'NATS reconnected');
            for (const l of this.reconnectListeners) {
              try {
                l();
              } catch (err) {
                this.logger.error({ engine: 'nats', err }, 'reconnect listener failed');
              }
            }
            break;
          case 'ldm':
            this.logger.warn({ engine: 'nats', server: s.server }, 'NATS server entering lame duck mode');
            break;
          case 'error':
            this.logger.warn({ engine: 'nats', err: s.error }, 'NATS async error');
            break;
          case 'slowConsumer':
            this.logger.warn({ engine: 'nats', subject: s.sub.getSubject(), pending: s.pending }, 'NATS subscriber too slow; the server may drop its messages');
            break;
          default:
            break;
        }
      }
    })();
    void this.nc.closed().then((err) => {
      if (err) this.logger.error({ engine: 'nats', err }, 'NATS connection closed with an error');
    });
  }
}
