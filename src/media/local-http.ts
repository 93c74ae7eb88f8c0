import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { MediaStore } from './port';
import { isValidMediaKey, verifyMediaSignature } from './local';

export interface MediaRequestOptions {
  store: Pick<MediaStore, 'get'>;
  secret: Buffer | string;
  now?: () => number;
  /** Where a failure of the store is told (the client only sees 500). */
  logger: Pick<Logger, 'error'>;
}

/**
 * Serves `GET|HEAD /media/<key>?exp=<unix ms>&sig=<hmac>` (URLs made by
 * LocalMediaStore.url). Returns false when the path is not under /media/, so
 * the caller can route it elsewhere. 400 bad key, 403 bad or expired
 * signature, 404 missing object, 405 other methods, 500 (logged) when the store fails.
 */
export async function handleMediaRequest(req: IncomingMessage, res: ServerResponse, opts: MediaRequestOptions): Promise<boolean> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (!url.pathname.startsWith('/media/')) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    reply(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
    return true;
  }
  let key: string;
  try {
    key = decodeURIComponent(url.pathname.slice('/media/'.length));
  } catch {
    key = '';
  }
  if (!isValidMediaKey(key)) {
    reply(res, 400, 'bad media key');
    return true;
  }
  const now = (opts.now ?? Date.now)();
  const exp = url.searchParams.get('exp') ?? '';
  if (!verifyMediaSignature(key, exp, url.searchParams.get('sig') ?? '', opts.secret, now)) {
    reply(res, 403, 'invalid or expired link');
    return true;
  }
  let media;
  try {
    media = await opts.store.get(key);
  } catch (err) {
    opts.logger.error({ err, key }, 'media could not be read');
    reply(res, 500, 'media unavailable');
    return true;
  }
  if (!media) {
    reply(res, 404, 'not found');
    return true;
  }
  res.writeHead(200, {
    'Content-Type': media.mimeType,
    'Content-Length': media.bytes.length,
    'Cache-Control': `private, max-age=${Math.max(0, Math.floor((Number(exp) - now) / 1000))}`,
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : media.bytes);
  return true;
}

function reply(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(message + '\n');
}
