import type { Logger } from 'pino';
import type { ConnectionRegistry } from '../connections/port';
import { run } from '../domain/decider';
import { leaseKeeper, mayKeepClaim, trusted, type HeldSession, type LeaseKeeperCommand, type LeaseKeeperState, type LeaseTiming } from '../domain/lease';

export interface LeaseKeeperDeps {
  registry: ConnectionRegistry;
  /** This gateway process (LeaseState.holder): the one renewals name. */
  holder: string;
  clock: () => number;
  /** From CHATFLOW_LEASE_MS, capped at the registry's deadHolderMs. */
  timing: LeaseTiming;
  logger: Logger;
  /** This gateway's open sessions (walked only when some may have lost their slot). */
  held: () => HeldSession[];
  /** How many sessions this gateway has open, and whether it has this one. */
  heldCount: () => number;
  holds: (sessionId: string) => boolean;
  /** Ends sessions that no longer hold a slot (the client reconnects and is admitted afresh). */
  close: (sessionIds: string[], detail: string) => void;
  /** Each renewal's round trip, answered or failed (chatflow_lease_renewal_seconds). */
  observeRenewal?: (ms: number, ok: boolean) => void;
}

/**
 * Renews this gateway's leases and makes sure no stream outlives its slot:
 * a session whose lease the store no longer has is closed, and when renewals
 * have failed for so long that the leases may expire (and be swept by another
 * gateway once the store is back), every session admitted before the last
 * good renewal is closed first. What to do is decided by the pure
 * `leaseKeeper` rule; this class only carries it out on timers.
 */
export class LeaseKeeper {
  private state: LeaseKeeperState;
  private readonly timers: NodeJS.Timeout[] = [];
  /**
   * Slots this gateway gave up but the store did not take back (it was down).
   * Their holder is alive, so no sweep would ever free them: they are given
   * back after the next good renewal.
   */
  private readonly owed = new Set<string>();
  readonly timing: LeaseTiming;

  constructor(private readonly deps: LeaseKeeperDeps) {
    this.timing = deps.timing;
    // Trust starts at start-up: sessions admitted from now on hold fresh leases.
    this.state = { renewedAt: deps.clock(), failingSince: null };
  }

  /** Whether this gateway may keep the slot of a claim sent at `admittedAt` that came back just now (see mayKeepClaim). */
  mayKeep(admittedAt: number): boolean {
    return mayKeepClaim(this.state, { admittedAt, claimedAt: this.deps.clock() }, this.timing);
  }

  /** How late a claim sent at `admittedAt` is judged now: its own round trip, and the age of the last good renewal (for the log of a claim given back). */
  lateness(admittedAt: number): { claimMs: number; sinceRenewalMs: number; trustMs: number } {
    const now = this.deps.clock();
    return { claimMs: now - admittedAt, sinceRenewalMs: now - this.state.renewedAt, trustMs: this.timing.trustMs };
  }

  private trusted(): boolean {
    return trusted(this.state, this.deps.clock(), this.timing);
  }

  start(): void {
    void this.renew();
    this.timers.push(setInterval(() => void this.renewUnlessRenewing(), this.timing.renewEveryMs));
    this.timers.push(setInterval(() => this.check(), this.timing.sweepEveryMs));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    for (const t of this.timers.splice(0)) clearInterval(t);
  }

  /** Gives a session's slot back; if the store cannot take it now, it is given back once it can. */
  async release(sessionId: string): Promise<boolean> {
    try {
      return await this.deps.registry.release(sessionId);
    } catch (err) {
      if (this.owed.size === 0) this.deps.logger.warn({ err: (err as Error).message }, 'could not give a connection slot back; it is given back once the registry answers');
      this.owed.add(sessionId);
      return false;
    }
  }

  /**
   * At shutdown, once every session of this gateway ended (none may be open):
   * its slots given back in one go, where one release per session (four
   * writes each, a few at a time) outlasted the grace with thousands of
   * streams. The sessions' own releases then find nothing to do. If the
   * registry cannot take it, the slots come back when this gateway's
   * heartbeat lapses, as after a crash.
   */
  async releaseAll(): Promise<void> {
    try {
      const slots = await this.deps.registry.releaseHolder(this.deps.holder);
      this.owed.clear();
      this.deps.logger.info({ slots }, 'connection slots given back');
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message }, 'could not give the connection slots back at once; they come back when this gateway\'s heartbeat lapses');
    }
  }

  private async repay(): Promise<void> {
    for (const id of [...this.owed]) {
      try {
        await this.deps.registry.release(id);
        this.owed.delete(id);
      } catch {
        return; // the next good renewal tries again
      }
    }
  }

  /**
   * The timer's renewal: none while one is in flight. A store answering slowly
   * gets one renewal at a time, not one more per period; and an answer of
   * "all" (see ConnectionRegistry.renew) speaks for the leases the previous
   * renewal kept, which it could not if that one were still out.
   */
  private renewUnlessRenewing(): void {
    if (this.renewing) {
      if (!this.skipWarned) this.deps.logger.warn({ inFlightMs: this.deps.clock() - this.renewing.sentAt }, 'lease renewal still in flight; the next is sent once it returns');
      this.skipWarned = true;
      return;
    }
    void this.renew();
  }

  private renewing: { sentAt: number; done: Promise<void> } | undefined;
  private skipWarned = false;

  /** Renews now (after the one in flight, if any). */
  async renew(): Promise<void> {
    while (this.renewing) await this.renewing.done;
    const sentAt = this.deps.clock();
    const done = this.renewOnce(sentAt);
    this.renewing = { sentAt, done };
    try {
      await done;
    } finally {
      this.renewing = undefined;
    }
  }

  private async renewOnce(sentAt: number): Promise<void> {
    try {
      const renewed = await this.deps.registry.renew(this.deps.holder, sentAt, this.timing.ttlMs);
      this.deps.observeRenewal?.(this.deps.clock() - sentAt, true);
      this.skipWarned = false;
      // Every lease kept, or every open session named (the usual cases): nothing lost, and no walk over the sessions.
      const named = renewed === 'all' || renewed.reduce((n, id) => n + (this.deps.holds(id) ? 1 : 0), 0) === this.deps.heldCount();
      this.apply({ type: 'RecordRenewal', sentAt, renewed, held: named ? [] : this.deps.held() });
      if (this.owed.size > 0) await this.repay();
    } catch (err) {
      this.deps.observeRenewal?.(this.deps.clock() - sentAt, false);
      if (this.state.failingSince === null) this.deps.logger.error({ err }, 'lease renewal failed; sessions are closed if it keeps failing');
      this.apply({ type: 'RecordFailure', now: this.deps.clock() });
    }
  }

  check(): void {
    if (this.trusted()) return; // the usual case: no walk over the sessions
    this.apply({ type: 'Check', now: this.deps.clock(), trustMs: this.timing.trustMs, held: this.deps.held() });
  }

  private apply(command: LeaseKeeperCommand): void {
    const { events, state } = run(leaseKeeper, command, this.state);
    const wasFailing = this.state.failingSince !== null;
    this.state = state;
    for (const e of events) {
      switch (e.type) {
        case 'Renewed':
          if (wasFailing) this.deps.logger.warn('lease renewals work again');
          break;
        case 'RenewalFailed':
          break;
        case 'LeasesLost':
          this.deps.logger.warn({ sessions: e.sessionIds.length }, 'connection slots lost (lease no longer in the store); closing those sessions');
          this.deps.close(e.sessionIds, 'connection slot lost; reconnect');
          break;
        case 'TrustLost':
          this.deps.logger.error({ sessions: e.sessionIds.length, failingForMs: e.failingForMs }, 'lease renewals failing too long; closing sessions before their slots can be taken');
          this.deps.close(e.sessionIds, 'the connection registry is unreachable; reconnect');
          break;
        default: {
          const never: never = e;
          throw new Error(`unknown event ${JSON.stringify(never)}`);
        }
      }
    }
  }
}
