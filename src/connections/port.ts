export interface Lease {
  clientId: string;
  sessionId: string;
  gatewayId: string;
  conversationId: string;
  acquiredAt: number;
  expiresAt: number;
}

export type AcquireResult =
  | { ok: true; lease: Lease }
  | { ok: false; reason: 'full' | 'duplicate'; holder?: Lease };

export interface AcquireRequest {
  clientId: string;
  sessionId: string;
  gatewayId: string;
  conversationId: string;
  now: number;
  leaseMs: number;
  maxClients: number;
}

/**
 * The active-connections model that admission works on. Acquire is atomic:
 * across every gateway sharing the store, at most maxClients leases exist and
 * at most one per client.
 */
export interface ConnectionRegistry {
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Releases the lease of a session; false if it was not held (already expired). */
  release(sessionId: string): Promise<boolean>;
  /** Extends every lease of a gateway to now + leaseMs; returns how many were renewed. */
  renew(gatewayId: string, now: number, leaseMs: number): Promise<number>;
  /** Removes leases expired at `now` and returns them (to record lease-expired events). */
  expire(now: number): Promise<Lease[]>;
  count(): Promise<number>;
  close(): Promise<void>;
}
