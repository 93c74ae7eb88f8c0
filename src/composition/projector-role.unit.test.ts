import pino from 'pino';
import { loadConfig } from '../config/config';
import type { ConsumeOptions, EventLog } from '../eventlog/port';
import { createMetrics } from '../metrics';
import { MemoryReadStore } from '../readstore/memory';
import { projectorRole } from './projector-role';

/**
 * The read models replay the whole embedded log at start, which takes as long
 * as the log is long. An operator who stops the process meanwhile (Ctrl-C,
 * systemctl stop) is not kept waiting for the replay to end.
 */
describe('projectorRole: a replay under way when start-up is called off', () => {
  it('given a replay that has not caught up, when start-up is called off, then start rejects with the reason at once and the replay stops', async () => {
    let consumerStopped = false;
    const log = {
      consume: async (_o: ConsumeOptions) => ({
        stop: async () => {
          consumerStopped = true;
        },
        caughtUp: () => new Promise<void>(() => undefined), // a long log: not caught up within the test
        lag: () => 1_000_000,
      }),
    } as unknown as EventLog;
    const controller = new AbortController();
    const role = projectorRole({ config: loadConfig({}), logger: pino({ level: 'silent' }), log, store: new MemoryReadStore(), metrics: createMetrics(), startup: controller.signal });
    const started = role.start().then(
      () => 'caught up',
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 50));
    const reason = new Error('start-up stopped: SIGTERM');
    controller.abort(reason);
    await expect(started).resolves.toBe(reason);
    expect(consumerStopped).toBe(true);
  });
});
