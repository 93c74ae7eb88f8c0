import { randomBytes } from 'node:crypto';
import { link, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { ChatFlowError, diskFault } from '../domain/errors';
import { makeDir } from '../make-dir';
import { MAX_CLIENT_ID_LENGTH } from '../domain/ids';
import { RecentMap } from '../domain/recent-map';

const CLIENT_ID = /^[A-Za-z0-9._:@-]+$/;

export function validateClientId(id: unknown): string | null {
  if (typeof id !== 'string') return 'client id must be a string';
  if (id.length === 0) return 'client id is empty';
  if (id.length > MAX_CLIENT_ID_LENGTH) return `client id is longer than ${MAX_CLIENT_ID_LENGTH} characters`;
  if (!CLIENT_ID.test(id)) return 'client id may only hold letters, digits and . _ : @ -';
  return null;
}

/** Bearer tokens: JWT HS256, `sub` = client id (a string), `exp` required and honoured. */
export class TokenAuthority {
  /**
   * Tokens verified lately, with their subject and expiry. A call's token is
   * checked before its request is read (src/gateway/request-guard.ts) and
   * again by its handler, and a client's calls carry one token: a known one
   * costs a lookup, not an HMAC and a JSON parse (~25–45 µs). Only tokens
   * that passed are kept, under their whole text, so a forged one is never
   * taken for a known one; a known one still expires.
   */
  private readonly verified = new RecentMap<string, { sub: string; exp: number }>(VERIFIED_TOKENS);

  constructor(
    private readonly secret: Uint8Array,
    private readonly insecureClientId: boolean,
    private readonly clock: () => number = Date.now,
  ) {}

  async mint(clientId: string, ttlSeconds = 24 * 3600, now = Date.now()): Promise<string> {
    const problem = validateClientId(clientId);
    if (problem) throw new ChatFlowError('INVALID_ARGUMENT', problem);
    const iat = Math.floor(now / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(clientId)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttlSeconds)
      .sign(this.secret);
  }

  /** The client id of a call, from `authorization: Bearer` (or `x-client-id` when the insecure switch is on). */
  async identify(get: (key: string) => string | undefined): Promise<string> {
    const header = get('authorization');
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
      if (!m) throw new ChatFlowError('UNAUTHENTICATED', 'authorization metadata must be "Bearer <token>"');
      return this.verify(m[1]);
    }
    if (this.insecureClientId) {
      const id = get('x-client-id');
      if (id !== undefined) {
        const problem = validateClientId(id);
        if (problem) throw new ChatFlowError('UNAUTHENTICATED', problem);
        return id;
      }
      throw new ChatFlowError('UNAUTHENTICATED', 'send authorization: Bearer <token> or x-client-id metadata');
    }
    throw new ChatFlowError('UNAUTHENTICATED', 'missing authorization metadata: send "authorization: Bearer <token>" (mint one with `chatflow token <client-id>`)');
  }

  private async verify(token: string): Promise<string> {
    const now = this.clock();
    const known = this.verified.get(token);
    // As jose decides it: expired from the second `exp` names.
    if (known && Math.floor(now / 1000) < known.exp) return known.sub;
    let sub: unknown;
    let exp: number;
    try {
      // `exp` is required: a token that never expires is refused.
      const { payload } = await jwtVerify(token, this.secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'], currentDate: new Date(now) });
      sub = payload.sub;
      exp = payload.exp!;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw new ChatFlowError('UNAUTHENTICATED', 'token expired: mint a new one');
      if (e instanceof joseErrors.JWTClaimValidationFailed) throw new ChatFlowError('UNAUTHENTICATED', `invalid token: ${e.message}`);
      throw new ChatFlowError('UNAUTHENTICATED', 'invalid token: bad signature or malformed JWT');
    }
    // Claims are checked by type: an array, a number or a boolean is not a client id.
    if (typeof sub !== 'string') throw new ChatFlowError('UNAUTHENTICATED', `token subject must be a string client id, not ${Array.isArray(sub) ? 'an array' : typeof sub}`);
    const problem = validateClientId(sub);
    if (problem) throw new ChatFlowError('UNAUTHENTICATED', `token subject: ${problem}`);
    this.verified.set(token, { sub, exp });
    return sub;
  }
}

/** How many verified tokens TokenAuthority remembers (~0.3 KB each): more than the clients one gateway admits. */
const VERIFIED_TOKENS = 1_024;

/**
 * The secret kept in `<dataDir>/secret`; `null` when there is none: no file,
 * or an empty one (a creation cut short by an older ChatFlow on a full disk or
 * killed: an empty key, with which anyone could sign a token, is never used).
 * One shorter than 32 characters (written by hand) is refused, as
 * `CHATFLOW_AUTH_SECRET` is.
 */
export async function readSecretFile(dataDir: string): Promise<Uint8Array | null> {
  const file = join(dataDir, 'secret');
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'EISDIR') throw new ChatFlowError('FAILED_PRECONDITION', `cannot read the secret ${file}: it is a folder, not a file (remove it and ChatFlow makes one)`);
    throw e;
  }
  if (text === '') return null;
  if (text.length < 32) {
    throw new ChatFlowError('FAILED_PRECONDITION', `the secret in ${file} is ${text.length} characters long; it must be at least 32 (remove the file and ChatFlow makes one; the tokens made with the old one are then refused)`);
  }
  return new TextEncoder().encode(text);
}

const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);
const DRAFT_PREFIX = '.secret.';
/** A draft lives the milliseconds its secret takes to be written and linked: one older was left by a process killed meanwhile. */
const DRAFT_LEFT_MS = 60_000;

async function removeOldDrafts(dataDir: string): Promise<void> {
  const names = await readdir(dataDir).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(DRAFT_PREFIX))) {
    const path = join(dataDir, name);
    const st = await stat(path).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > DRAFT_LEFT_MS) await rm(path, { force: true });
  }
}

/**
 * The configured secret, or the one in the data dir, made there the first
 * time (mode 0600). It is written whole into a file of its own and then put
 * in place in one step, so a full disk or a kill leaves no empty or partial
 * secret behind; of two processes making it at once, the second takes the
 * first's.
 */
export async function loadOrCreateSecret(dataDir: string, configured?: string): Promise<Uint8Array> {
  if (configured) return new TextEncoder().encode(configured);
  await removeOldDrafts(dataDir);
  const found = await readSecretFile(dataDir);
  if (found) return found;
  const file = join(dataDir, 'secret');
  const draft = join(dataDir, `${DRAFT_PREFIX}${process.pid}.${randomBytes(4).toString('hex')}`);
  const secret = randomBytes(32).toString('base64url');
  try {
    await makeDir(dataDir);
    const handle = await open(draft, 'wx', 0o600);
    try {
      await handle.writeFile(secret + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    const placed = await link(draft, file).then(
      () => true,
      async (e: NodeJS.ErrnoException) => {
        if (e.code === 'EEXIST') return false;
        // A file system without hard links: put in place by rename (of two processes at once, the last one's stays).
        if (!NO_HARD_LINKS.has(e.code ?? '')) throw e;
        await rename(draft, file);
        return true;
      },
    );
    if (!placed) {
      const theirs = await readSecretFile(dataDir);
      if (theirs) return theirs;
      await rename(draft, file); // over the empty one a cut-short creation left
    }
    return new TextEncoder().encode(secret);
  } catch (e) {
    const why = diskFault(e);
    if (!why) throw e;
    throw new ChatFlowError('FAILED_PRECONDITION', `cannot write the server's secret into ${file}: ${why}; make room there and start again`);
  } finally {
    await rm(draft, { force: true });
  }
}
