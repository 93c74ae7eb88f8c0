import type { AdmissionEvent, LeaseState } from '../domain/admission';
import type { Bus, Subscription } from '../bus/port';

/** A held connection slot: the admission decider's lease. */
export type Lease = LeaseState;

export type AcquireResult =
  | { ok: true; lease: Lease }
  | { ok: false; reason: 'full' }
  /** See the admission decider's Refused: the client's slot is held by `holder`; `holder-late` comes with `retryAfterMs` (when it lapses unless renewed). */
  | { ok: false; reason: 'duplicate' | 'holder-late'; holder: Lease; retryAfterMs?: number };

/** What an Acquire decided, as the port reports it: its last event is the outcome. */
export function acquireResultOf(events: readonly AdmissionEvent[]): AcquireResult {
  const last = events[events.length - 1];
  if (last?.type === 'Admitted') return { ok: true, lease: last.lease };
  if (last?.type === 'Refused') {
    if (last.reason === 'full') return { ok: false, reason: 'full' };
    if (!last.holder) throw new Error(`an Acquire refused as ${last.reason} named no holder`);
    return { ok: false, reason: last.reason, holder: last.holder, ...(last.retryAfterMs !== undefined ? { retryAfterMs: last.retryAfterMs } : {}) };
  }
  throw new Error(`an Acquire ended in ${last?.type ?? 'nothing'}`);
}

/** What a renewal kept (see ConnectionRegistry.renew): every lease of the holder, or the sessions named. */
export type Renewal = 'all' | string[];

/** What a registry needs of the bus to tell and hear releases. */
export type ReleaseBus = Pick<Bus, 'publish' | 'subscribe' | 'onReconnect' | 'flush'>;

export interface AcquireRequest {
  clientId: string;
  sessionId: string;
  gatewayId: string;
  /** The gateway process (renewals name it); default the gateway id. */
  holder?: string;
  conversationId: string;
  now: number;
  leaseMs: number;
  maxClients: number;
  /** A holder not heard from this long is late (see the admission decider); default never. */
  lateAfterMs?: number;
}

/**
 * The active-connections model that admission works on. Acquire is atomic:
 * across every gateway sharing the store, at most maxClients leases exist and
 * at most one per client.
 */
export interface ConnectionRegistry {
  /**
   * Set by a registry shared between gateways that keeps one heartbeat per
   * holder: a holder silent this long is dead and its slots are freed, however
   * long CHATFLOW_LEASE_MS is. Gateways renew at least that often.
   */
  readonly deadHolderMs?: number;

  /**
   * Whether leases outlive the process (MongoDB). When they do not (memory),
   * the sessions a previous process left open died with it, and a gateway
   * records them as expired when it starts.
   */
  readonly leasesOutliveProcess: boolean;
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /**
   * Registries in several processes (MongoDB): tells this one's releases and
   * claims to the others over `bus` and hears theirs, so that a full house
   * can refuse without a round trip to the store, and tell a client connected
   * elsewhere from a newcomer (see the adapter). Absent where one
   * process holds every lease (memory). Unsubscribe to stop.
   */
  hearReleases?(bus: ReleaseBus): Promise<Subscription>;
  /** Releases the lease of a session; false if it was not held (already expired). */
  release(sessionId: string): Promise<boolean>;
  /**
   * Releases every lease of a holder at once and returns how many: a gateway
   * shutting down, once its sessions ended (none may be open: their slots go
   * to others at once). Their sessions' own releases then find nothing.
   */
  releaseHolder(holder: string): Promise<number>;
  /**
   * Extends every live lease of a holder (a gateway process) to now + leaseMs.
   * Answers `'all'` when the holder's heartbeat was still live (the usual case,
   * see the admission decider's renewalKeptAll): every lease its previous
   * renewal kept, and every one claimed since, is still held, and the store
   * read none of them. Otherwise (the first renewal, or one after a lapse) it
   * names the sessions renewed: a session of the holder missing from the list
   * has lost its slot. A holder's renewals must not overlap.
   */
  renew(holder: string, now: number, leaseMs: number): Promise<Renewal>;
  /** Removes leases expired at `now` and returns them (to record lease-expired events). */
  expire(now: number): Promise<Lease[]>;
  count(): Promise<number>;
  close(): Promise<void>;
}
