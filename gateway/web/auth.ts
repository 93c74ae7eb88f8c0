/**
 * Who the page connects as. A pasted bearer token wins (its `sub` is the
 * client id); else a token this tab got earlier; else, when the server offers
 * it, a development token from POST /dev/token; else no token at all (only a
 * server started with CHATFLOW_INSECURE_CLIENT_ID=true accepts that).
 */
export interface Identity {
  clientId: string;
  token?: string;
}

const CLIENT_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export function clientIdProblem(id: string): string | undefined {
  if (!id) return 'Enter a client id.';
  if (!CLIENT_ID.test(id)) return 'A client id is 1 to 128 letters, digits or . _ : @ -';
  return undefined;
}

/** The claims of a JWT, unverified (the server verifies; the page only reads `sub` and `exp`). */
function jwtClaims(token: string): { sub?: string; exp?: number } | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const claims = JSON.parse(json) as { sub?: unknown; exp?: unknown };
    return { sub: typeof claims.sub === 'string' ? claims.sub : undefined, exp: typeof claims.exp === 'number' ? claims.exp : undefined };
  } catch {
    return undefined;
  }
}

function fresh(token: string): boolean {
  const exp = jwtClaims(token)?.exp;
  return exp === undefined || exp * 1000 > Date.now() + 60_000;
}

const storageKey = (clientId: string) => `chatflow.token.${clientId}`;

/** Tokens live in this tab only (sessionStorage), never in the URL. */
function rememberToken(clientId: string, token: string): void {
  try {
    sessionStorage.setItem(storageKey(clientId), token);
  } catch {
    /* storage disabled: keep working without it */
  }
}

export function forgetToken(clientId: string): void {
  try {
    sessionStorage.removeItem(storageKey(clientId));
  } catch {
    /* ignore */
  }
}

/** A token this tab can use for `clientId` without asking (pasted or issued earlier, not about to expire). */
export function hasToken(clientId: string): boolean {
  try {
    const stored = sessionStorage.getItem(storageKey(clientId));
    return Boolean(stored && fresh(stored));
  } catch {
    return false;
  }
}

export async function resolveIdentity(clientId: string, pasted: string, devTokens: boolean): Promise<Identity> {
  if (pasted) {
    // Kept for this tab, so a reload reconnects without asking again.
    const id = jwtClaims(pasted)?.sub ?? clientId;
    rememberToken(id, pasted);
    return { clientId: id, token: pasted };
  }
  let stored: string | null = null;
  try {
    stored = sessionStorage.getItem(storageKey(clientId));
  } catch {
    stored = null;
  }
  if (stored && fresh(stored)) return { clientId, token: stored };
  if (devTokens) {
    const res = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ clientId }) });
    if (res.ok) {
      const { token } = (await res.json()) as { token: string };
      rememberToken(clientId, token);
      return { clientId, token };
    }
  }
  return { clientId };
}

export function authHeaders(id: Identity): Record<string, string> {
  return id.token ? { authorization: `Bearer ${id.token}` } : { 'x-client-id': id.clientId };
}
