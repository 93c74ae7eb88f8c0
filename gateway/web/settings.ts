/**
 * What the server told the page (meta tags written by src/http/web-page.ts),
 * and the `?api=` override of where the page sends its RPCs.
 */
interface PageSettings {
  /** gRPC-Web base URL: the page's own origin (embedded endpoint) or Envoy's. */
  apiUrl: string;
  /** The server hands out development tokens at POST /dev/token. */
  devTokens: boolean;
  /** Set when `?api=` named an origin this page may not talk to. */
  refusedApi?: string;
  /** The longest text the server takes, in characters (code points; CHATFLOW_MAX_TEXT_CHARS); unknown: not checked here. */
  maxTextChars?: number;
}

function meta(name: string): string {
  return document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content.trim() ?? '';
}

export function readSettings(loc: Location = window.location): PageSettings {
  const configured = meta('chatflow-api');
  const allowed = new Set([loc.origin, ...(configured ? [new URL(configured).origin] : [])]);
  const fallback = configured || loc.origin;
  const requested = new URLSearchParams(loc.search).get('api');
  let apiUrl = fallback;
  let refusedApi: string | undefined;
  if (requested) {
    let origin: string | undefined;
    try {
      origin = new URL(requested).origin;
    } catch {
      origin = undefined;
    }
    // Only origins the server vouches for (its Content-Security-Policy says the same):
    // a crafted link must not send the user's token elsewhere.
    if (origin && allowed.has(origin)) apiUrl = origin;
    else refusedApi = requested;
  }
  const maxTextChars = Number(meta('chatflow-max-text-chars'));
  return { apiUrl, devTokens: meta('chatflow-dev-tokens') === 'on', refusedApi, ...(Number.isSafeInteger(maxTextChars) && maxTextChars > 0 && { maxTextChars }) };
}
