import type { Config } from '../config/config';
import { ChatFlowError } from '../domain/errors';

/**
 * How many requests of a kind one process reads and handles at once, and how
 * many of them one caller may hold. A request waits for a place before any of
 * it is read (its stream stays paused: HTTP/2 flow control stops the sender),
 * and holds it until it is answered. Two kinds have places: requests that may
 * carry an upload (a `Send`: up to the server's largest message, 17 MiB by
 * default; without a bound, a token holder's 200 Sends of 16 MiB at once took
 * the server to 3.5 GB), and the calls of every other method but the
 * sessions' (history, health, reflection: without a bound, 50,000 health
 * checks on one connection, each sending part of its request, took it to
 * 2.2 GB).
 */
export interface RequestPlacesOptions {
  /** Requests read and handled at once, all clients together. */
  atOnce: number;
  /** Of which one client may hold at most this many (its others wait). */
  perClient: number;
  /** A request that waited this long for a place is refused (RESOURCE_EXHAUSTED + retry-after-ms). */
  waitMs: number;
  /** Requests waiting at most; beyond, refused at once. */
  maxWaiting: number;
  /** What the refused are told to wait before trying again. */
  retryAfterMs: number;
  /** Called for each request refused for want of a place (a metric). */
  onBusy?: () => void;
  /** What the refused are told is happening ("too many uploads are being received; send again", followed by "in N ms"). */
  busy: string;
}

/** A Send waits at most this long for a place. */
const SEND_WAIT_MS = 5_000;
/**
 * What the Sends waiting unread may hold together: each holds up to its
 * stream's receive window (CHATFLOW_GRPC_WINDOW_BYTES), sent before the
 * gateway stopped reading. So at most this ÷ the window wait (64 at 1 MiB),
 * and never more than SENDS_WAITING.
 */
const SENDS_WAITING_BYTES = 64 * 1024 * 1024;
const SENDS_WAITING = 1_000;

/** A process's places for Sends, as configured (CHATFLOW_SENDS_AT_ONCE, CHATFLOW_SENDS_PER_CLIENT); `onBusy` counts the refused. */
export function sendPlaces(config: Pick<Config, 'sends' | 'retryAfterMs' | 'grpc'>, onBusy: () => void): RequestPlaces {
  const maxWaiting = Math.max(1, Math.min(SENDS_WAITING, Math.floor(SENDS_WAITING_BYTES / config.grpc.windowBytes)));
  const { atOnce, perClient } = config.sends;
  return new RequestPlaces({ atOnce, perClient, waitMs: SEND_WAIT_MS, maxWaiting, retryAfterMs: config.retryAfterMs, onBusy, busy: 'too many uploads are being received; send again' });
}

/**
 * A call waits at most this long for a place: history calls are answered in
 * milliseconds, so a place frees soon unless callers hold them on purpose.
 */
const CALL_WAIT_MS = 1_000;

/**
 * A process's places for the calls of every method but Chat, Connect and
 * Send (CHATFLOW_CALLS_AT_ONCE, CHATFLOW_CALLS_PER_CLIENT): as many may wait
 * as may hold one (a waiting call's stream is paused, its request unread).
 */
export function callPlaces(config: Pick<Config, 'calls' | 'retryAfterMs'>, onBusy: () => void): RequestPlaces {
  return new RequestPlaces({ ...config.calls, waitMs: CALL_WAIT_MS, maxWaiting: config.calls.atOnce, retryAfterMs: config.retryAfterMs, onBusy, busy: 'too many calls are open; call again' });
}

/** A request's place (RequestPlaces.take). */
export interface Place {
  /**
   * Absent when the place was free at once. Otherwise resolves once the place is held, or once the request ended
   * while it waited (`end`), and rejects RESOURCE_EXHAUSTED + retry-after-ms when it waited too long or too many wait.
   */
  readonly wait?: Promise<void>;
  /** The request is over (answered, cancelled, its client gone): gives back the place it holds, or leaves the queue. Idempotent. */
  end(): void;
}

interface Waiter {
  clientId: string;
  grant: (release: () => void) => void;
  timer: NodeJS.Timeout;
}

/** Places for requests of one kind (uploads, calls, or media downloads): taken in arrival order, a client's own beyond `perClient` skipped until one of its places frees. */
export class RequestPlaces {
  private held = 0;
  private readonly byClient = new Map<string, number>();
  private readonly waiting: Waiter[] = [];

  constructor(private readonly opts: RequestPlacesOptions) {}

  /**
   * A place for `clientId`: held at once if one is free (then `wait` is absent), else waited for in arrival order.
   * The caller calls `end()` once the request is over, whether it holds its place or still waits for it.
   */
  take(clientId: string): Place {
    // Any place a waiting request could take was given to it when it freed: one free now is for this client's taking.
    if (this.free(clientId)) return { end: this.grant(clientId) };
    if (this.waiting.length >= this.opts.maxWaiting) return { wait: Promise.reject(this.busy()), end: () => undefined };
    let granted!: () => void;
    let refused!: (err: unknown) => void;
    const wait = new Promise<void>((resolve, reject) => {
      granted = resolve;
      refused = reject;
    });
    let release: (() => void) | undefined;
    const w: Waiter = {
      clientId,
      grant: (r) => {
        release = r;
        granted();
      },
      timer: setTimeout(() => {
        this.unwait(w);
        refused(this.busy());
      }, this.opts.waitMs),
    };
    this.waiting.push(w);
    return {
      wait,
      end: () => {
        if (release) release();
        else if (this.unwait(w)) granted(); // left the queue: nothing to hold
      },
    };
  }

  /** Takes `w` out of the queue; false if it was no longer there (granted or refused). */
  private unwait(w: Waiter): boolean {
    const i = this.waiting.indexOf(w);
    if (i < 0) return false;
    clearTimeout(w.timer);
    this.waiting.splice(i, 1);
    return true;
  }

  /** Places held now (for tests and metrics). */
  get inUse(): number {
    return this.held;
  }

  private free(clientId: string): boolean {
    return this.held < this.opts.atOnce && (this.byClient.get(clientId) ?? 0) < this.opts.perClient;
  }

  private grant(clientId: string): () => void {
    this.held++;
    this.byClient.set(clientId, (this.byClient.get(clientId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
      const n = this.byClient.get(clientId)! - 1;
      if (n === 0) this.byClient.delete(clientId);
      else this.byClient.set(clientId, n);
      this.next();
    };
  }

  /** The first waiting request whose client may take a place now gets it. */
  private next(): void {
    const i = this.waiting.findIndex((w) => this.free(w.clientId));
    if (i < 0) return;
    const w = this.waiting[i]!;
    this.unwait(w);
    w.grant(this.grant(w.clientId));
  }

  private busy(): ChatFlowError {
    this.opts.onBusy?.();
    return new ChatFlowError('RESOURCE_EXHAUSTED', `${this.opts.busy} in ${this.opts.retryAfterMs} ms`, {
      'retry-after-ms': String(this.opts.retryAfterMs),
    });
  }
}
