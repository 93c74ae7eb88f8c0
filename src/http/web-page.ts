import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { HttpRoute } from './server';
import { WEB_DIR, WEB_DIST, WebBundle } from './web-bundle';
import type { WebSettings } from './web-settings';

/**
 * The browser chat page at `/`. A fixed list of assets, nothing looked up from
 * the request path (so no directory traversal): the page, its stylesheet and
 * its bundle (built from gateway/web by `npm run build`; the server never bundles).
 */
const ASSETS: Record<string, { file: string; type: string; bundled?: boolean }> = {
  '/': { file: join(WEB_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/index.html': { file: join(WEB_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/styles.css': { file: join(WEB_DIR, 'styles.css'), type: 'text/css; charset=utf-8' },
  '/app.js': { file: join(WEB_DIST, 'app.js'), type: 'text/javascript; charset=utf-8', bundled: true },
  '/app.js.map': { file: join(WEB_DIST, 'app.js.map'), type: 'application/json; charset=utf-8', bundled: true },
};

export function webPageRoute(opts: { settings: WebSettings; logger: Logger }): HttpRoute {
  const bundle = new WebBundle(opts.logger.child({ component: 'web' }));
  // Checked now, so a missing bundle is reported at start rather than on the first visit.
  void bundle.current();
  const csp = contentSecurityPolicy(opts.settings);
  // One copy of each file in memory, shared by every response that sends it: a response holds its body until its
  // client has read it, and reading the file for each request let 300 connections pipelining 16 requests for the
  // bundle's map (815 KB) that they never read take a server from 119 MB to 3.1 GB, with no token. Read again when
  // the file changes (a rebuilt bundle), which a stat per request tells.
  const copies = new Map<string, { version: string; body: Promise<Buffer> }>();
  const bodyOf = async (file: string, html: boolean): Promise<Buffer> => {
    const { mtimeMs, size } = await stat(file);
    const version = `${mtimeMs} ${size}`;
    let copy = copies.get(file);
    if (copy?.version !== version) {
      const read = readFile(file).then((b) => (html ? Buffer.from(renderPage(b.toString('utf8'), opts.settings)) : b));
      copy = { version, body: read };
      copies.set(file, copy);
      const mine = copy;
      read.catch(() => copies.get(file) === mine && copies.delete(file)); // tried again by the next request
    }
    return copy.body;
  };
  return async (req, res) => {
    const asset = ASSETS[(req.url ?? '/').split('?')[0]!];
    if (!asset) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' });
      res.end('method not allowed\n');
      return true;
    }
    if (asset.bundled) {
      const state = await bundle.current();
      if (!state.ok) return send(res, req.method, 503, 'text/plain; charset=utf-8', `${state.problem}\n`);
    }
    let body: Buffer;
    try {
      body = await bodyOf(asset.file, asset.type.startsWith('text/html'));
    } catch {
      return send(res, req.method, 404, 'text/plain', 'not found\n');
    }
    return send(res, req.method, 200, asset.type, body, asset.type.startsWith('text/html') ? { 'Content-Security-Policy': csp } : {});
  };
}

/** The page learns its settings from meta tags (no inline script: the CSP forbids it). */
function renderPage(template: string, settings: WebSettings): string {
  const meta = [
    `<meta name="chatflow-api" content="${escapeHtml(settings.apiUrl ?? '')}">`,
    `<meta name="chatflow-dev-tokens" content="${settings.devTokens ? 'on' : 'off'}">`,
    `<meta name="chatflow-max-text-chars" content="${settings.maxTextChars}">`,
  ].join('\n    ');
  return template.replace('<!--chatflow:settings-->', meta);
}

/**
 * Scripts and styles from this origin only; RPCs to this origin and the
 * configured API origin only, so a crafted `?api=` link cannot make the page
 * hand its bearer token to another host. Media may come from anywhere
 * (presigned object-store URLs).
 */
function contentSecurityPolicy(settings: WebSettings): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `connect-src 'self'${settings.apiUrl ? ` ${settings.apiUrl}` : ''}`,
    "img-src 'self' data: blob: http: https:",
    "media-src 'self' data: blob: http: https:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function send(res: ServerResponse, method: string | undefined, status: number, type: string, body: Buffer | string, extra: Record<string, string> = {}): true {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    ...extra,
  });
  res.end(method === 'HEAD' ? undefined : body);
  return true;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
