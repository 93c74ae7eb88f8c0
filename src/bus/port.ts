/**
 * Delivers finished responses and deltas to the gateway that holds the client's
 * stream, and routes requests (a gRPC-Web `Send`) to the gateway holding a session.
 * Delivery is at-most-once: a client that missed frames resumes with x-resume-after.
 */
export interface Bus {
  publish(subject: string, payload: Uint8Array): Promise<void>;
  subscribe(subject: string, handler: (payload: Uint8Array) => void): Subscription;
  /**
   * Sends a request to the one responder of `subject` and resolves with its reply.
   * Rejects with NoResponderError when nobody serves the subject, or on timeout.
   */
  request(subject: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Answers requests on `subject`; a rejected handler answers with an error the requester sees. */
  serve(subject: string, handler: (payload: Uint8Array) => Promise<Uint8Array>): Subscription;
  /**
   * Calls `listener` each time the bus is connected again after losing its
   * server: whatever was published meanwhile may never arrive, so holders of
   * streams look up what they were waiting for (the in-process bus never loses).
   */
  onReconnect(listener: () => void): Subscription;
  /**
   * False while the bus has lost its server: what is published meanwhile
   * waits in this process's memory until it is back, or is lost. A bus that
   * cannot lose its server (in-process) leaves it out.
   */
  connected?(): boolean;
  /**
   * Resolves once everything this bus sent before the call (subscriptions,
   * responders, publishes) has reached its server: after `await flush()` a
   * new subscription receives what others publish next.
   */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface Subscription {
  unsubscribe(): void;
}

/** Nobody serves the subject (e.g. the session's gateway is gone), or it did not answer in time. */
export class NoResponderError extends Error {
  constructor(subject: string, readonly timedOut = false) {
    super(timedOut ? `no reply on ${subject} in time` : `no responder for ${subject}`);
  }
}

/** A responder's failure, carried back to the requester as its message. */
export class RemoteError extends Error {}

/** Subject for everything addressed to one client (safe for NATS whatever the client id). */
export function clientSubject(clientId: string): string {
  return `chatflow.client.${Buffer.from(clientId, 'utf8').toString('base64url')}`;
}

/** Subject the gateway holding a session answers `Send` requests on. */
export function sessionSubject(sessionId: string): string {
  return `chatflow.session.${Buffer.from(sessionId, 'utf8').toString('base64url')}`;
}
