import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { TokenAuthority } from '../auth/tokens';
import { validateClientId } from '../auth/tokens';
import type { HttpRoute } from './server';

const DEV_TOKEN_PATH = '/dev/token';
const MAX_BODY = 1024;

/**
 * `POST /dev/token` `{"clientId": "alice"}` → `{"token", "clientId", "expiresAt"}`:
 * a bearer token for any client id, without authentication. For local
 * development only, so it exists only when `enabled` (CHATFLOW_DEV_TOKENS=true);
 * otherwise the path is not served at all (404), and the page asks for a token
 * minted with `chatflow token <client-id>`.
 *
 * Same-origin only: it requires a JSON content type (so a cross-site form or
 * fetch needs a CORS preflight, which is never granted) and refuses a foreign
 * `Origin`.
 */
export function devTokenRoute(opts: { enabled: boolean; auth: Pick<TokenAuthority, 'mint'>; logger: Logger; ttlSeconds?: number; now?: () => number }): HttpRoute {
  const ttl = opts.ttlSeconds ?? 12 * 3600;
  return async (req, res) => {
    if (!opts.enabled || (req.url ?? '/').split('?')[0] !== DEV_TOKEN_PATH) return false;
    if (req.method !== 'POST') return json(res, 405, { error: 'use POST' }, { Allow: 'POST' });
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return json(res, 415, { error: 'send Content-Type: application/json' });
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) {
      return json(res, 403, { error: 'cross-origin token requests are refused' });
    }
    let clientId: unknown;
    try {
      clientId = (JSON.parse(await readBody(req)) as { clientId?: unknown }).clientId;
    } catch (e) {
      return json(res, (e as Error).message === 'too large' ? 413 : 400, { error: 'body must be JSON {"clientId": "..."} (at most 1 KiB)' });
    }
    if (clientId === undefined) return json(res, 400, { error: 'clientId is required' });
    if (typeof clientId !== 'string') return json(res, 400, { error: `clientId must be a string, not ${clientId === null ? 'null' : typeof clientId}` });
    const problem = validateClientId(clientId);
    if (problem) return json(res, 400, { error: problem });
    const now = (opts.now ?? Date.now)();
    const token = await opts.auth.mint(clientId, ttl, now);
    opts.logger.info({ clientId, ttlSeconds: ttl }, 'development token issued (CHATFLOW_DEV_TOKENS=true)');
    return json(res, 200, { token, clientId, expiresAt: new Date(now + ttl * 1000).toISOString() });
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): true {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...headers });
  res.end(JSON.stringify(body));
  return true;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c); // past the limit: drained and dropped, so a reply can still be sent
    });
    req.on('end', () => (size > MAX_BODY ? reject(new Error('too large')) : resolve(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}
