/**
 * Where this browser was in a conversation, so a reload comes back to it:
 * the client id, and per client id the conversation and the last event seq
 * seen (localStorage; no token is kept here).
 */
export interface Place {
  conversationId: string;
  lastSeq: bigint;
}

const CLIENT_KEY = 'chatflow.clientId';
const placeKey = (clientId: string) => `chatflow.place.${clientId}`;

function read(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled: the page works, it just forgets on reload
  }
}

function write(key: string, value: string | undefined): void {
  try {
    if (value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* storage disabled */
  }
}

export const lastClientId = (): string => read(CLIENT_KEY) ?? '';
export const rememberClientId = (clientId: string): void => write(CLIENT_KEY, clientId);

export function placeOf(clientId: string): Place | undefined {
  try {
    const raw = JSON.parse(read(placeKey(clientId)) ?? 'null') as { conversationId?: unknown; lastSeq?: unknown } | null;
    if (!raw || typeof raw.conversationId !== 'string' || !raw.conversationId || typeof raw.lastSeq !== 'string') return undefined;
    return { conversationId: raw.conversationId, lastSeq: BigInt(raw.lastSeq) };
  } catch {
    return undefined;
  }
}

export function rememberPlace(clientId: string, place: Place | undefined): void {
  write(placeKey(clientId), place && JSON.stringify({ conversationId: place.conversationId, lastSeq: place.lastSeq.toString() }));
}
