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
  readonly conversationId: string;
  readonly acquiredAt: number;
  readonly expiresAt: number;
}

export interface AdmissionState {
  /** Leases by client id. */
  readonly leases: ReadonlyMap<string, LeaseState>;
}

export type AdmissionCommand =
  | { type: 'Acquire'; clientId: string; sessionId: string; gatewayId: string; conversationId: string; now: number; leaseMs: number; maxClients: number }
  | { type: 'Release'; sessionId: string }
  | { type: 'Renew'; gatewayId: string; now: number; leaseMs: number }
  | { type: 'Expire'; now: number };

export type AdmissionEvent =
  | { type: 'Admitted'; lease: LeaseState }
  | { type: 'Refused'; reason: 'full' | 'duplicate'; clientId: string; holder?: LeaseState }
  | { type: 'Released'; lease: LeaseState }
  | { type: 'Renewed'; sessionId: string; clientId: string; expiresAt: number }
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
        return [{ type: 'Refused', reason: 'duplicate', clientId: command.clientId, holder }];
      }
      const live = [...state.leases.values()].filter((l) => l.expiresAt > command.now && l.clientId !== command.clientId);
      if (live.length >= command.maxClients) {
        return [{ type: 'Refused', reason: 'full', clientId: command.clientId }];
      }
      const expired = [...state.leases.values()].filter((l) => l.expiresAt <= command.now);
      return [
        ...expired.map((lease): AdmissionEvent => ({ type: 'Expired', lease })),
        {
          type: 'Admitted',
          lease: {
            clientId: command.clientId,
            sessionId: command.sessionId,
            gatewayId: command.gatewayId,
            conversationId: command.conversationId,
            acquiredAt: command.now,
            expiresAt: command.now + command.leaseMs,
          },
        },
      ];
    }
    case 'Release': {
      const lease = [...state.leases.values()].find((l) => l.sessionId === command.sessionId);
      return lease ? [{ type: 'Released', lease }] : [];
    }
    case 'Renew':
      return [...state.leases.values()]
        .filter((l) => l.gatewayId === command.gatewayId && l.expiresAt > command.now)
        .map((l) => ({ type: 'Renewed', sessionId: l.sessionId, clientId: l.clientId, expiresAt: command.now + command.leaseMs }));
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

export function evolveAdmission(state: AdmissionState, event: AdmissionEvent): AdmissionState {
  switch (event.type) {
    case 'Admitted': {
      const leases = new Map(state.leases);
      leases.set(event.lease.clientId, event.lease);
      return { leases };
    }
    case 'Released':
    case 'Expired': {
      if (state.leases.get(event.lease.clientId)?.sessionId !== event.lease.sessionId) return state;
      const leases = new Map(state.leases);
      leases.delete(event.lease.clientId);
      return { leases };
    }
    case 'Renewed': {
      const current = state.leases.get(event.clientId);
      if (!current || current.sessionId !== event.sessionId) return state;
      const leases = new Map(state.leases);
      leases.set(event.clientId, { ...current, expiresAt: event.expiresAt });
      return { leases };
    }
    case 'Refused':
      return state;
    default: {
      const never: never = event;
      throw new Error(`unknown event ${JSON.stringify(never)}`);
    }
  }
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
