/**
 * Time-zone policy at connect: the zone must be a real IANA zone name, and
 * inside the allow-list when one is configured.
 */
export type TimeZoneDecision =
  | { ok: true; timeZone: string }
  | { ok: false; code: 'INVALID_ARGUMENT' | 'PERMISSION_DENIED'; message: string };

// IANA names: Area/Location(/Sub), or single names such as UTC. Offsets like
// "+01:00" are accepted by Intl but are not zones, so they are refused.
const IANA_SHAPE = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

/**
 * The zone `name` names, as Intl spells it (its canonical ID: links such as
 * Asia/Kolkata resolve to ICU's, Asia/Calcutta), or null when it names none.
 * Intl reads names whatever their case, so a client can spell one zone in
 * thousands of ways: whatever is kept per zone is kept under this.
 */
export function canonicalTimeZone(name: string): string | null {
  if (name.length > 64 || !IANA_SHAPE.test(name)) return null;
  const key = name.toLowerCase(); // one entry per zone, not per spelling
  const known = canonical.get(key);
  if (known !== undefined) return known;
  let result: string | null;
  try {
    result = new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    result = null;
  }
  // Building a DateTimeFormat was a quarter of the CPU of a connection burst (loadtest admission profile).
  // Bounded, the oldest name out first: names are client input, and made-up ones must not crowd out real ones for good.
  if (canonical.size >= CANONICAL_CACHE_MAX) canonical.delete(canonical.keys().next().value!);
  canonical.set(key, result);
  return result;
}

const CANONICAL_CACHE_MAX = 2_000;
const canonical = new Map<string, string | null>();

export function decideTimeZone(raw: string | undefined, allowList: readonly string[]): TimeZoneDecision {
  const name = raw?.trim() ?? '';
  if (name === '') {
    return { ok: false, code: 'INVALID_ARGUMENT', message: 'missing x-timezone metadata: send your IANA time zone, e.g. Europe/Paris' };
  }
  const canonical = canonicalTimeZone(name);
  if (canonical === null) {
    return { ok: false, code: 'INVALID_ARGUMENT', message: `"${name.slice(0, 64)}" is not an IANA time zone (e.g. Europe/Paris, America/New_York, UTC)` };
  }
  if (allowList.length > 0) {
    const allowed = allowList.some((a) => a === name || canonicalTimeZone(a) === canonical);
    if (!allowed) {
      return { ok: false, code: 'PERMISSION_DENIED', message: `time zone ${name} is not served here; allowed: ${allowList.join(', ')}` };
    }
  }
  // Keep the name the client sent: aliases (e.g. Asia/Kolkata) are valid zones. Spelled in another case than Intl
  // spells it, it is the zone's own spelling that is kept (what the model and the history show).
  return { ok: true, timeZone: name.toLowerCase() === canonical.toLowerCase() ? canonical : name };
}
