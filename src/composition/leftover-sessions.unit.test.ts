import type { EventLog } from '../eventlog/port';
import type { Event } from '../gen/chatflow/v1/events';
import type { ConnectionRegistry } from '../connections/port';
import type { ReadModels } from './wiring';
import { recordLeftoverSessions } from './gateway-role';

/**
 * At start on the embedded engines, the sessions a stopped (or killed) process
 * left open are recorded as ended, one `ClientDisconnected` each. There are
 * as many as clients were connected: 10,000 at CHATFLOW_MAX_CLIENTS=10000.
 */
describe('recordLeftoverSessions', () => {
  it('given many sessions left open, then their disconnects are appended together (one group commit), not one durable write after another', async () => {
    const open = Array.from({ length: 200 }, (_, i) => ({ _id: `s${i}`, clientId: `c${i}`, conversationId: `conv${i}`, gatewayId: 'gw-old', open: true }));
    const pending: { event: Event; done: () => void }[] = [];
    const log = { append: (event: Event) => new Promise<void>((done) => pending.push({ event, done })) } as unknown as EventLog;
    const readModels = { sessions: { find: async () => open } } as unknown as ReadModels;
    const registry = { leasesOutliveProcess: false } as ConnectionRegistry;
    let n = 0;
    const recorded = recordLeftoverSessions({ registry, log, readModels, clock: () => 0, newId: () => `e${n++}` });
    await new Promise((r) => setImmediate(r));
    expect(pending).toHaveLength(200); // all waiting on the log at once
    expect(new Set(pending.map((p) => p.event.sessionId)).size).toBe(200);
    for (const p of pending) p.done();
    await recorded;
  });
});
