import type { Decider } from './decider';

/**
 * Lease timing. CHATFLOW_LEASE_MS promises that a dead gateway's slots come
 * back within it. A slot comes back when its lease has expired AND a sweep has
 * run, so the lease a gateway writes must be shorter than the promise by one
 * sweep period. Renewing several times per lease keeps a live gateway's slots
 * safe through a missed renewal or two (a busy engine, a GC pause).
 */
export interface LeaseTiming {
  /** How far ahead each acquire and renewal sets `expiresAt`. */
  ttlMs: number;
  renewEveryMs: number;
  sweepEveryMs: number;
  /**
   * How long after the start of its last successful renewal a gateway still
   * vouches for its leases. Past it the leases may expire in the store and be
   * swept by another gateway, so the gateway closes its own sessions first:
   * two sweep periods before the earliest expiry, checked every sweep period.
   */
  trustMs: number;
}

export function leaseTiming(leaseMs: number): LeaseTiming {
  const sweepEveryMs = Math.max(100, Math.floor(leaseMs / 8));
  const ttlMs = leaseMs - sweepEveryMs;
  return { ttlMs, renewEveryMs: Math.max(100, Math.floor(ttlMs / 6)), sweepEveryMs, trustMs: ttlMs - 2 * sweepEveryMs };
}

/**
 * What a gateway knows of its own leases, as a pure decider. The store may be
 * unreachable (renewals fail) or may have dropped a lease (swept after a pause):
 * either way a stream must not outlive the slot it was admitted on, or another
 * gateway could admit the same client again, or admit one client too many.
 */
export interface LeaseKeeperState {
  /** When the last successful renewal was sent (leases then run to at least sentAt + ttl). */
  readonly renewedAt: number;
  /** When renewals started failing, or null. */
  readonly failingSince: number | null;
}

/** A session of this gateway: its lease exists from `admittedAt` on. */
export interface HeldSession {
  readonly sessionId: string;
  readonly admittedAt: number;
}

export type LeaseKeeperCommand =
  /** A renewal sent at `sentAt` came back with the sessions whose leases it extended. */
  | { type: 'RecordRenewal'; sentAt: number; renewed: readonly string[]; held: readonly HeldSession[] }
  | { type: 'RecordFailure'; now: number }
  /** Periodic check: may this gateway still vouch for its leases? */
  | { type: 'Check'; now: number; trustMs: number; held: readonly HeldSession[] };

export type LeaseKeeperEvent =
  | { type: 'Renewed'; sentAt: number }
  | { type: 'RenewalFailed'; at: number }
  /** These sessions no longer hold a lease in the store: close them (the client reconnects and is admitted afresh). */
  | { type: 'LeasesLost'; sessionIds: string[] }
  /** Renewals failed for too long: every session's lease may be gone by now. */
  | { type: 'TrustLost'; sessionIds: string[]; failingForMs: number };

export const leaseKeeper: Decider<LeaseKeeperCommand, LeaseKeeperEvent, LeaseKeeperState> = {
  initialState: () => ({ renewedAt: Number.NEGATIVE_INFINITY, failingSince: null }),

  decide(command, state) {
    switch (command.type) {
      case 'RecordRenewal': {
        // A renewal older than the last one says nothing new (responses can arrive out of order).
        if (command.sentAt < state.renewedAt) return [];
        const renewed = new Set(command.renewed);
        // Sessions admitted after the renewal was sent were not in what it read: their leases are fresh.
        const lost = command.held.filter((s) => s.admittedAt < command.sentAt && !renewed.has(s.sessionId)).map((s) => s.sessionId);
        return [{ type: 'Renewed', sentAt: command.sentAt }, ...(lost.length ? [{ type: 'LeasesLost' as const, sessionIds: lost }] : [])];
      }
      case 'RecordFailure':
        return state.failingSince === null ? [{ type: 'RenewalFailed', at: command.now }] : [];
      case 'Check': {
        // A session's lease runs to at least max(admittedAt, renewedAt) + ttl; trust ends trustMs after that.
        const untrusted = command.held.filter((s) => Math.max(s.admittedAt, state.renewedAt) + command.trustMs <= command.now);
        if (untrusted.length === 0) return [];
        return [{ type: 'TrustLost', sessionIds: untrusted.map((s) => s.sessionId), failingForMs: state.failingSince === null ? 0 : command.now - state.failingSince }];
      }
      default: {
        const never: never = command;
        throw new Error(`unknown command ${JSON.stringify(never)}`);
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'Renewed':
        return { renewedAt: event.sentAt, failingSince: null };
      case 'RenewalFailed':
        return { ...state, failingSince: event.at };
      case 'LeasesLost':
      case 'TrustLost':
        return state;
      default: {
        const never: never = event;
        throw new Error(`unknown event ${JSON.stringify(never)}`);
      }
    }
  },
};
