import { readFileSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from './metrics';

/**
 * What keeps TCP connections that carry no request from taking the process
 * down. Each connection holds a file descriptor: without a bound, a peer that
 * opens thousands of sockets and sends nothing on them (neither listener
 * closed such a socket, ever) fills the process's open-file table, and then
 * no client can connect and no upload or log segment can be opened.
 *
 * - At most `max` connections on the process's listeners together: one more
 *   is closed as soon as it is accepted, so the descriptors stay bounded.
 * - A connection that has not sent its protocol's opening bytes within
 *   `silentMs` of being accepted is closed: the gRPC listener waits for the
 *   HTTP/2 preface's 24 bytes (or a TLS hello, longer), the HTTP one for the
 *   first byte of a request (then Node's headers timeout takes over).
 */
export interface ConnectionLimits {
  /** Connections the listeners hold at once, all together. */
  max: number;
  /** How long a new connection may stay silent. */
  silentMs: number;
}

/** The connections open on the process's listeners, against their limits (one per process, shared by its listeners). */
export class ConnectionBudget {
  open = 0;
  constructor(readonly limits: ConnectionLimits) {}
}

export interface ConnectionEvents {
  /** A connection accepted, and one closed (by either side). */
  opened(): void;
  closed(): void;
  /** A connection closed at once: the listeners held `max`. */
  dropped(): void;
  /** A connection closed for sending too little within `silentMs`. */
  silent(): void;
  /** A connection closed for sending too many requests ahead of their answers (HTTP/1.1 pipelining). */
  flooded(): void;
  /** The listener could not accept a connection (the system's own limits: ENFILE, ENOMEM). */
  acceptFailed(err: Error): void;
}

/** What a listener under guard reports, and how it is let go. */
export interface GuardedListener {
  /** Destroys every connection still open (after the server's own shutdown). */
  destroyAll(): void;
}

/** The HTTP/2 client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"): what a gRPC client sends first; a TLS ClientHello is longer. */
export const HTTP2_PREFACE_BYTES = 24;

/**
 * Puts `server` (not listening yet) under `budget`: a connection beyond its
 * max is destroyed before the server's own handlers see it alive (they see
 * it destroyed, and let it go), and one needs `openingBytes` read within its
 * silentMs.
 */
export function guardConnections(server: Server, budget: ConnectionBudget, openingBytes: number, events: ConnectionEvents): GuardedListener {
  const sockets = new Set<Socket>();
  const { max, silentMs } = budget.limits;
  // Once listening, an error is a connection that could not be accepted: told, where unheard it would end the process.
  server.once('listening', () => server.on('error', (err) => events.acceptFailed(err)));
  server.prependListener('connection', (socket: Socket) => {
    if (budget.open >= max) {
      events.dropped();
      socket.destroy();
      return;
    }
    budget.open++;
    sockets.add(socket);
    events.opened();
    const timer = setTimeout(() => {
      if (socket.bytesRead >= openingBytes || socket.destroyed) return;
      events.silent();
      socket.destroy();
    }, silentMs);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      budget.open--;
      sockets.delete(socket);
      events.closed();
    });
  });
  return {
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Descriptors kept for the process's own files and engine connections (the log's segments, uploads being stored, Kafka, MongoDB, NATS). */
export const RESERVED_DESCRIPTORS = 1024;

/** The fewest connections the listeners are given whatever the open-file limit says. */
const MIN_CONNECTIONS = 64;

/**
 * Connections on the listeners together: the configured number (`0`: 4 per
 * client slot and 1,000 more, for browsers' several connections, refused
 * attempts, history calls and tools), lowered so that they leave
 * RESERVED_DESCRIPTORS of the open-file limit; `lowered` says it was (the
 * start-up log warns).
 */
export function connectionCap(configured: number, maxClients: number, openFileLimit: number | undefined): { max: number; lowered: boolean } {
  const wanted = configured > 0 ? configured : 4 * maxClients + 1000;
  if (openFileLimit === undefined) return { max: wanted, lowered: false };
  const room = Math.max(MIN_CONNECTIONS, openFileLimit - RESERVED_DESCRIPTORS);
  return wanted > room ? { max: room, lowered: true } : { max: wanted, lowered: false };
}

/** The process's open-file limit (soft; node raises it to the hard one at start), where the platform says (Linux); undefined elsewhere or unlimited. */
export function openFileLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  const n = Number(soft);
  return soft === undefined || !Number.isSafeInteger(n) || n <= 0 ? undefined : n;
}

/** How often at most a listener says, in the log, that it drops or closes connections. */
const WARN_EVERY_MS = 10_000;

/** A listener's guard events as metrics (by `listener`), and a warning at most every 10 s while it drops or closes connections. */
export function reportedEvents(
  listener: 'grpc' | 'http',
  limits: ConnectionLimits,
  metrics: Pick<Metrics, 'connectionsOpen' | 'connectionsDropped' | 'connectionsSilent' | 'connectionsFlooded'>,
  logger: Pick<Logger, 'warn'>,
  now: () => number = Date.now,
): ConnectionEvents {
  let warnedAt = -Infinity;
  const none = () => ({ dropped: 0, silent: 0, flooded: 0, acceptFailed: 0 });
  let since = none();
  const tell = (what: keyof typeof since, err?: Error) => {
    since[what]++;
    if (now() - warnedAt < WARN_EVERY_MS) return;
    warnedAt = now();
    logger.warn(
      { listener, ...since, maxConnections: limits.max, silentMs: limits.silentMs, ...(err ? { err: err.message } : {}) },
      `connections refused on the ${listener} listener (counts since the last warning): dropped at once while the listeners held CHATFLOW_MAX_CONNECTIONS (${limits.max}), silent for CHATFLOW_SILENT_CONNECTION_MS (${limits.silentMs} ms), flooded (more requests sent ahead of their answers than a client sends), or not accepted (the system's limits); clients already connected are served`,
    );
    since = none();
  };
  return {
    opened: () => metrics.connectionsOpen.inc({ listener }),
    closed: () => metrics.connectionsOpen.dec({ listener }),
    dropped: () => {
      metrics.connectionsDropped.inc({ listener });
      tell('dropped');
    },
    silent: () => {
      metrics.connectionsSilent.inc({ listener });
      tell('silent');
    },
    flooded: () => {
      metrics.connectionsFlooded.inc({ listener });
      tell('flooded');
    },
    acceptFailed: (err) => tell('acceptFailed', err),
  };
}
