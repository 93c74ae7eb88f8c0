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
  /**
   * A holder not heard from (no renewal) for this long is late: two renewal
   * periods, so one missed or slow renewal of a live gateway does not make it
   * late. A late holder's client is told when its slot lapses, not that it is
   * connected (see secondConnection).
   */
  lateAfterMs: number;
}

export function leaseTiming(leaseMs: number): LeaseTiming {
  const sweepEveryMs = Math.max(100, Math.floor(leaseMs / 8));
  const ttlMs = leaseMs - sweepEveryMs;
  const renewEveryMs = Math.max(100, Math.floor(ttlMs / 6));
  return { ttlMs, renewEveryMs, sweepEveryMs, trustMs: ttlMs - 2 * sweepEveryMs, lateAfterMs: 2 * renewEveryMs };
}

/**
 * Whether a gateway may still vouch for its slots at `now`: its last good
 * renewal (its heartbeat) was sent less than `trustMs` ago. A slot lives as
 * long as its holder's heartbeat, so this holds for a slot just claimed too: a
 * claim that came back after renewals stopped working is given back.
 */
export function trusted(state: LeaseKeeperState, now: number, timing: Pick<LeaseTiming, 'trustMs'>): boolean {
  return state.renewedAt + timing.trustMs > now;
}

/**
 * Whether a gateway may keep the slot of a claim sent at `admittedAt` that
 * came back at `claimedAt`: it still vouches for its slots then (trusted), and
 * the claim came back less than `trustMs` after it was sent. A claim is
 * stamped with the time it was sent, and another gateway judges it on that
 * stamp (its own expiry) until it sees the holder's heartbeat renewed after
 * it: a sweep that read the heartbeat just before, as a store coming back
 * from an outage answers the claims that waited for it, would free a slot
 * whose expiry passed before it was even stored, under a live stream. One
 * that came back in time is covered, as the trust window covers a
 * heartbeat: were it not renewed by then, the gateway would close the stream
 * a sweep period before any sweep could free the slot.
 */
export function mayKeepClaim(state: LeaseKeeperState, claim: Pick<HeldSession, 'admittedAt' | 'claimedAt'>, timing: Pick<LeaseTiming, 'trustMs'>): boolean {
  return trusted(state, claim.claimedAt, timing) && claim.claimedAt < claim.admittedAt + timing.trustMs;
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

/**
 * A session of this gateway. Its lease was computed from `admittedAt` (when the
 * claim was sent: what its expiry counts from) and was in the store by
 * `claimedAt` (when the claim came back): a renewal sent before `claimedAt` may
 * not have seen it.
 */
export interface HeldSession {
  readonly sessionId: string;
  readonly admittedAt: number;
  readonly claimedAt: number;
}

export type LeaseKeeperCommand =
  /**
   * A renewal sent at `sentAt` came back: `'all'` (every lease of this gateway
   * still held: its heartbeat had not lapsed) or the sessions whose leases it
   * extended. `held`: the sessions to check against a list (empty when the
   * gateway found each of its sessions in it).
   */
  | { type: 'RecordRenewal'; sentAt: number; renewed: 'all' | readonly string[]; held: readonly HeldSession[] }
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
        // Every lease kept (the store's heartbeat had not lapsed), or no session to check (the gateway found every
        // one renewed): no set of 10,000 renewed ids per renewal.
        if (command.renewed === 'all' || command.held.length === 0) return [{ type: 'Renewed', sentAt: command.sentAt }];
        const renewed = new Set(command.renewed);
        // Only a lease in the store before the renewal was sent had to be in what it read.
        const lost = command.held.filter((s) => s.claimedAt < command.sentAt && !renewed.has(s.sessionId)).map((s) => s.sessionId);
        return [{ type: 'Renewed', sentAt: command.sentAt }, ...(lost.length ? [{ type: 'LeasesLost' as const, sessionIds: lost }] : [])];
      }
      case 'RecordFailure':
        return state.failingSince === null ? [{ type: 'RenewalFailed', at: command.now }] : [];
      case 'Check': {
        // Every slot of this gateway lives as long as its heartbeat, the last good renewal: one admitted after
        // it (its claim stamped later) is no safer.
        if (trusted(state, command.now, command) || command.held.length === 0) return [];
        return [{ type: 'TrustLost', sessionIds: command.held.map((s) => s.sessionId), failingForMs: state.failingSince === null ? 0 : command.now - state.failingSince }];
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
