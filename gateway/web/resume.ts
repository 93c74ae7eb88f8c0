/**
 * Where this browser was in a conversation, so a reload comes back to it:
 * the client id, and per client id the conversation and the last event seq
 * seen (localStorage; no token is kept here); and the session of this tab's
 * last stream (sessionStorage: this tab only), so a reload can take over a
 * stream the server still holds (x-replaces-session).
 */
export interface Place {
  conversationId: string;
  lastSeq: bigint;
}

const CLIENT_KEY = 'chatflow.clientId';
const placeKey = (clientId: string) => `chatflow.place.${clientId}`;

const sessionKey = (clientId: string) => `chatflow.session.${clientId}`;

function read(key: string, storage = () => localStorage): string | null {
  try {
    return storage().getItem(key);
  } catch {
    return null; // storage disabled: the page works, it just forgets on reload
  }
}

function write(key: string, value: string | undefined, storage = () => localStorage): void {
  try {
    if (value === undefined) storage().removeItem(key);
    else storage().setItem(key, value);
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

/**
 * The session of this tab's last stream as `clientId`. Kept in the tab
 * (sessionStorage), not shared with other tabs: a reload names it to take the
 * stream over if the server still holds it (a connection that died without a
 * word); another tab cannot. A duplicated tab starts with a copy, and takes
 * the stream from the tab it was copied from, which is then told it is
 * connected elsewhere, as one client with one connection should be.
 */
export const lastSessionOf = (clientId: string): string | undefined => read(sessionKey(clientId), () => sessionStorage) ?? undefined;
export const rememberSession = (clientId: string, sessionId: string): void => write(sessionKey(clientId), sessionId, () => sessionStorage);
