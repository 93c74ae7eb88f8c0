import { admission, type AdmissionCommand, type AdmissionEvent } from '../domain/admission';
import { run } from '../domain/decider';
import { acquireResultOf, type AcquireRequest, type AcquireResult, type ConnectionRegistry, type Lease } from './port';

/**
 * Embedded admission: the pure decider applied to in-memory state. JavaScript
 * runs one command at a time, so each decision is atomic.
 */
export class MemoryConnectionRegistry implements ConnectionRegistry {
  private state = admission.initialState();

  private run(command: AdmissionCommand): AdmissionEvent[] {
    const { events, state } = run(admission, command, this.state);
    this.state = state;
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
    return this.state.leases.size;
  }

  async close(): Promise<void> {}
}
