import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Event } from '../gen/chatflow/v1/events';
import { EmbeddedEventLog, type EmbeddedEventLogOptions } from './embedded';
import { connectedEvent, describeEventLog, messageEvent } from './eventlog.contract';
import type { LoggedEvent } from './port';

const quiet = { warn: () => {}, info: () => {} };

describeEventLog('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chatflow-log-'));
  const opened: EmbeddedEventLog[] = [];
  const open = async () => {
    const log = await EmbeddedEventLog.open({ dir, logger: quiet });
    opened.push(log);
    return log;
  };
  return {
    log: await open(),
    reopen: open,
    cleanup: async () => {
      for (const log of opened) await log.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('EmbeddedEventLog', () => {
  let dir: string;
  const logs: EmbeddedEventLog[] = [];
  const open = async (opts: Partial<EmbeddedEventLogOptions> = {}) => {
    const log = await EmbeddedEventLog.open({ dir, fsync: false, logger: quiet, ...opts });
    logs.push(log);
    return log;
  };
  const file = () => join(dir, 'events.log');
  const recordSize = (e: Event) => 8 + Event.encode(e).finish().length;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-log-'));
  });
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Everything in the log, via a fresh group from the beginning. */
  const readAll = async (log: EmbeddedEventLog) => {
    const seen: LoggedEvent[] = [];
    const c = await log.consume({
      group: `read-${Math.random()}`,
      topics: ['sessions', 'conversations'],
      fromBeginning: true,
      concurrencyPerPartition: 1,
      handle: async (e) => void seen.push(e),
    });
    await c.caughtUp();
    await c.stop();
    return seen;
  };

  /** Writes n events (a mix of both topics) and closes the log. */
  const seed = async (n: number) => {
    const log = await open();
    const events = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? connectedEvent(`c${i}`) : messageEvent(`c${i}`, `text ${i}`)));
    for (const e of events) await log.append(e);
    await log.close();
    return events;
  };

  describe('recovers a torn or corrupt tail', () => {
    const cases: [string, (events: Event[], size: number) => Promise<{ kept: number; dropped: number }>][] = [
      ['a record cut in its payload', async (ev, size) => {
        await truncate(file(), size - 3);
        return { kept: ev.length - 1, dropped: recordSize(ev[ev.length - 1]) - 3 };
      }],
      ['a record cut in its header', async (ev, size) => {
        await truncate(file(), size - recordSize(ev[ev.length - 1]) + 5);
        return { kept: ev.length - 1, dropped: 5 };
      }],
      ['garbage appended', async (ev) => {
        await appendFile(file(), Buffer.concat([Buffer.from([200, 0, 0, 0]), randomBytes(9)]));
        return { kept: ev.length, dropped: 13 };
      }],
      ['a zero-filled tail', async (ev) => {
        await appendFile(file(), Buffer.alloc(4096));
        return { kept: ev.length, dropped: 4096 };
      }],
      ['a flipped checksum byte in the last record', async (ev, size) => {
        const bytes = await readFile(file());
        bytes[size - recordSize(ev[ev.length - 1]) + 4] ^= 0xff;
        await writeFile(file(), bytes);
        return { kept: ev.length - 1, dropped: recordSize(ev[ev.length - 1]) };
      }],
    ];

    it.each(cases)('given %s, when reopened, then every earlier record is intact and the bad bytes are kept aside', async (_, damage) => {
      const events = await seed(10);
      const { kept, dropped } = await damage(events, (await stat(file())).size);
      const warnings: object[] = [];
      const log = await open({ logger: { warn: (o) => void warnings.push(o), info: () => {} } });

      expect(log.stats().records).toBe(kept);
      expect((await readAll(log)).map((e) => e.event)).toEqual(events.slice(0, kept));
      expect(warnings).toEqual([expect.objectContaining({ droppedBytes: dropped })]);
      const copies = (await readdir(dir)).filter((f) => f.startsWith('events.log.corrupt-'));
      expect(copies).toHaveLength(1);
      expect((await stat(join(dir, copies[0]))).size).toBe(dropped);

      // The log goes on from the last good record, and the repair is durable.
      const next = await log.append(messageEvent('after', 'repair'));
      expect(next.offset).toBe(kept);
      await log.close();
      const again = await open({ logger: { warn: (o) => void warnings.push(o), info: () => {} } });
      expect(again.stats().records).toBe(kept + 1);
      expect(warnings).toHaveLength(1);
    });

    it('given damage far from the end, when opened, then it refuses instead of truncating good data', async () => {
      const events = await seed(50);
      const bytes = await readFile(file());
      bytes[8 + 4] ^= 0xff; // checksum of the first record
      await writeFile(file(), bytes);
      await expect(open({ maxTornBytes: 100 })).rejects.toThrow(/refusing to truncate/);
      expect((await stat(file())).size).toBe(bytes.length);
      expect(events).toHaveLength(50);
    });

    it('given a file that is not an event log, when opened, then it refuses', async () => {
      await writeFile(file(), 'hello, world: not a log');
      await expect(open()).rejects.toThrow(/not a ChatFlow event log/);
    });
  });

  it('gives back identical events after reopening a large log (read from the file, not memory)', async () => {
    const log = await open();
    const events = Array.from({ length: 5000 }, (_, i) => (i % 5 === 0 ? connectedEvent(`c${i % 50}`) : messageEvent(`c${i % 50}`, `t${i}`)));
    const appended = await Promise.all(events.map((e) => log.append(e)));
    expect(appended.map((e) => e.offset)).toEqual(events.map((_, i) => i));
    await log.close();

    const reopened = await open({ cacheSize: 64 });
    const all = await readAll(reopened);
    expect(all.map((e) => e.event)).toEqual(events);
    expect(all.map((e) => [e.offset, e.seq, e.partition, e.topic])).toEqual(appended.map((e) => [e.offset, e.seq, 0, e.topic]));
  });

  it('serves a consumer lagging beyond the cache while appends continue', async () => {
    const log = await open({ cacheSize: 16 });
    await Promise.all(Array.from({ length: 1000 }, (_, i) => log.append(messageEvent('c', `${i}`))));
    const texts: string[] = [];
    const c = await log.consume({
      group: 'lagging',
      topics: ['conversations'],
      fromBeginning: true,
      concurrencyPerPartition: 3,
      handle: async (e) => {
        const p = e.event.payload;
        if (p?.$case === 'messageReceived' && p.messageReceived.content?.$case === 'text') texts.push(p.messageReceived.content.text);
      },
    });
    for (let i = 1000; i < 1200; i++) await log.append(messageEvent('c', `${i}`));
    await c.caughtUp();
    expect(texts).toEqual(Array.from({ length: 1200 }, (_, i) => `${i}`));
  });

  it('group-commits: 2000 concurrent appends cost far fewer fsyncs, and resolve in offset order', async () => {
    const log = await open({ fsync: true });
    const resolved: number[] = [];
    // 50 writers, each appending 40 events one after the other.
    await Promise.all(
      Array.from({ length: 50 }, async (_, w) => {
        for (let i = 0; i < 40; i++) resolved.push((await log.append(messageEvent(`w${w}`, `${i}`))).offset);
      }),
    );
    expect(resolved).toHaveLength(2000);
    expect(resolved).toEqual([...resolved].sort((a, b) => a - b));
    expect(log.stats()).toEqual(expect.objectContaining({ records: 2000 }));
    expect(log.stats().fsyncs).toBeLessThan(200);
    expect(log.stats().fsyncs).toBeGreaterThan(0);
  });

  it('rejects appends after close with a clear error', async () => {
    const log = await open();
    await log.close();
    await expect(log.append(messageEvent('c', 'late'))).rejects.toThrow(/closed/);
  });

  it('persists committed offsets to offsets/<group>.json on stop', async () => {
    const log = await open();
    for (let i = 0; i < 4; i++) await log.append(messageEvent('c', `${i}`));
    await log.append(connectedEvent('c'));
    const c = await log.consume({ group: 'proj', topics: ['conversations'], concurrencyPerPartition: 2, handle: async () => {} });
    await c.caughtUp();
    await c.stop();
    const saved = JSON.parse(await readFile(join(dir, 'offsets', 'proj.json'), 'utf8'));
    expect(saved.offsets).toEqual({ conversations: 5 });
  });

  it('reports lag and in-flight handlers', async () => {
    const log = await open();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const c = await log.consume({ group: 'g', topics: ['conversations'], concurrencyPerPartition: 2, handle: () => held });
    await log.append(connectedEvent('c')); // another topic: never counted
    for (let i = 0; i < 5; i++) await log.append(messageEvent('c', `${i}`));
    await new Promise((r) => setTimeout(r, 20));
    expect([c.inFlight(), c.lag()]).toEqual([2, 3]);
    release();
    await c.caughtUp();
    expect([c.inFlight(), c.lag()]).toEqual([0, 0]);
    await c.stop();
  });

  it("delivers after the appender's continuation has run", async () => {
    const log = await open();
    const order: string[] = [];
    await log.consume({ group: 'g', topics: ['conversations'], concurrencyPerPartition: 1, handle: async () => void order.push('handled') });
    await log.append(messageEvent('c', 'x'));
    order.push('appended');
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['appended', 'handled']);
  });

  it('given a commit past a truncated tail, when the group resumes, then new events are not skipped', async () => {
    const events = await seed(6);
    let log = await open();
    const c = await log.consume({ group: 'g', topics: ['sessions', 'conversations'], concurrencyPerPartition: 1, handle: async () => {} });
    await c.caughtUp();
    await log.close();
    await truncate(file(), (await stat(file())).size - recordSize(events[5]) - 2); // drops the last two records
    log = await open();
    const seen: number[] = [];
    await log.consume({ group: 'g', topics: ['sessions', 'conversations'], concurrencyPerPartition: 1, handle: async (e) => void seen.push(e.offset) });
    await log.append(messageEvent('new', 'after'));
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([4]);
  });

  it('refuses a second consumer of the same group and topic', async () => {
    const log = await open();
    const opts = { group: 'g', topics: ['conversations'] as const, concurrencyPerPartition: 1, handle: async () => {} };
    await log.consume(opts);
    await expect(log.consume(opts)).rejects.toThrow(/already consumes/);
    await log.consume({ ...opts, topics: ['sessions'] });
  });
});
