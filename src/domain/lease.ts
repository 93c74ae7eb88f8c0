/**
 * Lease timing. CHATFLOW_LEASE_MS promises that a dead gateway's slots come
 * back within it. A slot comes back when its lease has expired AND a sweep has
 * run, so the lease a gateway writes must be shorter than the promise by one
 * sweep period. Renewing several times per lease keeps a live gateway's slots
 * safe through a missed renewal or two (a busy engine, a GC pause).
 */
export interface LeaseTiming {
  /** How far ahead each acquire and renewal sets `expiresAt`. */
  ttlMs: number;
  renewEveryMs: number;
  sweepEveryMs: number;
}

export function leaseTiming(leaseMs: number): LeaseTiming {
  const sweepEveryMs = Math.max(100, Math.floor(leaseMs / 8));
  const ttlMs = leaseMs - sweepEveryMs;
  return { ttlMs, renewEveryMs: Math.max(100, Math.floor(ttlMs / 3)), sweepEveryMs };
}
