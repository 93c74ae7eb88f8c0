import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { pipeline } from 'node:stream/promises';
import { ChatFlowError } from '../domain/errors';
import { RequestPlaces } from '../resilience/request-places';
import { isValidMediaKey, verifyMediaSignature, type LocalMediaStore } from './local';
import { decideRange } from './range';

export interface MediaRequestOptions {
  store: Pick<LocalMediaStore, 'open'>;
  secret: Buffer | string;
  now?: () => number;
  /** Where a failure of the store is told (the client only sees 500). */
  logger: Pick<Logger, 'error'>;
  /** A download whose client takes nothing for this long is cut off (its connection closed); default 60 s. */
  stallMs?: number;
  /**
   * Where downloads are served, a place each from opening the object to the response's end, per client address
   * (downloadPlaces); none: no bound.
   */
  places?: RequestPlaces;
}

/**
 * The places of a process's downloads: each holds a file handle and a chunk or two of memory until its client took
 * the object or stalled for the stall limit. Without a bound, 300 connections pipelining 16 downloads each (4,800
 * at once) took a server to 1.4 GB and 4,000 file handles (its limit is often 20,000 or less, and the event log and
 * uploads need theirs). A download beyond waits for a place, and is refused 503 + Retry-After after 5 s.
 */
export function downloadPlaces(retryAfterMs: number): RequestPlaces {
  // A quarter per address: one peer cannot take them all, and the clients behind a proxy (one address) still get 64.
  return new RequestPlaces({ atOnce: 256, perClient: 64, waitMs: 5_000, maxWaiting: 4_096, retryAfterMs, busy: 'too many downloads at once; try again' });
}

const DEFAULT_STALL_MS = 60_000;

/**
 * Serves `GET|HEAD /media/<key>?exp=<unix ms>&sig=<hmac>` (URLs made by
 * LocalMediaStore.url). Returns false when the path is not under /media/, so
 * the caller can route it elsewhere. 400 bad key, 403 bad or expired
 * signature, 404 missing object, 405 other methods, 500 (logged) when the store fails. One byte range
 * (`Range: bytes=…`) is answered 206, one past the end 416.
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
  const place = opts.places?.take(`address ${req.socket?.remoteAddress ?? ''}`);
  if (place) {
    res.once('close', () => place.end());
    try {
      await place.wait;
    } catch (err) {
      const { message, retryAfterMs } = busyOf(err);
      reply(res, 503, message, { 'Retry-After': String(Math.ceil(retryAfterMs / 1000)) });
      return true;
    }
    if (res.destroyed) return true; // its client left while it waited
  }
  let media;
  try {
    media = await opts.store.open(key);
  } catch (err) {
    opts.logger.error({ err, key }, 'media could not be read');
    reply(res, 500, 'media unavailable');
    return true;
  }
  if (!media) {
    reply(res, 404, 'not found');
    return true;
  }
  const headers = {
    'Content-Type': media.mimeType,
    'Accept-Ranges': 'bytes',
    'Cache-Control': `private, max-age=${Math.max(0, Math.floor((Number(exp) - now) / 1000))}`,
    'X-Content-Type-Options': 'nosniff',
  };
  // One range of bytes, as players ask to play and seek audio and video (src/media/range.ts).
  const range = decideRange(req.headers.range, media.size, req.headers['if-range'] !== undefined);
  if (range.kind === 'unsatisfiable') {
    await media.close();
    reply(res, 416, 'range not satisfiable', { 'Content-Range': `bytes */${media.size}` });
    return true;
  }
  const [start, end] = range.kind === 'part' ? [range.start, range.end] : [0, media.size - 1];
  if (range.kind === 'part') res.writeHead(206, { ...headers, 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${media.size}` });
  else res.writeHead(200, { ...headers, 'Content-Length': media.size });
  if (req.method === 'HEAD') {
    await media.close();
    res.end();
    return true;
  }
  // Sent as the client takes it (a file handle and a chunk held, not the object), and cut off when it takes
  // nothing for stallMs: before, each GET held the whole object until its client read it, and 300 connections
  // that never read one 7.8 MiB upload took a server to 2.5 GB.
  res.setTimeout(opts.stallMs ?? DEFAULT_STALL_MS, () => res.destroy());
  pipeline(media.read(start, end), res).catch(() => undefined); // a client gone mid-download: its file is closed, nothing to tell
  return true;
}

function busyOf(err: unknown): { message: string; retryAfterMs: number } {
  const retryAfterMs = Number(err instanceof ChatFlowError ? err.trailers?.['retry-after-ms'] : undefined);
  return { message: err instanceof Error ? err.message : 'busy', retryAfterMs: Number.isFinite(retryAfterMs) ? retryAfterMs : 1_000 };
}

function reply(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(message + '\n');
}
