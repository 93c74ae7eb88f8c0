// The client's local time, rendered with Intl only (no date library): replies
// "speak the client's local time" (DESIGN.md): the providers and the gateway
// (Welcome.local_time) need it. Pure: time and zone come in as arguments.
//
// Why numeric parts + our own English names instead of a locale's long format:
// the output must not depend on the ICU data / default locale of the host, and
// the offset is computed from the wall clock itself, which works for DST zones,
// half-hour zones and UTC alike (timeZoneName: 'longOffset' prints "GMT" for UTC).
//
// Both functions throw RangeError for an unknown IANA zone (as Intl does);
// zones are validated at connect, so callers may treat that as a bug.

import { canonicalTimeZone } from './timezone';

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

interface WallClock {
  year: number;
  month: number; // 1-12
  day: number;
  hour: number;
  minute: number;
  second: number;
  millisecond: number;
  weekday: number; // 0 = Sunday
  offsetMinutes: number; // local - UTC
}

// Building a DateTimeFormat is costly compared to using one; the set of zones
// is small (IANA has a few hundred), so the caches stay bounded: they are keyed
// by the zone's canonical ID, never by the name as a client spelled it (Intl
// reads any case: 100,000 spellings of one zone held 2.9 GB outside the heap,
// ~30 KB per formatter). A name that is no zone is not kept.
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string, zone: string | null): Intl.DateTimeFormat {
  if (zone === null) return formatter(timeZone); // no zone: Intl throws RangeError (or reads an offset, "+01:00")
  let f = formatters.get(zone);
  if (!f) formatters.set(zone, (f = formatter(zone)));
  return f;
}

function formatter(timeZone: string): Intl.DateTimeFormat {
  return new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23', // never "24:05"
    year: 'numeric', month: 'numeric', day: 'numeric',
    hour: 'numeric', minute: 'numeric', second: 'numeric',
    era: 'short', // so years before 1 CE are not silently mirrored
  });
}

// formatToParts costs ~20 µs, every reply calls it, and a zone's offset only
// changes on whole minutes (since 1970, every transition is between
// whole-minute offsets): the offset found for a zone is kept for its UTC
// minute and the wall clock is then plain arithmetic.
const MINUTE_MS = 60_000;
const CACHE_FROM_MS = 0; // 1970: earlier dates may carry local mean time (second offsets)
const CACHE_UNTIL_MS = Date.UTC(9999, 0, 1);
const offsetByZone = new Map<string, { minute: number; offsetMinutes: number }>();

function wallClock(now: Date, timeZone: string): WallClock {
  const t = now.getTime();
  if (Number.isNaN(t)) throw new RangeError('Invalid Date');
  const minute = Math.floor(t / MINUTE_MS);
  const zone = canonicalTimeZone(timeZone);
  const known = zone === null ? undefined : offsetByZone.get(zone);
  if (known?.minute === minute) return fromOffset(t, known.offsetMinutes);
  const w = wallClockOf(t, now, formatterFor(timeZone, zone));
  if (zone !== null && t >= CACHE_FROM_MS && t < CACHE_UNTIL_MS) offsetByZone.set(zone, { minute, offsetMinutes: w.offsetMinutes });
  return w;
}

function fromOffset(t: number, offsetMinutes: number): WallClock {
  const local = new Date(t + offsetMinutes * MINUTE_MS);
  return {
    year: local.getUTCFullYear(), month: local.getUTCMonth() + 1, day: local.getUTCDate(),
    hour: local.getUTCHours(), minute: local.getUTCMinutes(), second: local.getUTCSeconds(), millisecond: local.getUTCMilliseconds(),
    weekday: local.getUTCDay(), offsetMinutes,
  };
}

function wallClockOf(t: number, now: Date, zone: Intl.DateTimeFormat): WallClock {
  const parts: Record<string, string> = {};
  for (const p of zone.formatToParts(now)) parts[p.type] = p.value;
  let year = Number(parts.year);
  if (parts.era && /^B/i.test(parts.era)) year = 1 - year;
  const month = Number(parts.month);
  const day = Number(parts.day);
  const hour = Number(parts.hour);
  const minute = Number(parts.minute);
  const second = Number(parts.second);
  const millisecond = ((t % 1000) + 1000) % 1000; // offsets never carry milliseconds
  // Date.UTC maps years 0-99 to 1900+; setUTCFullYear does not.
  const asUtc = new Date(0);
  asUtc.setUTCFullYear(year, month - 1, day);
  asUtc.setUTCHours(hour, minute, second, millisecond);
  // Rounded to whole minutes: only pre-1900 local mean times have second offsets.
  const offsetMinutes = Math.round((asUtc.getTime() - t) / 60_000);
  return { year, month, day, hour, minute, second, millisecond, weekday: asUtc.getUTCDay(), offsetMinutes };
}

const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, '0');

function formatOffset(offsetMinutes: number): string {
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function formatYear(year: number): string {
  return year < 0 ? `-${pad(year, 4)}` : pad(year, 4);
}

/** "Sunday 22 November 2026, 14:03 (Europe/Paris, UTC+01:00)" */
export function formatLocalTime(now: Date, timeZone: string): string {
  const w = wallClock(now, timeZone);
  return (
    `${WEEKDAYS[w.weekday]} ${w.day} ${MONTHS[w.month - 1]} ${w.year}, ` +
    `${pad(w.hour)}:${pad(w.minute)} (${timeZone}, UTC${formatOffset(w.offsetMinutes)})`
  );
}

/** "2026-11-22T14:03:05.123+01:00" — ISO 8601 with the zone's offset at that instant. */
export function isoLocalTime(now: Date, timeZone: string): string {
  const w = wallClock(now, timeZone);
  return (
    `${formatYear(w.year)}-${pad(w.month)}-${pad(w.day)}T` +
    `${pad(w.hour)}:${pad(w.minute)}:${pad(w.second)}.${pad(w.millisecond, 3)}` +
    formatOffset(w.offsetMinutes)
  );
}

/** How many zones the formatter and offset caches hold (tests: they must stay bounded by the real zones). */
export function cachedZoneCount(): number {
  return new Set([...formatters.keys(), ...offsetByZone.keys()]).size;
}
