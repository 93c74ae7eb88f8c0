import { ChatFlowError } from './errors';

/**
 * Ownership: a client reaches only its own conversations and sessions
 * (DESIGN: PERMISSION_DENIED otherwise). Every adapter that serves a
 * conversation or a session by id asks here.
 */
export function ownershipError(what: 'conversation' | 'session', ownerClientId: string, clientId: string): ChatFlowError | undefined {
  if (ownerClientId === clientId) return undefined;
  return new ChatFlowError('PERMISSION_DENIED', `this ${what} belongs to another client`);
}
