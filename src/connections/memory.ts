import { decideAdmission, evolveAdmission, initialAdmissionState, type AdmissionCommand, type AdmissionEvent } from '../domain/admission';
import type { AcquireRequest, AcquireResult, ConnectionRegistry, Lease } from './port';

/**
 * Embedded admission: the pure decider applied to in-memory state. JavaScript
 * runs one command at a time, so each decision is atomic.
 */
export class MemoryConnectionRegistry implements ConnectionRegistry {
  private state = initialAdmissionState();

  private run(command: AdmissionCommand): AdmissionEvent[] {
    const events = decideAdmission(command, this.state);
    this.state = events.reduce(evolveAdmission, this.state);
    return events;
  }

  async acquire(r: AcquireRequest): Promise<AcquireResult> {
    const events = this.run({ type: 'Acquire', ...r });
    const last = events[events.length - 1];
    if (last.type === 'Admitted') return { ok: true, lease: last.lease };
    if (last.type === 'Refused') return { ok: false, reason: last.reason, holder: last.holder };
    throw new Error(`unexpected admission outcome ${last.type}`);
  }

  async release(sessionId: string): Promise<boolean> {
    return this.run({ type: 'Release', sessionId }).length > 0;
  }

  async renew(gatewayId: string, now: number, leaseMs: number): Promise<number> {
    return this.run({ type: 'Renew', gatewayId, now, leaseMs }).length;
  }

  async expire(now: number): Promise<Lease[]> {
    return this.run({ type: 'Expire', now }).flatMap((e) => (e.type === 'Expired' ? [e.lease] : []));
  }

  async count(): Promise<number> {
    return this.state.leases.size;
  }

  async close(): Promise<void> {}
}
