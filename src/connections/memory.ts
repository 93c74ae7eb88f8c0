import {
  admission, admissionChange, expiryOf, holderOf, renewalKeptAll, renewedSessions,
  type AdmissionCommand, type AdmissionEvent, type AdmissionState, type HolderHeartbeat, type LeaseState,
} from '../domain/admission';
import { acquireResultOf, type AcquireRequest, type AcquireResult, type ConnectionRegistry, type Lease, type Renewal } from './port';

/**
 * Embedded admission: the pure decider applied to in-memory state. JavaScript
 * runs one command at a time, so each decision is atomic.
 *
 * One gateway may hold 10,000 leases, so the state is kept mutable and
 * indexed: events are applied in place (`admissionChange`, not a copy of the
 * map per event), a renewal changes its holder's one heartbeat (not its
 * leases), releases find their lease by session id, a renewal reads no lease
 * while its holder's heartbeat is live (and only its holder's after a lapse),
 * and an Acquire or an Expire scans the leases only
 * when one may have expired (`noneExpireBefore`).
 */
export class MemoryConnectionRegistry implements ConnectionRegistry {
  readonly leasesOutliveProcess = false;
  private readonly leases = new Map<string, LeaseState>();
  private readonly heartbeats = new Map<string, HolderHeartbeat>();
  /** Client id by session id. */
  private readonly sessions = new Map<string, string>();
  /** Each holder's leases, by client id. */
  private readonly byHolder = new Map<string, Map<string, LeaseState>>();
  /** No lease expires before this (a lower bound, made exact by state() when reached). */
  private noneExpireBefore = Infinity;

  /** The state as the decider sees it, the lower bound made exact first if `now` has reached it. */
  private state(now?: number): AdmissionState {
    if (now !== undefined && this.noneExpireBefore <= now) {
      // The bound has been reached: find the true earliest expiry (about once per lease period, not per command).
      this.noneExpireBefore = Infinity;
      for (const l of this.leases.values()) this.noneExpireBefore = Math.min(this.noneExpireBefore, expiryOf(l, this.heartbeats));
    }
    return { leases: this.leases, heartbeats: this.heartbeats, sessions: this.sessions, noneExpireBefore: this.noneExpireBefore };
  }

  private run(command: AdmissionCommand): AdmissionEvent[] {
    const scans = command.type === 'Acquire' || command.type === 'Expire';
    const events = admission.decide(command, this.state(scans ? command.now : undefined));
    for (const e of events) {
      const change = admissionChange(this.leases, e);
      if (!change) continue;
      if ('holder' in change) {
        const before = this.heartbeats.get(change.holder);
        this.heartbeats.set(change.holder, change.heartbeat);
        // Raising a heartbeat keeps the bound; one that starts a new run (after a lapse) hands the leases it does not
        // renew back their own, earlier expiry: find the bound again. Leases it renews for the first time get its expiry.
        if (!before || before.since !== change.heartbeat.since) this.noneExpireBefore = Number.NEGATIVE_INFINITY;
        else this.noneExpireBefore = Math.min(this.noneExpireBefore, change.heartbeat.expiresAt);
        continue;
      }
      const previous = this.leases.get(change.clientId);
      if (previous) {
        if (previous.sessionId !== change.lease?.sessionId) this.sessions.delete(previous.sessionId);
        this.byHolder.get(holderOf(previous))?.delete(change.clientId);
      }
      if (change.lease) {
        const holder = holderOf(change.lease);
        this.leases.set(change.clientId, change.lease);
        if (previous?.sessionId !== change.lease.sessionId) this.sessions.set(change.lease.sessionId, change.clientId);
        let mine = this.byHolder.get(holder);
        if (!mine) this.byHolder.set(holder, (mine = new Map()));
        mine.set(change.clientId, change.lease);
        this.noneExpireBefore = Math.min(this.noneExpireBefore, expiryOf(change.lease, this.heartbeats));
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

  async releaseHolder(holder: string): Promise<number> {
    return this.run({ type: 'ReleaseHolder', holder }).length;
  }

  async renew(holder: string, now: number, leaseMs: number): Promise<Renewal> {
    // Its heartbeat live: nothing of the holder's can have lapsed, and no lease is read. Else the live ones are named.
    const renewed = renewalKeptAll(this.heartbeats.get(holder), now) ? 'all' : renewedSessions(this.state(), holder, now, this.byHolder.get(holder)?.values() ?? []);
    this.run({ type: 'Renew', gatewayId: holder, now, leaseMs });
    return renewed;
  }

  async expire(now: number): Promise<Lease[]> {
    return this.run({ type: 'Expire', now }).flatMap((e) => (e.type === 'Expired' ? [e.lease] : []));
  }

  async count(): Promise<number> {
    return this.leases.size;
  }

  async close(): Promise<void> {}
}
