import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { EmbeddedEventLog } from '../eventlog/embedded';
import { describeEventLog, messageEvent } from '../eventlog/eventlog.contract';
import type { EventLog, LoggedEvent } from '../eventlog/port';
import { Event } from '../gen/chatflow/v1/events';
import { StorageUnavailableError } from '../domain/errors';
import { isTransient } from '../resilience/transient';
import { Channel, type Port } from './channel';
import { logShape, RemoteEventLog, serveEventLog } from './remote-log';
import { decorate } from '../composition/instrument';

const quiet = { warn: () => {}, info: () => {} };

/** Both ends of a thread link in this thread: every call is structured-cloned and asynchronous, as between threads. */
function link(): { loop: Channel; thread: Channel; close(): void } {
  const { port1, port2 } = new MessageChannel();
  const ports: MessagePort[] = [port1, port2];
  return {
    loop: new Channel(port1 as Port),
    thread: new Channel(port2 as Port),
    close: () => ports.forEach((p) => p.close()),
  };
}

function remote(log: EventLog): { log: RemoteEventLog; close(): void } {
  const l = link();
  serveEventLog(l.loop, log);
  return { log: new RemoteEventLog(l.thread, logShape(log)), close: l.close };
}

// The same contract as every EventLog adapter: the embedded log, used from another thread.
describeEventLog('embedded, through a thread link', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chatflow-remote-log-'));
  const opened: EmbeddedEventLog[] = [];
  const links: (() => void)[] = [];
  const open = async () => {
    const log = await EmbeddedEventLog.open({ dir, logger: quiet });
    opened.push(log);
    const r = remote(log);
    links.push(r.close);
    // The thread's close leaves the log to the event loop, which closes it: here, the test is both.
    r.log.close = () => log.close();
    return r.log;
  };
  return {
    log: await open(),
    reopen: open,
    cleanup: async () => {
      for (const log of opened) await log.close();
      links.forEach((close) => close());
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('RemoteEventLog', () => {
  let dir: string;
  let real: EmbeddedEventLog;
  let r: { log: RemoteEventLog; close(): void };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-remote-log-'));
    real = await EmbeddedEventLog.open({ dir, fsync: false, logger: quiet });
    r = remote(real);
  });
  afterEach(async () => {
    await real.close();
    r.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts handedOut from the events that reached this side, so an outcome still on its way is never missed', async () => {
    const seen: LoggedEvent[] = [];
    const consumer = await r.log.consume({ group: 'g', topics: ['conversations'], concurrencyPerPartition: 10, handle: async (e) => void seen.push(e) });
    expect(consumer.handedOut!('conversations', 0)).toBeUndefined();
    for (let i = 0; i < 5; i++) await r.log.append(messageEvent('c1', `m${i}`));
    await consumer.caughtUp();
    expect(seen.map((e) => e.offset)).toEqual([0, 1, 2, 3, 4]);
    expect(consumer.handedOut!('conversations', 0)).toBe(5);
    expect(r.log.endOffset).toBeUndefined(); // the embedded log has none: the worker reads the read models instead
    await consumer.stop();
  });

  it("tells a worker's own outcomes as where they landed and what they answer, not as events; handedOut counts them", async () => {
    const outcome = (inReplyTo: string, workerId: string, failed = false) =>
      failed
        ? Event.fromPartial({ conversationId: 'c1', payload: { $case: 'processingFailed', processingFailed: { inReplyTo, workerId, code: 'INTERNAL', message: 'x' } } })
        : Event.fromPartial({ conversationId: 'c1', payload: { $case: 'responseProduced', responseProduced: { messageId: `r-${inReplyTo}`, inReplyTo, workerId, text: 'hi' } } });
    const handled: LoggedEvent[] = [];
    const seen: [string, Omit<LoggedEvent, 'event'>][] = [];
    const consumer = await r.log.consume({
      group: 'g',
      topics: ['conversations'],
      concurrencyPerPartition: 10,
      handle: async (e) => void handled.push(e),
      ownOutcomes: { workerId: 'wk-mine', seen: (answers, at) => void seen.push([answers, at]) },
    });
    await r.log.append(messageEvent('c1', 'first'));
    const mine = await r.log.append(outcome('m1', 'wk-mine'));
    await r.log.append(outcome('m2', 'wk-other'));
    const mineFailed = await r.log.append(outcome('m3', 'wk-mine', true));
    await consumer.caughtUp();
    expect(handled.map((e) => [e.offset, e.event.payload?.$case])).toEqual([
      [0, 'messageReceived'],
      [2, 'responseProduced'],
    ]);
    expect(seen).toEqual([
      ['m1', { topic: 'conversations', partition: 0, offset: mine.offset, seq: mine.seq }],
      ['m3', { topic: 'conversations', partition: 0, offset: mineFailed.offset, seq: mineFailed.seq }],
    ]);
    expect(consumer.handedOut!('conversations', 0)).toBe(4);
    await consumer.stop();
  });

  it('sends an append as the bytes the thread encoded: the event loop stores them without encoding (or receiving) the object', async () => {
    let objectAppends = 0;
    const counted = decorate<EventLog>(real, { append: (e) => (objectAppends++, real.append(e)) });
    const c = remote(counted);
    try {
      const sent = messageEvent('c1', 'as bytes');
      const where = await c.log.append(sent);
      expect(where.event).toBe(sent);
      const read: LoggedEvent[] = [];
      const consumer = await real.consume({ group: 'check', topics: ['conversations'], concurrencyPerPartition: 1, handle: async (e) => void read.push(e) });
      await consumer.caughtUp();
      await consumer.stop();
      expect(read.map((e) => [e.offset, e.seq, e.event])).toEqual([[where.offset, where.seq, sent]]);
      expect(objectAppends).toBe(0);
    } finally {
      c.close();
    }
  });

  // Issue 15: one crossing between a reply and its gateway instead of three (WorkerDeps.appendAndTell).
  it('appends an outcome and hands its update to `tell` with where it landed, before the thread hears back; other appends are not told', async () => {
    const l = link();
    const told: [string, number[], number, boolean][] = [];
    let threadHeard = false;
    serveEventLog(l.loop, real, (subject, update, at) => void told.push([subject, [...update], at.seq, threadHeard]));
    const log = new RemoteEventLog(l.thread, logShape(real, true));
    try {
      expect(log.tellsOutcomes).toBe(true);
      await log.append(messageEvent('c1', 'm1'));
      const outcome = Event.fromPartial({ eventId: 'r1', time: new Date(), clientId: 'alice', conversationId: 'c1', sessionId: 's1', payload: { $case: 'responseProduced', responseProduced: { messageId: 'resp-m1', inReplyTo: 'm1', text: 'hello', workerId: 'wA' } } });
      const where = await log.appendOutcome(outcome, Event.encode(outcome).finish(), { subject: 'client.alice', update: Uint8Array.of(10, 2, 109, 49) });
      threadHeard = true;
      expect([where.offset, where.seq, where.event]).toEqual([1, 2, outcome]);
      expect(told).toEqual([['client.alice', [10, 2, 109, 49], 2, false]]);
      // The outcome is in the log as the thread encoded it.
      const read: LoggedEvent[] = [];
      const consumer = await real.consume({ group: 'check', topics: ['conversations'], concurrencyPerPartition: 1, handle: async (e) => void read.push(e) });
      await consumer.caughtUp();
      await consumer.stop();
      expect(read.map((e) => e.event.eventId)).toEqual([expect.any(String), 'r1']);
    } finally {
      l.close();
    }
  });

  it('refuses appendOutcome where the event loop was given nothing to tell with', async () => {
    expect(r.log.tellsOutcomes).toBe(false);
    const outcome = Event.fromPartial({ eventId: 'r1', clientId: 'alice', conversationId: 'c1', payload: { $case: 'responseProduced', responseProduced: { inReplyTo: 'm1' } } });
    await expect(r.log.appendOutcome(outcome, Event.encode(outcome).finish(), { subject: 's', update: new Uint8Array() })).rejects.toThrow('the event loop does not tell outcomes for this log');
  });

  it('gives an encoded append refused for a full disk back as the same error, still transient', async () => {
    const full = new StorageUnavailableError('the server cannot store events right now (no space left on device); retry in 2000 ms', 2000);
    const failing: EventLog = { ...logShapeOf(real), append: () => Promise.reject(new Error('unused')), appendEncoded: () => Promise.reject(full), consume: () => Promise.reject(new Error('unused')), close: async () => {} };
    const f = remote(failing);
    try {
      const err = await f.log.append(messageEvent('c1', 'x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageUnavailableError);
      expect([(err as Error).message, isTransient(err)]).toEqual([full.message, true]);
    } finally {
      f.close();
    }
  });

  it('gives an append refused for a full disk back as the same error, still transient', async () => {
    const full = new StorageUnavailableError('the server cannot store events right now (no space left on device); retry in 2000 ms', 2000);
    const failing: EventLog = { ...logShapeOf(real), append: async () => Promise.reject(full), endOffset: async () => 42, consume: () => Promise.reject(new Error('unused')), close: async () => {} };
    const f = remote(failing);
    try {
      expect(await f.log.endOffset!('conversations', 0)).toBe(42);
      const err = await f.log.append(messageEvent('c1', 'x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageUnavailableError);
      expect((err as StorageUnavailableError).retryAfterMs).toBe(2000);
      expect((err as Error).message).toBe(full.message);
      expect(isTransient(err)).toBe(true);
    } finally {
      f.close();
    }
  });

  it('keeps an engine error transient and a fault of the request not, across the link', async () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const bug = new TypeError('cannot read properties of undefined');
    let next: Error = reset;
    const failing: EventLog = { ...logShapeOf(real), append: async () => Promise.reject(next), consume: () => Promise.reject(new Error('unused')), close: async () => {} };
    const f = remote(failing);
    try {
      const a = (await f.log.append(messageEvent('c1', 'x')).catch((e: unknown) => e)) as Error;
      expect([a.message, isTransient(a)]).toEqual(['read ECONNRESET', true]);
      next = bug;
      const b = (await f.log.append(messageEvent('c1', 'x')).catch((e: unknown) => e)) as Error;
      expect([b.name, b.message, isTransient(b)]).toEqual(['TypeError', 'cannot read properties of undefined', false]);
    } finally {
      f.close();
    }
  });

  it('aborts the handler\'s signal when the event loop\'s consumer gives up on it at stop', async () => {
    let signal: AbortSignal | undefined;
    let started!: () => void;
    const running = new Promise<void>((res) => (started = res));
    const consumer = await r.log.consume({
      group: 'g',
      topics: ['conversations'],
      concurrencyPerPartition: 1,
      handle: (_e, s) => {
        signal = s;
        started();
        return new Promise<void>((res) => s.addEventListener('abort', () => res(), { once: true }));
      },
    });
    await r.log.append(messageEvent('c1', 'held'));
    await running;
    expect(signal!.aborted).toBe(false);
    await consumer.stop(50);
    await new Promise((res) => setTimeout(res, 20));
    expect(signal!.aborted).toBe(true);
  });
});

function logShapeOf(log: EventLog): Pick<EventLog, 'partitions' | 'endOffset'> {
  return { partitions: (t) => log.partitions(t), endOffset: log.endOffset?.bind(log) };
}
