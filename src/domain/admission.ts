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
  /** Until when the slot is held; a store that keeps one heartbeat per holder gives its holder's here. */
  readonly expiresAt: number;
  /**
   * When its holder last renewed it (a store that keeps one heartbeat per
   * holder gives its holder's last heartbeat here); absent until the first
   * renewal: `acquiredAt` stands in.
   */
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

export interface AdmissionState {
  /** Leases by client id. */
  readonly leases: ReadonlyMap<string, LeaseState>;
  /**
   * Optional indexes an adapter may keep so a decision need not scan every
   * lease (10,000 on one gateway): they change no decision, only its cost.
   * `sessions`: client id by session id, for every lease.
   * `noneExpireBefore`: no lease's `expiresAt` is below this (a lower bound).
   */
  readonly sessions?: ReadonlyMap<string, string>;
  readonly noneExpireBefore?: number;
}

export type AdmissionCommand =
  /**
   * `lateAfterMs`: a holder not heard from (no renewal) for this long may be
   * dead; its client's slot is held until the lease lapses, but the refusal
   * says `holder-late` rather than `duplicate`. Absent: never late.
   */
  | { type: 'Acquire'; clientId: string; sessionId: string; gatewayId: string; holder?: string; conversationId: string; now: number; leaseMs: number; maxClients: number; lateAfterMs?: number }
  | { type: 'Release'; sessionId: string }
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
  | { type: 'Renewed'; sessionId: string; clientId: string; expiresAt: number; renewedAt: number }
  | { type: 'Expired'; lease: LeaseState };

export function initialAdmissionState(): AdmissionState {
  return { leases: new Map() };
}

export function decideAdmission(command: AdmissionCommand, state: AdmissionState): AdmissionEvent[] {
  switch (command.type) {
    case 'Acquire': {
      const holder = state.leases.get(command.clientId);
      // A live lease of the same client wins; an expired one no longer counts.
      if (holder && holder.expiresAt > command.now) {
        if (command.now - heardAt(holder) > (command.lateAfterMs ?? Infinity)) {
          return [{ type: 'Refused', reason: 'holder-late', clientId: command.clientId, holder, retryAfterMs: holder.expiresAt - command.now }];
        }
        return [{ type: 'Refused', reason: 'duplicate', clientId: command.clientId, holder }];
      }
      if (state.noneExpireBefore !== undefined && state.noneExpireBefore > command.now) {
        // No lease has expired, so every lease is live and none is this client's (a live one was refused above):
        // the same decision as the scan below, without it.
        if (state.leases.size >= command.maxClients) return [{ type: 'Refused', reason: 'full', clientId: command.clientId }];
        return [{ type: 'Admitted', lease: newLease(command) }];
      }
      const live = [...state.leases.values()].filter((l) => l.expiresAt > command.now && l.clientId !== command.clientId);
      if (live.length >= command.maxClients) {
        return [{ type: 'Refused', reason: 'full', clientId: command.clientId }];
      }
      const expired = [...state.leases.values()].filter((l) => l.expiresAt <= command.now);
      return [
        ...expired.map((lease): AdmissionEvent => ({ type: 'Expired', lease })),
        { type: 'Admitted', lease: newLease(command) },
      ];
    }
    case 'Release': {
      const lease = state.sessions
        ? state.leases.get(state.sessions.get(command.sessionId) ?? '')
        : [...state.leases.values()].find((l) => l.sessionId === command.sessionId);
      return lease?.sessionId === command.sessionId ? [{ type: 'Released', lease }] : [];
    }
    case 'Renew':
      return [...state.leases.values()]
        .filter((l) => holderOf(l) === command.gatewayId && l.expiresAt > command.now)
        .map((l) => ({ type: 'Renewed', sessionId: l.sessionId, clientId: l.clientId, expiresAt: command.now + command.leaseMs, renewedAt: command.now }));
    case 'Expire':
      return [...state.leases.values()]
        .filter((l) => l.expiresAt <= command.now)
        .map((lease) => ({ type: 'Expired', lease }));
    default: {
      const never: never = command;
      throw new Error(`unknown command ${JSON.stringify(never)}`);
    }
  }
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
 * What an event changes in the leases, as a change to one client's entry:
 * `{ clientId, lease }` sets it (lease undefined = removes it); null = nothing.
 * `evolveAdmission` applies it to a copy; an in-memory adapter may apply it in
 * place (copying a 10,000-entry map per event is what it must not do).
 */
export function admissionChange(leases: ReadonlyMap<string, LeaseState>, event: AdmissionEvent): { clientId: string; lease: LeaseState | undefined } | null {
  switch (event.type) {
    case 'Admitted':
      return { clientId: event.lease.clientId, lease: event.lease };
    case 'Released':
    case 'Expired':
      if (leases.get(event.lease.clientId)?.sessionId !== event.lease.sessionId) return null;
      return { clientId: event.lease.clientId, lease: undefined };
    case 'Renewed': {
      const current = leases.get(event.clientId);
      if (!current || current.sessionId !== event.sessionId) return null;
      return { clientId: event.clientId, lease: { ...current, expiresAt: event.expiresAt, renewedAt: event.renewedAt } };
    }
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
  const leases = new Map(state.leases);
  if (change.lease) leases.set(change.clientId, change.lease);
  else leases.delete(change.clientId);
  return { leases };
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
