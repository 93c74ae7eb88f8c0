import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { describeEventLog, messageEvent } from './eventlog.contract';
import { KafkaEventLog, partitionFor } from './kafka';
import type { LoggedEvent } from './port';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const brokers = (process.env.KAFKA_BROKERS ?? '').split(',').filter(Boolean);
// Topics of this file's run: the contract expects one ordered partition, as the embedded log has.
const run = randomUUID().slice(0, 8);
const open = (prefix: string, partitions: number) => KafkaEventLog.open({ brokers, clientId: `test-${run}`, prefix, partitions, logger });

describeWithEngines(['KAFKA_BROKERS'], 'Kafka event log', () => {
  jest.setTimeout(60_000);

  describeEventLog('kafka', async () => {
    const opened: KafkaEventLog[] = [];
    const reopen = async () => {
      const log = await open(`ct-${run}.`, 1);
      opened.push(log);
      return log;
    };
    return {
      log: await reopen(),
      reopen,
      cleanup: async () => {
        for (const log of opened) await log.close();
      },
    };
  });

  describe('with several partitions', () => {
    let log: KafkaEventLog;
    beforeAll(async () => (log = await open(`mp-${run}.`, 4)));
    afterAll(() => log.close());

    it('keeps each conversation in one partition, in order, with an increasing seq', async () => {
      const convs = Array.from({ length: 12 }, (_, i) => `${run}-c${i}`);
      const appended = await Promise.all(convs.flatMap((c) => Array.from({ length: 5 }, (_, i) => log.append(messageEvent(c, `${c}-${i}`)))));
      for (const c of convs) {
        const mine = appended.filter((e) => e.event.conversationId === c);
        expect(new Set(mine.map((e) => e.partition))).toEqual(new Set([partitionFor(c, 4)]));
        const seqs = mine.map((e) => e.seq);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      }
      expect(new Set(appended.map((e) => e.partition)).size).toBeGreaterThan(1);

      const seen: LoggedEvent[] = [];
      const consumer = await log.consume({
        group: `order-${run}`, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 1,
        handle: async (e) => void seen.push(e),
      });
      await consumer.caughtUp();
      await consumer.stop();
      for (const c of convs) {
        const got = seen.filter((e) => e.event.conversationId === c).map((e) => e.event.eventId);
        expect(got).toEqual(appended.filter((e) => e.event.conversationId === c).map((e) => e.event.eventId));
      }
    });

    it('bounds the handlers of a whole group by partitions × concurrency, across members', async () => {
      const n = 120;
      await Promise.all(Array.from({ length: n }, (_, i) => log.append(messageEvent(`${run}-b${i}`, `b${i}`))));
      let running = 0;
      let peak = 0;
      let handled = 0;
      const handle = async () => {
        peak = Math.max(peak, ++running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        handled++;
      };
      const group = `budget-${run}`;
      // Two members of one group (as two worker processes would be).
      const a = await log.consume({ group, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 3, handle });
      const b = await log.consume({ group, topics: ['conversations'], concurrencyPerPartition: 3, handle });
      await a.caughtUp();
      await b.caughtUp();
      await Promise.all([a.stop(), b.stop()]);
      expect(handled).toBeGreaterThanOrEqual(n);
      expect(peak).toBeLessThanOrEqual(4 * 3);
    });
  });

  describe('a place kept for an event not appended yet (work begun early, Consumer.reserve)', () => {
    let log: KafkaEventLog;
    beforeAll(async () => (log = await open(`rs-${run}.`, 4)));
    afterAll(() => log.close());

    it('counts with the handlers of its partition, becomes its own handler\'s when it comes, and frees a place when given back', async () => {
      const c = `${run}-reserve`;
      const started: string[] = [];
      const gates = new Map<string, () => void>();
      let assigned: readonly number[] = [];
      const consumer = await log.consume({
        group: `reserve-${run}`, topics: ['conversations'], concurrencyPerPartition: 2,
        onAssigned: (_topic, partitions) => void (assigned = partitions),
        handle: (e) => new Promise<void>((r) => {
          started.push(e.event.eventId);
          gates.set(e.event.eventId, r);
        }),
      });
      const until = async (what: () => boolean, label: string) => {
        for (const end = Date.now() + 20_000; !what(); await new Promise((r) => setTimeout(r, 20))) if (Date.now() > end) throw new Error(`not within 20 s: ${label}`);
      };
      try {
        await until(() => assigned.length === 4, 'the 4 partitions assigned');
        expect(log.partitionOf('conversations', c)).toBe(partitionFor(c, 4));
        const [x1, x2, x3, o1, o2] = ['x1', 'x2', 'x3', 'o1', 'o2'].map((id) => messageEvent(c, id));
        const give1 = consumer.reserve!(x1);
        const give2 = consumer.reserve!(x2);
        expect(give1).toBeDefined();
        expect(give2).toBeDefined();
        expect(consumer.reserve!(x3)).toBeUndefined(); // its partition's 2 places are kept
        await log.append(x1);
        await until(() => started.includes(x1.eventId), 'x1 handed out in its place');
        await log.append(o1);
        await new Promise((r) => setTimeout(r, 1_000));
        expect(started).toEqual([x1.eventId]); // x1 runs, x2's place is kept: o1 waits
        give2!();
        await until(() => started.includes(o1.eventId), 'o1 started in the place given back');
        give1!(); // x1 was handed out: its place is its handler's, nothing more starts
        await log.append(o2);
        await new Promise((r) => setTimeout(r, 1_000));
        expect(started).toEqual([x1.eventId, o1.eventId]);
        gates.get(x1.eventId)!();
        await until(() => started.includes(o2.eventId), 'o2 started once x1 finished');
        for (const g of gates.values()) g();
      } finally {
        await consumer.stop();
      }
      expect(assigned).toEqual([]); // told it holds none once stopped
    });
  });

  describe('when a member finishes its last events while it rejoins the group', () => {
    // kafkajs sends OffsetCommit, JoinGroup and SyncGroup to the coordinator on one connection, and the broker
    // answers one request of a connection at a time, in order. A commit the member sends after its JoinGroup
    // and before SyncGroup has answered still carries the old generation (kafkajs replaces its offset manager
    // only once SyncGroup has answered): the broker refuses it (ILLEGAL_GENERATION). If it carried the
    // member's last progress on a partition it keeps, that progress must still be committed: the group's
    // other members only know it from the group's committed offsets (caughtUp). Here the first member's events
    // are all handed out and held until it rejoins: the leader's SyncGroup answer is held until the member
    // has sent a commit (as if the broker had been that slow to store the assignment), and that commit's
    // answer comes after it, as the broker would send it.
    it.each([
      ['each partition\'s events are all running', 2],
      ['some of each partition\'s events are read ahead', 5],
    ])('commits its progress again in the new generation (%s)', async (_, perPartition) => {
      const log = await open(`rj-${randomUUID().slice(0, 8)}.`, 4);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const Broker = require('kafkajs/src/broker');
      const { syncGroup, offsetCommit } = Broker.prototype;
      const group = `rejoin-${perPartition}-${run}`;
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let holding: { gate: Promise<void>; sent: () => void } | undefined;
      let held = false;
      const refused: string[] = [];
      let deadline: NodeJS.Timeout | undefined;
      Broker.prototype.syncGroup = async function (this: unknown, args: { groupId: string; generationId: number; groupAssignment: unknown[] }) {
        const answer = await syncGroup.call(this, args);
        if (held || !args.groupId.endsWith(group) || args.generationId < 2 || args.groupAssignment.length === 0) return answer;
        held = true;
        let open!: () => void;
        let sent!: () => void;
        const commitSent = new Promise<void>((r) => (sent = r));
        holding = { gate: new Promise<void>((r) => (open = r)), sent };
        release(); // the first member's handlers finish while it rejoins
        let waited: NodeJS.Timeout | undefined;
        await Promise.race([commitSent, new Promise((r) => (waited = setTimeout(r, 5_000)))]);
        clearTimeout(waited);
        holding = undefined;
        setTimeout(open, 0); // read after the SyncGroup answer, as the next answer on the connection
        return answer;
      };
      Broker.prototype.offsetCommit = async function (this: unknown, args: unknown) {
        const h = holding;
        h?.sent();
        try {
          return await offsetCommit.call(this, args);
        } catch (err) {
          if (h) refused.push((err as { type?: string }).type ?? String(err));
          throw err;
        } finally {
          if (h) await h.gate;
        }
      };
      try {
        // perPartition events in each of the 4 partitions.
        const convs: string[] = [];
        const count = [0, 0, 0, 0];
        for (let i = 0; convs.length < 4 * perPartition; i++) {
          const c = `${run}-rj${perPartition}-${i}`;
          if (count[partitionFor(c, 4)]++ < perPartition) convs.push(c);
        }
        await Promise.all(convs.map((c) => log.append(messageEvent(c, c))));
        const handled = new Set<string>();
        let started = 0;
        const a = await log.consume({
          group, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 3,
          handle: async (e) => {
            started++;
            await released;
            handled.add(e.event.conversationId);
          },
        });
        // Every event is read: handed out (3 a partition) or, with the read-ahead, waiting for a handler.
        for (const end = Date.now() + 10_000; started < 4 * Math.min(3, perPartition); await new Promise((r) => setTimeout(r, 5))) {
          if (Date.now() > end) throw new Error(`only ${started} events started`);
        }
        const b = await log.consume({ group, topics: ['conversations'], concurrencyPerPartition: 3, handle: async (e) => void handled.add(e.event.conversationId) });
        let first = 'no';
        const late = new Promise<never>((_r, reject) => {
          deadline = setTimeout(() => reject(new Error(`the group did not catch up in 20 s (${handled.size} of ${convs.length} events handled; first member caught up: ${first}; commits refused while rejoining: ${refused.join(', ') || 'none'})`)), 20_000);
        });
        await Promise.race([(async () => { await a.caughtUp(); first = 'yes'; await b.caughtUp(); })(), late]);
        await Promise.all([a.stop(), b.stop()]);
        expect(held).toBe(true);
        expect(refused).toContain('ILLEGAL_GENERATION');
        expect(handled.size).toBe(convs.length);
      } finally {
        clearTimeout(deadline);
        Broker.prototype.syncGroup = syncGroup;
        Broker.prototype.offsetCommit = offsetCommit;
        release();
        await log.close();
      }
    });
  });

  describe('while a partition\'s handlers are all busy', () => {
    let log: KafkaEventLog;
    beforeEach(async () => (log = await open(`ra-${randomUUID().slice(0, 8)}.`, 1)));
    afterEach(() => log.close());

    const until = async (cond: () => boolean) => {
      for (const end = Date.now() + 10_000; !cond(); await new Promise((r) => setTimeout(r, 5))) {
        if (Date.now() > end) throw new Error('timed out');
      }
    };
    /** Handlers that each wait until the test lets their event go. */
    const held = () => {
      const started: number[] = [];
      const release = new Map<number, () => void>();
      const running: number[] = [];
      let peak = 0;
      const handle = async (e: LoggedEvent) => {
        started.push(e.offset);
        peak = Math.max(peak, running.push(e.offset));
        await new Promise<void>((r) => release.set(e.offset, r));
        running.splice(running.indexOf(e.offset), 1);
      };
      return { started, release, running, handle, peak: () => peak };
    };

    it('starts a busy partition\'s next events in log order as handlers finish, never more than concurrencyPerPartition at once', async () => {
      const appended: LoggedEvent[] = [];
      for (let i = 0; i < 9; i++) appended.push(await log.append(messageEvent(`${run}-ra`, `m${i}`)));
      const offsets = appended.map((e) => e.offset);
      const h = held();
      const consumer = await log.consume({ group: `ra-order-${run}`, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 2, handle: h.handle });
      await until(() => h.started.length === 2);
      // What waits is not handed out: the worker reads its own outcomes only from what was.
      expect(consumer.handedOut?.('conversations', 0)).toBe(offsets[2]);
      expect(consumer.lag()).toBe(7);
      // Let them go out of order, one at a time: each frees one slot for the next event in the log.
      for (let done = 1; done <= 7; done++) {
        h.release.get(h.running[done % 2])!();
        await until(() => h.started.length === 2 + done);
      }
      for (const o of [...h.running]) h.release.get(o)!();
      await consumer.caughtUp();
      await consumer.stop();
      expect(h.started).toEqual(offsets);
      expect(h.peak()).toBe(2);
    });

    it('leaves the events not yet handled uncommitted when stopped: the next member of the group handles them', async () => {
      const appended: LoggedEvent[] = [];
      for (let i = 0; i < 4; i++) appended.push(await log.append(messageEvent(`${run}-rs`, `m${i}`)));
      const group = `ra-stop-${run}`;
      const h = held();
      const first = await log.consume({ group, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 1, handle: h.handle });
      await until(() => h.started.length === 1);
      expect(first.handedOut?.('conversations', 0)).toBe(appended[1].offset);
      const stopped = first.stop();
      h.release.get(appended[0].offset)!();
      await stopped;
      expect(h.started).toEqual([appended[0].offset]);

      const seen: number[] = [];
      const second = await log.consume({ group, topics: ['conversations'], concurrencyPerPartition: 1, handle: async (e) => void seen.push(e.offset) });
      await second.caughtUp();
      await second.stop();
      expect(seen).toEqual(appended.slice(1).map((e) => e.offset));
    });
  });
});
