import { admission, admissionChange, type AdmissionCommand, type AdmissionEvent, type LeaseState } from '../domain/admission';
import { acquireResultOf, type AcquireRequest, type AcquireResult, type ConnectionRegistry, type Lease } from './port';

/**
 * Embedded admission: the pure decider applied to in-memory state. JavaScript
 * runs one command at a time, so each decision is atomic.
 *
 * One gateway may hold 10,000 leases, so the state is kept mutable and
 * indexed: events are applied in place (`admissionChange`, not a copy of the
 * map per event), releases find their lease by session id, and an Acquire
 * scans the leases only when one may have expired (`noneExpireBefore`).
 */
export class MemoryConnectionRegistry implements ConnectionRegistry {
  readonly leasesOutliveProcess = false;
  private readonly leases = new Map<string, LeaseState>();
  /** Client id by session id. */
  private readonly sessions = new Map<string, string>();
  /** No lease expires before this (a lower bound: renewals only raise expiries). */
  private noneExpireBefore = Infinity;

  private run(command: AdmissionCommand): AdmissionEvent[] {
    if (command.type === 'Acquire' && this.noneExpireBefore <= command.now) {
      // The bound has been reached: find the true earliest expiry (once per lease period, not per Acquire).
      this.noneExpireBefore = Infinity;
      for (const l of this.leases.values()) this.noneExpireBefore = Math.min(this.noneExpireBefore, l.expiresAt);
    }
    const events = admission.decide(command, { leases: this.leases, sessions: this.sessions, noneExpireBefore: this.noneExpireBefore });
    for (const e of events) {
      const change = admissionChange(this.leases, e);
      if (!change) continue;
      const previous = this.leases.get(change.clientId);
      if (previous && previous.sessionId !== change.lease?.sessionId) this.sessions.delete(previous.sessionId);
      if (change.lease) {
        this.leases.set(change.clientId, change.lease);
        if (previous?.sessionId !== change.lease.sessionId) this.sessions.set(change.lease.sessionId, change.clientId);
        if (change.lease.expiresAt < this.noneExpireBefore) this.noneExpireBefore = change.lease.expiresAt;
      } else {
        this.leases.delete(change.clientId);
      }
    }
    return events;
  }

  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    const events = this.run({ type: 'Acquire', ...r });
    return acquireResultOf(events);
  }

  async release(sessionId: string): Promise<boolean> {
    return this.run({ type: 'Release', sessionId }).length > 0;
  }

  async renew(gatewayId: string, now: number, leaseMs: number): Promise<string[]> {
    return this.run({ type: 'Renew', gatewayId, now, leaseMs }).flatMap((e) => (e.type === 'Renewed' ? [e.sessionId] : []));
  }

  async expire(now: number): Promise<Lease[]> {
    return this.run({ type: 'Expire', now }).flatMap((e) => (e.type === 'Expired' ? [e.lease] : []));
  }

  async count(): Promise<number> {
    return this.leases.size;
  }

  async close(): Promise<void> {}
}
