/**
 * Which pages of other origins may call the embedded gRPC-Web endpoint (CORS),
 * as Envoy's `cors` filter does in the stack (gateway/envoy.yaml): a browser
 * app under development on its own port (`http://localhost:5173`) talking to
 * `npm start`. Tokens travel in `authorization`, never in cookies: an origin
 * allowed here gets nothing it could not get without a browser, and no
 * credentials mode is granted. The token endpoint stays same-origin only.
 */

/** One allowed origin: `*` (any), `scheme://host:*` (any port) or an exact origin. */
export type OriginRule = { any: true } | { scheme: string; host: string; port: string | '*' };

/** What a page reads from a response's headers (a trailers-only refusal); Envoy exposes the same (test/envoy.e2e.test.ts). */
export const EXPOSED_HEADERS = ['grpc-status', 'grpc-message', 'retry-after-ms'] as const;

const RULE = /^(https?):\/\/(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}|\*))?$/i;

/** Parses `CHATFLOW_WEB_ORIGINS` (comma-separated; `none`: no other origin); throws saying which entry is not an origin. */
export function parseOrigins(spec: string): OriginRule[] {
  if (spec.trim().toLowerCase() === 'none') return [];
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      if (s === '*') return { any: true } as const;
      const m = RULE.exec(s);
      if (!m) throw new Error(`"${s}" is not an origin: write scheme://host, scheme://host:port, scheme://host:* (any port), * (any) or none`);
      const scheme = m[1]!.toLowerCase();
      return { scheme, host: m[2]!.toLowerCase(), port: m[3] ?? (scheme === 'https' ? '443' : '80') };
    });
}

/** Whether a page of `origin` (the request's `Origin` header) may call. */
export function originAllowed(rules: readonly OriginRule[], origin: string): boolean {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  if (u.origin !== origin) return false; // a path, a default port spelled out: not an origin as browsers send it
  const scheme = u.protocol.slice(0, -1);
  const port = u.port || (scheme === 'https' ? '443' : '80');
  return rules.some((r) => 'any' in r || (r.scheme === scheme && r.host === u.hostname && (r.port === '*' || r.port === port)));
}
