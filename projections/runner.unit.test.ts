import type { Event } from '../src/gen/chatflow/v1/events';
import type { ConsumeOptions, EventLog, LoggedEvent } from '../src/eventlog/port';
import { topicOf } from '../src/eventlog/port';
import { MemoryReadStore } from '../src/readstore/memory';
import type { ReadStore } from '../src/readstore/port';
import { ProjectionRunner } from './runner';

const event = (n: number): LoggedEvent => {
  const e: Event = { eventId: `e${n}`, time: new Date(), clientId: 'alice', conversationId: 'c1', sessionId: 's1', payload: { $case: 'clientConnected', clientConnected: { gatewayId: 'g1', timeZone: 'UTC', newConversation: true } } };
  return { event: e, topic: topicOf(e), partition: 0, offset: n, seq: n + 1 };
};

/** A log whose consumer hands the runner whatever the test passes to `deliver`. */
function fakeLog() {
  let handle!: ConsumeOptions['handle'];
  const log = { consume: async (o: ConsumeOptions) => ((handle = o.handle), { stop: async () => undefined, caughtUp: async () => undefined, lag: () => 0 }) } as unknown as EventLog;
  return { log, deliver: (e: LoggedEvent) => handle(e, new AbortController().signal) };
}

/** A memory store whose writes fail while `down()` says so, or never return while `hung()` does. */
function flakyStore(down: () => boolean, hung: () => boolean = () => false): ReadStore {
  const store = new MemoryReadStore({ checkPurity: true });
  return {
    persistent: false,
    collection: (name: string, indexes?: readonly string[]) => {
      const c = store.collection(name, indexes as never);
      return {
        ...c,
        get: c.get.bind(c), find: c.find.bind(c), count: c.count.bind(c), apply: c.apply.bind(c),
        applyMany: (id: string, steps: never) => (hung() ? new Promise<void>(() => undefined) : down() ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:27017')) : c.applyMany(id, steps)),
      };
    },
    drop: store.drop.bind(store),
    close: store.close.bind(store),
  } as unknown as ReadStore;
}

describe('ProjectionRunner: a read store that fails or hangs is said, not retried in silence', () => {
  it('given writes that fail for a while, then the problem is reported with its cause, once per period, and cleared when a write works', async () => {
    let failing = true;
    const problems: (string | undefined)[] = [];
    const { log, deliver } = fakeLog();
    const runner = new ProjectionRunner(log, flakyStore(() => failing), { fromBeginning: true, onStoreProblem: (p) => problems.push(p) });
    await runner.start();
    const applied = deliver(event(0));
    await new Promise((r) => setTimeout(r, 700)); // three attempts (backoff 200, 400 ms)
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^read-model writes failing for 0 s \(attempt 1\): connect ECONNREFUSED/);
    failing = false;
    await applied;
    expect(problems).toEqual([problems[0], undefined]);
    await runner.stop();
  });

  it('given a write that never returns, then the projector says which partition is stuck and since when', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      const problems: (string | undefined)[] = [];
      const { log, deliver } = fakeLog();
      const runner = new ProjectionRunner(log, flakyStore(() => false, () => true), { fromBeginning: true, onStoreProblem: (p) => problems.push(p) });
      await runner.start();
      void deliver(event(7));
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      jest.advanceTimersByTime(31_000);
      expect(problems).toEqual([
        'a read-model write of sessions/0 (from offset 7) has not returned for 15 s',
        'a read-model write of sessions/0 (from offset 7) has not returned for 30 s',
      ]);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('ProjectionRunner: an event handed out is acknowledged once applied', () => {
  it('given more events at once than a batch holds, then each one\'s promise settles only once its document is written', async () => {
    const store = new MemoryReadStore({ checkPurity: true });
    const { log, deliver } = fakeLog();
    const runner = new ProjectionRunner(log, store, { fromBeginning: true, batch: 2 });
    await runner.start();
    const sessions = store.collection<{ _id: string }>('sessions');
    const seen: boolean[] = [];
    const events = [0, 1, 2, 3, 4].map((n) => ({ ...event(n), event: { ...event(n).event, sessionId: `s${n}` } }));
    await Promise.all(events.map((e, n) => deliver(e).then(async () => seen.push((await sessions.get(`s${n}`)) !== null))));
    expect(seen).toEqual([true, true, true, true, true]);
    // Handed out later, after the others were told: its own promise, settled once it is applied too.
    await deliver({ ...event(5), event: { ...event(5).event, sessionId: 's5' } });
    expect(await sessions.get('s5')).not.toBeNull();
    await runner.stop();
  });
});
