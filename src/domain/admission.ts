import type { Decider } from './decider';

/**
 * Admission as a pure decider: at most `maxClients` connected clients, one
 * connection per client, leases that expire when their gateway stops renewing.
 * Time comes in as an argument; nothing here reads a clock.
 */
export interface LeaseState {
  readonly clientId: string;
  readonly sessionId: string;
  readonly gatewayId: string;
  /**
   * The gateway process holding it (one per start of a gateway, so a restarted
   * gateway never renews its previous run's leases); renewals name it. Absent
   * on leases written before holders existed: their gateway id stands in.
   */
  readonly holder?: string;
  readonly conversationId: string;
  readonly acquiredAt: number;
  /**
   * Until when the slot is held: as acquired in the state (acquiredAt + lease);
   * once its holder's heartbeat renewed it, the heartbeat's expiry stands in
   * (leaseAsHeld gives the lease with it; a store that applies it itself, as
   * MongoDB's does, hands the decider leases with it here).
   */
  readonly expiresAt: number;
  /** When its holder last renewed it (as `expiresAt`: its heartbeat's); absent until the first renewal: `acquiredAt` stands in. */
  readonly renewedAt?: number;
}

/** When a lease's holder was last heard from: its last renewal, or the acquire itself if later. */
export function heardAt(lease: LeaseState): number {
  return Math.max(lease.renewedAt ?? Number.NEGATIVE_INFINITY, lease.acquiredAt);
}

/**
 * Whether a holder's heartbeat (kept by a store with one per holder) can go:
 * the holder holds no slot and its heartbeat lapsed `deadHolderMs` ago — a
 * gateway that stopped renewing that long has closed its sessions (it stops
 * trusting its slots sooner), so nothing it still does counts on it; one that
 * renews again writes a new one.
 */
export function heartbeatPrunable(expiresAt: number, holdsSlots: boolean, now: number, deadHolderMs: number): boolean {
  return !holdsSlots && expiresAt <= now - deadHolderMs;
}

/** Who renews a lease. */
export function holderOf(lease: LeaseState): string {
  return lease.holder ?? lease.gatewayId;
}

/**
 * A holder's heartbeat: one per holder (gateway process), whatever the number
 * of its leases, so a renewal changes one entry, not one per lease. A lease
 * the heartbeat has renewed is held until the heartbeat's `expiresAt` (see
 * leaseAsHeld).
 */
export interface HolderHeartbeat {
  /**
   * When this unbroken run of renewals began: a renewal arriving after the
   * heartbeat lapsed starts a new run, and leases that had lapsed before it
   * are not revived.
   */
  readonly since: number;
  readonly expiresAt: number;
  readonly renewedAt: number;
}

export interface AdmissionState {
  /** Leases by client id, as acquired (a renewal changes its holder's heartbeat, not the lease). */
  readonly leases: ReadonlyMap<string, LeaseState>;
  /** Heartbeats by holder. Absent (a store that hands in leases with their holder's expiry already applied): none. */
  readonly heartbeats?: ReadonlyMap<string, HolderHeartbeat>;
  /**
   * Optional indexes an adapter may keep so a decision need not scan every
   * lease (10,000 on one gateway): they change no decision, only its cost.
   * `sessions`: client id by session id, for every lease.
   * `noneExpireBefore`: no lease's expiry as held (leaseAsHeld) is below this (a lower bound).
   */
  readonly sessions?: ReadonlyMap<string, string>;
  readonly noneExpireBefore?: number;
  /**
   * Live slots known to be held, listed in `leases` or not: a lower bound an
   * adapter may know without reading every lease (the gateways' own counts,
   * see MongoConnectionRegistry). The house is full once it reaches
   * maxClients, however few leases are listed. The adapter must list the
   * client's own lease whenever it is held (it looks it up): one not listed
   * would be refused as `full` where the rule says `duplicate`.
   */
  readonly heldAtLeast?: number;
}

/**
 * Whether a holder's heartbeat has renewed a lease: the lease was live when the
 * heartbeat's current run began, or was acquired during it, and not after its
 * last renewal. (A lease acquired during the run is renewed by the next
 * renewal: those come less than a lease apart, or the run would have broken,
 * as long as a holder's acquires and renewals set the same lease length; a
 * gateway sets both from CHATFLOW_LEASE_MS.)
 */
function renewedByHeartbeat(lease: LeaseState, beat: HolderHeartbeat | undefined): beat is HolderHeartbeat {
  return beat !== undefined && lease.expiresAt > beat.since && lease.acquiredAt <= beat.renewedAt;
}

/** When a lease lapses: its holder's heartbeat's expiry once that renewed it, its own until then. */
export function expiryOf(lease: LeaseState, heartbeats: AdmissionState['heartbeats']): number {
  const beat = heartbeats?.get(holderOf(lease));
  return renewedByHeartbeat(lease, beat) ? beat.expiresAt : lease.expiresAt;
}

/** A lease as held: with its holder's heartbeat's expiry and last renewal once that renewed it. */
export function leaseAsHeld(lease: LeaseState, heartbeats: AdmissionState['heartbeats']): LeaseState {
  const beat = heartbeats?.get(holderOf(lease));
  return renewedByHeartbeat(lease, beat) ? { ...lease, expiresAt: beat.expiresAt, renewedAt: beat.renewedAt } : lease;
}

/**
 * Whether a renewal of a holder at `now` kept every lease the holder still
 * had, given its heartbeat as it stood just before the renewal (`before`;
 * null or undefined: none): it was live at `now`. A lease is swept or evicted only once
 * it lapsed — with its holder's heartbeat once that renewed it, at its own
 * expiry before — and a heartbeat is only ever pushed forward, so while it
 * stayed live no lease it renewed lapsed, and a lease claimed since lives at
 * least until the renewal after its claim (acquires and renewals set the same
 * lease length). A store then need not read the holder's leases: the renewal
 * answers "all" (its cost does not grow with the sessions). Only after a lapse
 * (a long pause, an outage) or before the first heartbeat must it read them and
 * name the live ones (`renewedSessions`).
 *
 * "All" speaks for the leases the holder's previous renewal named or kept and
 * those claimed since, so a holder's renewals must not overlap: one answered
 * "all" before an earlier one that named lost leases would hide the loss.
 */
export function renewalKeptAll<B extends Pick<HolderHeartbeat, 'expiresAt'>>(before: B | null | undefined, now: number): before is B {
  return before !== undefined && before !== null && before.expiresAt > now;
}

/**
 * The sessions a renewal of `holder` at `now` extends (a store's answer to a
 * renewal): the holder's leases live at `now`, before the renewal. `leases`:
 * the leases to look at, e.g. an adapter's index of this holder's (default all).
 */
export function renewedSessions(state: AdmissionState, holder: string, now: number, leases: Iterable<LeaseState> = state.leases.values()): string[] {
  const renewed: string[] = [];
  for (const l of leases) if (holderOf(l) === holder && expiryOf(l, state.heartbeats) > now) renewed.push(l.sessionId);
  return renewed;
}

export type AdmissionCommand =
  /**
   * `lateAfterMs`: a holder not heard from (no renewal) for this long may be
   * dead; its client's slot is held until the lease lapses, but the refusal
   * says `holder-late` rather than `duplicate`. Absent: never late.
   */
  | { type: 'Acquire'; clientId: string; sessionId: string; gatewayId: string; holder?: string; conversationId: string; now: number; leaseMs: number; maxClients: number; lateAfterMs?: number }
  | { type: 'Release'; sessionId: string }
  /** A holder shutting down once its sessions ended: every lease it holds, given back at once. */
  | { type: 'ReleaseHolder'; holder: string }
  /** `gatewayId`: the holder renewing (see LeaseState.holder). */
  | { type: 'Renew'; gatewayId: string; now: number; leaseMs: number }
  | { type: 'Expire'; now: number };

export type AdmissionEvent =
  | { type: 'Admitted'; lease: LeaseState }
  /**
   * `duplicate`: the client's slot is held by a holder heard from lately (its
   * first connection lives, as far as the store knows). `holder-late`: held by
   * a holder whose heartbeat is late — alive or dead, nobody knows yet; the
   * slot is free `retryAfterMs` from now unless the holder renews it.
   */
  | { type: 'Refused'; reason: 'full' | 'duplicate' | 'holder-late'; clientId: string; holder?: LeaseState; retryAfterMs?: number }
  | { type: 'Released'; lease: LeaseState }
  /** One event per renewal whatever the number of the holder's leases (see HolderHeartbeat). */
  | { type: 'HolderRenewed'; holder: string; heartbeat: HolderHeartbeat }
  | { type: 'Expired'; lease: LeaseState };

export function initialAdmissionState(): AdmissionState {
  return { leases: new Map() };
}

export function decideAdmission(command: AdmissionCommand, state: AdmissionState): AdmissionEvent[] {
  const beats = state.heartbeats;
  switch (command.type) {
    case 'Acquire': {
      const current = state.leases.get(command.clientId);
      // A live lease of the same client wins; an expired one no longer counts.
      if (current && expiryOf(current, beats) > command.now) {
        const holder = leaseAsHeld(current, beats);
        if (command.now - heardAt(holder) > (command.lateAfterMs ?? Infinity)) {
          return [{ type: 'Refused', reason: 'holder-late', clientId: command.clientId, holder, retryAfterMs: holder.expiresAt - command.now }];
        }
        return [{ type: 'Refused', reason: 'duplicate', clientId: command.clientId, holder }];
      }
      if (noneExpired(state, command.now)) {
        // No lease has expired, so every lease is live and none is this client's (a live one was refused above):
        // the same decision as the scan below, without it.
        if (Math.max(state.leases.size, state.heldAtLeast ?? 0) >= command.maxClients) return [{ type: 'Refused', reason: 'full', clientId: command.clientId }];
        return [{ type: 'Admitted', lease: newLease(command) }];
      }
      let live = 0;
      const expired: AdmissionEvent[] = [];
      for (const l of state.leases.values()) {
        if (expiryOf(l, beats) > command.now) live += l.clientId !== command.clientId ? 1 : 0;
        else expired.push({ type: 'Expired', lease: leaseAsHeld(l, beats) });
      }
      if (Math.max(live, state.heldAtLeast ?? 0) >= command.maxClients) {
        return [{ type: 'Refused', reason: 'full', clientId: command.clientId }];
      }
      return [...expired, { type: 'Admitted', lease: newLease(command) }];
    }
    case 'Release': {
      const lease = state.sessions
        ? state.leases.get(state.sessions.get(command.sessionId) ?? '')
        : [...state.leases.values()].find((l) => l.sessionId === command.sessionId);
      return lease?.sessionId === command.sessionId ? [{ type: 'Released', lease: leaseAsHeld(lease, beats) }] : [];
    }
    case 'ReleaseHolder': {
      const released: AdmissionEvent[] = [];
      for (const l of state.leases.values()) if (holderOf(l) === command.holder) released.push({ type: 'Released', lease: leaseAsHeld(l, beats) });
      return released;
    }
    case 'Renew': {
      // One heartbeat per holder: its leases are not touched. Never moved back (a late renewal cannot shorten it).
      const beat = beats?.get(command.gatewayId);
      const unbroken = renewalKeptAll(beat, command.now);
      return [{
        type: 'HolderRenewed',
        holder: command.gatewayId,
        heartbeat: {
          since: unbroken ? beat.since : command.now,
          expiresAt: Math.max(command.now + command.leaseMs, unbroken ? beat.expiresAt : Number.NEGATIVE_INFINITY),
          renewedAt: Math.max(command.now, unbroken ? beat.renewedAt : Number.NEGATIVE_INFINITY),
        },
      }];
    }
    case 'Expire': {
      if (noneExpired(state, command.now)) return [];
      const expired: AdmissionEvent[] = [];
      for (const l of state.leases.values()) if (expiryOf(l, beats) <= command.now) expired.push({ type: 'Expired', lease: leaseAsHeld(l, beats) });
      return expired;
    }
    default: {
      const never: never = command;
      throw new Error(`unknown command ${JSON.stringify(never)}`);
    }
  }
}

/** Whether the `noneExpireBefore` index says no lease can have expired at `now`. */
function noneExpired(state: AdmissionState, now: number): boolean {
  return state.noneExpireBefore !== undefined && state.noneExpireBefore > now;
}

function newLease(command: Extract<AdmissionCommand, { type: 'Acquire' }>): LeaseState {
  return {
    clientId: command.clientId,
    sessionId: command.sessionId,
    gatewayId: command.gatewayId,
    ...(command.holder ? { holder: command.holder } : {}),
    conversationId: command.conversationId,
    acquiredAt: command.now,
    expiresAt: command.now + command.leaseMs,
  };
}

/**
 * What an event changes, as a change to one entry: `{ clientId, lease }` sets
 * a client's lease (lease undefined = removes it), `{ holder, heartbeat }`
 * sets a holder's heartbeat; null = nothing. `evolveAdmission` applies it to a
 * copy; an in-memory adapter may apply it in place (copying a 10,000-entry map
 * per event is what it must not do).
 */
export type AdmissionChange = { clientId: string; lease: LeaseState | undefined } | { holder: string; heartbeat: HolderHeartbeat };

export function admissionChange(leases: ReadonlyMap<string, LeaseState>, event: AdmissionEvent): AdmissionChange | null {
  switch (event.type) {
    case 'Admitted':
      return { clientId: event.lease.clientId, lease: event.lease };
    case 'Released':
    case 'Expired':
      if (leases.get(event.lease.clientId)?.sessionId !== event.lease.sessionId) return null;
      return { clientId: event.lease.clientId, lease: undefined };
    case 'HolderRenewed':
      return { holder: event.holder, heartbeat: event.heartbeat };
    case 'Refused':
      return null;
    default: {
      const never: never = event;
      throw new Error(`unknown event ${JSON.stringify(never)}`);
    }
  }
}

export function evolveAdmission(state: AdmissionState, event: AdmissionEvent): AdmissionState {
  const change = admissionChange(state.leases, event);
  if (!change) return state;
  if ('holder' in change) return { leases: state.leases, heartbeats: new Map(state.heartbeats).set(change.holder, change.heartbeat) };
  const leases = new Map(state.leases);
  if (change.lease) leases.set(change.clientId, change.lease);
  else leases.delete(change.clientId);
  return { leases, ...(state.heartbeats ? { heartbeats: state.heartbeats } : {}) };
}

export const admission: Decider<AdmissionCommand, AdmissionEvent, AdmissionState> = {
  decide: decideAdmission,
  evolve: evolveAdmission,
  initialState: initialAdmissionState,
};

/** The state a registry holds, as the decider sees it: one lease per client. */
export function admissionStateOf(leases: Iterable<LeaseState>): AdmissionState {
  return { leases: new Map([...leases].map((l) => [l.clientId, l])) };
}
