import { randomUUID } from 'node:crypto';
import { Event } from '../gen/chatflow/v1/events';
import type { ConsumeOptions, Consumer, EventLog, LoggedEvent, Topic } from './port';

/*
 * The contract every EventLog adapter (embedded, Kafka) must keep. It only
 * uses the port. The log may already hold events of other runs (a shared
 * Kafka cluster): each test tags its events with a fresh run id, uses fresh
 * groups, and only asserts about its own events.
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const waitFor = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(5);
  }
};

/** A promise plus its resolver, to hold a handler until the test lets it go. */
const gate = () => {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
};

export const messageEvent = (conversationId: string, text: string): Event =>
  Event.fromPartial({
    eventId: randomUUID(),
    time: new Date(),
    clientId: 'client-1',
    conversationId,
    sessionId: 'session-1',
    payload: {
      $case: 'messageReceived',
      messageReceived: { messageId: randomUUID(), gatewayId: 'gw-1', timeZone: 'UTC', content: { $case: 'text', text } },
    },
  });

export const connectedEvent = (conversationId: string): Event =>
  Event.fromPartial({
    eventId: randomUUID(),
    time: new Date(),
    clientId: 'client-1',
    conversationId,
    sessionId: 'session-1',
    payload: { $case: 'clientConnected', clientConnected: { gatewayId: 'gw-1', timeZone: 'UTC', newConversation: true } },
  });

type Factory = () => Promise<{ log: EventLog; reopen?: () => Promise<EventLog>; cleanup(): Promise<void> }>;

export function describeEventLog(name: string, factory: Factory): void {
  describe(`EventLog contract: ${name}`, () => {
    let log: EventLog;
    let reopen: (() => Promise<EventLog>) | undefined;
    let cleanup: () => Promise<void>;
    let run: string;
    const consumers: Consumer[] = [];

    beforeEach(async () => {
      ({ log, reopen, cleanup } = await factory());
      run = randomUUID().slice(0, 8);
    });
    afterEach(async () => {
      for (const c of consumers.splice(0)) await c.stop(0);
      await cleanup();
    });

    const conv = (i: number | string) => `${run}-conv-${i}`;
    const ours = (e: LoggedEvent) => e.event.conversationId.startsWith(run);
    const appendMessages = async (n: number, from = 0) => {
      const out: LoggedEvent[] = [];
      for (let i = from; i < from + n; i++) out.push(await log.append(messageEvent(conv(i), `m${i}`)));
      return out;
    };

    /** Consumes into `seen` (our events only); other events are handled at once. */
    const consume = async (
      opts: Partial<ConsumeOptions> & { group: string },
      handleOurs: (e: LoggedEvent) => Promise<void> = async () => {},
    ) => {
      const seen: LoggedEvent[] = [];
      const consumer = await log.consume({
        topics: ['conversations'],
        concurrencyPerPartition: 1,
        ...opts,
        handle: async (e) => {
          if (!ours(e)) return;
          await handleOurs(e);
          seen.push(e);
        },
      });
      consumers.push(consumer);
      return { consumer, seen };
    };
    const ids = (events: LoggedEvent[]) => events.map((e) => e.event.eventId);

    it('append resolves with a strictly increasing seq per conversation', async () => {
      const a: LoggedEvent[] = [];
      const b: LoggedEvent[] = [];
      for (let i = 0; i < 5; i++) {
        const [x, y] = await Promise.all([log.append(messageEvent(conv('a'), `a${i}`)), log.append(messageEvent(conv('b'), `b${i}`))]);
        a.push(x);
        b.push(y);
      }
      for (const list of [a, b]) {
        for (let i = 1; i < list.length; i++) expect(list[i].seq).toBeGreaterThan(list[i - 1].seq);
      }
      for (const e of [...a, ...b]) {
        expect(e.topic).toBe('conversations');
        expect(Number.isInteger(e.partition) && e.partition >= 0).toBe(true);
        expect(Number.isInteger(e.offset) && e.offset >= 0).toBe(true);
      }
      expect(a[0].event.conversationId).toBe(conv('a'));
    });

    it('stores an event appended with its bytes (encoded once by the caller) as those bytes: consumers read it back whole', async () => {
      const event = messageEvent(conv('enc'), 'encoded by its caller');
      const bytes = Event.encode(event).finish();
      // The bytes inside a larger buffer, as a caller's shared writer may hand them out.
      const padded = new Uint8Array(bytes.length + 16);
      padded.set(bytes, 8);
      const appended = await log.append(event, padded.subarray(8, 8 + bytes.length));
      expect(appended.topic).toBe('conversations');
      const { consumer, seen } = await consume({ group: `${run}-encoded`, fromBeginning: true });
      await consumer.caughtUp();
      const back = seen.find((e) => e.event.eventId === event.eventId);
      expect(back?.event).toEqual(event);
      expect(back?.offset).toBe(appended.offset);
    });

    it('routes each event to the topic of its payload', async () => {
      const s = await log.append(connectedEvent(conv('x')));
      const m = await log.append(messageEvent(conv('x'), 'hello'));
      expect(s.topic).toBe('sessions');
      expect(m.topic).toBe('conversations');

      const topicsSeen = new Set<Topic>();
      const sessions = await log.consume({
        group: `${run}-sessions`,
        topics: ['sessions'],
        fromBeginning: true,
        concurrencyPerPartition: 4,
        handle: async (e) => void topicsSeen.add(e.topic),
      });
      consumers.push(sessions);
      const conversations = await consume({ group: `${run}-conversations`, fromBeginning: true });
      await sessions.caughtUp();
      await conversations.consumer.caughtUp();
      expect([...topicsSeen]).toEqual(['sessions']);
      expect(ids(conversations.seen)).toEqual([m.event.eventId]);
    });

    it('delivers events in log order', async () => {
      const appended = await appendMessages(20);
      const { consumer, seen } = await consume({ group: `${run}-order`, fromBeginning: true }, () => sleep(1));
      await consumer.caughtUp();
      expect(ids(seen)).toEqual(ids(appended));
      const offsets = seen.map((e) => e.offset);
      expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
      expect(seen.map((e) => e.seq)).toEqual(appended.map((e) => e.seq));
    });

    it('hands each conversation its events one at a time, in log order, under backpressure', async () => {
      // Few conversations, many events each: every partition is kept full, so the consumer must hold events back.
      const appended: LoggedEvent[] = [];
      for (let i = 0; i < 300; i++) appended.push(await log.append(messageEvent(conv(`busy-${i % 3}`), `b${i}`)));
      const started: LoggedEvent[] = [];
      let running = 0;
      let overlapped = false;
      const { consumer, seen } = await consume({ group: `${run}-backpressure`, fromBeginning: true }, async (e) => {
        started.push(e);
        if (++running > 3) overlapped = true;
        await sleep(Math.random() < 0.2 ? 5 : 0);
        running--;
      });
      await consumer.caughtUp();
      expect(seen).toHaveLength(300);
      expect(overlapped).toBe(false);
      for (let c = 0; c < 3; c++) {
        const mine = (list: LoggedEvent[]) => list.filter((e) => e.event.conversationId === conv(`busy-${c}`)).map((e) => e.event.eventId);
        expect(mine(started)).toEqual(mine(appended));
      }
    });

    it('never runs more handlers than concurrencyPerPartition', async () => {
      await appendMessages(30);
      let running = 0;
      let max = 0;
      const { consumer, seen } = await consume({ group: `${run}-conc`, fromBeginning: true, concurrencyPerPartition: 4 }, async () => {
        max = Math.max(max, ++running);
        await sleep(10);
        running--;
      });
      await consumer.caughtUp();
      expect(seen).toHaveLength(30);
      expect(max).toBeLessThanOrEqual(4);
      expect(max).toBeGreaterThanOrEqual(2);
    });

    it('resumes a group from its committed offset: nothing lost, nothing done redelivered', async () => {
      const first = await appendMessages(5);
      const group = `${run}-resume`;
      const stuck = gate();
      const reached = gate();
      // Event 2 never finishes before stop: it and everything after must come again.
      const one = await consume({ group, fromBeginning: true }, async (e) => {
        if (e.event.eventId === first[2].event.eventId) {
          reached.open();
          await stuck.promise;
        }
      });
      // Told by the handler, not polled against a clock: joining a Kafka group took over 5 s on a loaded CI machine.
      await reached.promise;
      await waitFor(() => one.seen.length === 2 && one.consumer.inFlight() === 1);
      await one.consumer.stop(50);
      stuck.open();
      const later = await appendMessages(3, 5);

      const two = await consume({ group });
      // A second join: bounded by the test's own timeout, not 5 s.
      await waitFor(() => two.seen.length === 6, 45_000);
      await two.consumer.caughtUp();
      expect(ids(two.seen)).toEqual(ids([...first.slice(2), ...later]));
    });

    it('fromBeginning redelivers events the group already committed', async () => {
      const appended = await appendMessages(6);
      const group = `${run}-again`;
      const one = await consume({ group, fromBeginning: true });
      await one.consumer.caughtUp();
      await one.consumer.stop();
      const two = await consume({ group, fromBeginning: true });
      await two.consumer.caughtUp();
      expect(ids(two.seen)).toEqual(ids(appended));
    });

    it('caughtUp waits for the events present when called, not for later ones', async () => {
      const appended = await appendMessages(3);
      const late = gate();
      let lateId = '';
      const { consumer, seen } = await consume({ group: `${run}-caught`, fromBeginning: true }, async (e) => {
        if (e.event.eventId === lateId) await late.promise;
        else await sleep(20);
      });
      const caught = consumer.caughtUp();
      const extra = await log.append(messageEvent(conv('late'), 'late'));
      lateId = extra.event.eventId;
      await caught;
      expect(ids(seen)).toEqual(ids(appended));
      late.open();
      await consumer.caughtUp();
      expect(ids(seen)).toEqual(ids([...appended, extra]));
    });

    it('retries a failing handler with backoff and never skips its event', async () => {
      const appended = await appendMessages(3);
      let failures = 0;
      const { consumer, seen } = await consume({ group: `${run}-retry`, fromBeginning: true }, async (e) => {
        if (e.event.eventId === appended[1].event.eventId && failures < 2) {
          failures++;
          throw new Error('transient');
        }
      });
      await consumer.caughtUp();
      expect(failures).toBe(2);
      expect(ids(seen)).toEqual(ids(appended));
    });

    it('stop waits for running handlers within the grace period', async () => {
      await appendMessages(1);
      let finished = false;
      let started!: () => void;
      const running = new Promise<void>((r) => (started = r));
      const { consumer } = await consume({ group: `${run}-stop`, fromBeginning: true }, async () => {
        started();
        await sleep(100);
        finished = true;
      });
      // Told by the handler itself: a Kafka group join can take longer than a poll's 5 s on a loaded machine
      // (a CI run timed out here), and a 100 ms handler is easy to miss by polling.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no handler started within 45 s')), 45_000)))]).finally(() => clearTimeout(timer));
      expect(consumer.inFlight()).toBe(1);
      await consumer.stop(5000);
      expect(finished).toBe(true);
      expect(consumer.inFlight()).toBe(0);
    });

    it('keeps every concurrent append durable and readable after reopening', async () => {
      if (!reopen) return;
      const appended = await Promise.all(Array.from({ length: 300 }, (_, i) => log.append(messageEvent(conv(i % 7), `c${i}`))));
      expect(new Set(appended.map((e) => e.offset)).size).toBe(300);
      await log.close();
      log = await reopen();
      const { consumer, seen } = await consume({ group: `${run}-reopen`, fromBeginning: true, concurrencyPerPartition: 8 });
      await consumer.caughtUp();
      const byId = new Map(seen.map((e) => [e.event.eventId, e]));
      for (const a of appended) {
        const got = byId.get(a.event.eventId);
        expect(got).toBeDefined();
        expect(got!.event).toEqual(a.event);
        expect([got!.offset, got!.seq, got!.topic]).toEqual([a.offset, a.seq, a.topic]);
      }
    });
  });
}
