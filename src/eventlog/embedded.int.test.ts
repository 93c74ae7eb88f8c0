import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, open as open_, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Event } from '../gen/chatflow/v1/events';
import { EmbeddedEventLog, type EmbeddedEventLogOptions } from './embedded';
import { EventLogDamagedError, MAX_RECORD, MAX_WRITE_BYTES } from './embedded-file';
import { connectedEvent, describeEventLog, messageEvent } from './eventlog.contract';
import type { LoggedEvent } from './port';
import { StorageUnavailableError } from '../domain/errors';
import { enospc, interceptFileWrites } from '../../test/disk-writes';

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

    it('given a bad record with a valid one after it, even at the very end, when opened, then it refuses, says what and how to repair, and touches nothing', async () => {
      const events = await seed(10);
      const bytes = await readFile(file());
      const last = recordSize(events[9]);
      const at = bytes.length - last - recordSize(events[8]);
      bytes[at + 8 + 3] ^= 0x01; // a payload byte of the second-to-last record
      await writeFile(file(), bytes);
      const err = await open({ repairCommand: 'REPAIR-IT' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EventLogDamagedError);
      expect((err as EventLogDamagedError).kind).toBe('FAILED_PRECONDITION');
      expect((err as Error).message).toContain(`${file()} is damaged: record 8 (seq 9) at byte ${at} fails its check (checksum mismatch)`);
      expect((err as Error).message).toContain(`the ${bytes.length - at} bytes from there to the end hold 1 valid records`);
      expect((err as Error).message).toContain('REPAIR-IT');
      expect(await readFile(file())).toEqual(bytes);
      expect((await readdir(dir)).filter((f) => f.startsWith('events.log.corrupt-'))).toEqual([]);
      // The lock was released: a repaired log opens.
      await truncate(file(), at);
      expect((await open()).stats().records).toBe(8);
    });

    it('given a bad length field, when opened, then it finds the valid records after it and refuses', async () => {
      const events = await seed(10);
      const bytes = await readFile(file());
      const at = 8 + recordSize(events[0]) + recordSize(events[1]);
      bytes.writeUInt32LE(3_000_000, at); // the walk by lengths is lost: only a resync finds what follows
      await writeFile(file(), bytes);
      await expect(open()).rejects.toThrow(/record 2 \(seq 3\) at byte \d+ fails its check \(short record payload\).* hold 7 valid records/);
    });

    it.each([
      ['exactly one write of zeros is a torn tail: cut', MAX_WRITE_BYTES, true],
      ['one byte more than one write cannot be a torn write: refused', MAX_WRITE_BYTES + 1, false],
    ])('given %s', async (_, zeros, opens) => {
      const events = await seed(5);
      await appendFile(file(), Buffer.alloc(zeros));
      if (opens) {
        expect((await open()).stats().records).toBe(events.length);
        expect((await stat(join(dir, (await readdir(dir)).find((f) => f.startsWith('events.log.corrupt-'))!))).size).toBe(zeros);
      } else {
        await expect(open()).rejects.toThrow(/record 5 \(seq 6\).*implausible record length 0.* hold 0 valid records/);
      }
    });

    it('given a file that is not an event log, when opened, then it refuses', async () => {
      await writeFile(file(), 'hello, world: not a log');
      await expect(open()).rejects.toThrow(/not a ChatFlow event log/);
    });
  });

  describe('when the disk fills up', () => {
    /** Every write to a file in this process (test/disk-writes.ts): while `room` is set, at most that many bytes go in, in all, then ENOSPC. */
    let room: number | undefined;
    let disk: { restore(): void } | undefined;
    beforeEach(() => {
      disk = interceptFileWrites((_fd, length) => {
        if (room === undefined) return undefined;
        if (room === 0) return { error: enospc() };
        const n = Math.min(room, length);
        room -= n;
        return { write: n };
      });
    });
    afterEach(() => {
      room = undefined;
      disk?.restore();
    });

    it('opening a new log on a full disk: refuses in words (not a bare ENOSPC), and opens once space returns', async () => {
      room = 0;
      const err = await open().then(() => undefined, (e: Error & { kind?: string }) => e);
      expect(err).toMatchObject({ kind: 'FAILED_PRECONDITION', message: `cannot begin the event log ${file()}: no space left on device; make room there and start again` });
      room = undefined;
      await open();
      expect((await stat(file())).size).toBe(8); // its header
    });

    it('opening with a torn tail on a full disk: refuses in words, changes nothing, and opens once space returns', async () => {
      // The torn bytes are set aside in a file beside the log before it is cut: on a full disk that copy fails.
      const events = await seed(4);
      await appendFile(file(), Buffer.concat([Buffer.from([200, 0, 0, 0]), randomBytes(9)]));
      const before = await readFile(file());
      room = 0;
      const err = await open().then(() => undefined, (e: Error & { kind?: string }) => e);
      expect(err).toMatchObject({ kind: 'UNAVAILABLE', message: expect.stringContaining(`The event log ${file()} ends with a write cut short by a crash (13 bytes at byte ${before.length - 13}), set aside in a file beside it before the log is cut, and the disk is full`) });
      expect(await readFile(file())).toEqual(before);
      expect((await readdir(dir)).filter((f) => f.includes('.corrupt-'))).toEqual([]);
      room = undefined;
      const log = await open();
      expect((await readAll(log)).map((e) => e.event)).toEqual(events);
    });

    it('refuses appends with UNAVAILABLE + retry-after-ms, leaves no half record, and resumes by itself when space returns', async () => {
      const problems: (string | undefined)[] = [];
      const log = await open({ onWritable: (p) => void problems.push(p) });
      for (let i = 0; i < 3; i++) await log.append(messageEvent('c', `before ${i}`));
      const goodBytes = log.stats().bytes;

      room = 20; // the next batch is half written, then the disk is full
      const refused = await Promise.allSettled([1, 2, 3].map((i) => log.append(messageEvent('c', `refused ${i}`))));
      for (const r of refused) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason;
        expect(err).toBeInstanceOf(StorageUnavailableError);
        expect(err.kind).toBe('UNAVAILABLE');
        expect(err.trailers['retry-after-ms']).toMatch(/^\d+$/);
        expect(err.message).toMatch(/no space left on device.*retry in \d+ ms/);
      }
      await expect(log.append(messageEvent('c', 'while full'))).rejects.toBeInstanceOf(StorageUnavailableError);
      expect(problems).toEqual([expect.stringMatching(/^event log cannot append: no space left on device \(ENOSPC\)/)]);
      // The probe cut the half-written batch away although the disk is still full.
      for (let i = 0; i < 100 && (await stat(file())).size !== goodBytes; i++) await new Promise((r) => setTimeout(r, 10));
      expect((await stat(file())).size).toBe(goodBytes);

      room = undefined; // space returns
      for (let i = 0; i < 200 && problems.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(problems).toEqual([expect.any(String), undefined]);
      const next = await log.append(messageEvent('c', 'after'));
      expect(next.offset).toBe(3); // the refused appends left no gap and no trace
      await log.close();
      const warnings: object[] = [];
      const again = await open({ logger: { warn: (o) => void warnings.push(o), info: () => {} } });
      const texts = (await readAll(again)).map((e) => (e.event.payload?.$case === 'messageReceived' && e.event.payload.messageReceived.content?.$case === 'text' ? e.event.payload.messageReceived.content.text : ''));
      expect(texts).toEqual(['before 0', 'before 1', 'before 2', 'after']);
      expect(warnings).toEqual([]);
    });
  });

  it('given an fsync that fails (EIO), then that batch is refused and cut from the file, and the log resumes by itself', async () => {
    const fh = await open_(join(dir, 'probe-handle'), 'w');
    const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
    await fh.close();
    const real = { datasync: proto.datasync };
    let failures = 1;
    const eio = () => Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
    // The sync fails where it happens: in fdatasync, or (O_DSYNC file) in the write itself, after the bytes went in.
    const spy = jest.spyOn(proto, 'datasync').mockImplementation(function (this: unknown) {
      if (failures-- > 0) return Promise.reject(eio());
      return real.datasync.call(this);
    });
    const writes = interceptFileWrites((fd) => (fd === logFd && failures-- > 0 ? { error: eio(), after: true } : undefined));
    let logFd = -1;
    try {
      const problems: (string | undefined)[] = [];
      const log = await open({ fsync: true, onWritable: (p) => void problems.push(p) });
      logFd = (log as unknown as { fh: { fd: number } }).fh.fd;
      failures = 0;
      await log.append(messageEvent('c', 'kept'));
      const goodBytes = log.stats().bytes;
      failures = 1;
      await expect(log.append(messageEvent('c', 'written but not synced'))).rejects.toMatchObject({ kind: 'UNAVAILABLE', message: expect.stringMatching(/I\/O error/) });
      for (let i = 0; i < 200 && problems.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(problems).toEqual([expect.stringMatching(/^event log cannot append: I\/O error \(EIO\)/), undefined]);
      expect((await stat(file())).size).toBe(goodBytes);
      expect((await log.append(messageEvent('c', 'after'))).offset).toBe(1);
      const texts = (await readAll(log)).map((e) => (e.event.payload?.$case === 'messageReceived' && e.event.payload.messageReceived.content?.$case === 'text' ? e.event.payload.messageReceived.content.text : ''));
      expect(texts).toEqual(['kept', 'after']);
    } finally {
      spy.mockRestore();
      writes.restore();
    }
  });

  it('given a disk that refuses the committed offsets (ENOSPC), then no temp file is left behind and the offsets are written once it takes them', async () => {
    const fh = await open_(join(dir, 'probe-handle'), 'w');
    const proto = Object.getPrototypeOf(fh) as { writeFile: (...a: unknown[]) => Promise<void> };
    await fh.close();
    let refused = 0;
    // The log's own appends still go in (the free end of its last block); the offsets file, a new one each time, does not.
    const spy = jest.spyOn(proto, 'writeFile').mockImplementation(() => {
      refused++;
      return Promise.reject(enospc());
    });
    try {
      const log = await open();
      const c = await log.consume({ group: 'workers', topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 1, handle: async () => {} });
      for (let i = 0; i < 5; i++) {
        await log.append(messageEvent('c', `${i}`));
        await c.caughtUp();
        for (const end = Date.now() + 2_000; refused <= i && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      }
      expect(refused).toBeGreaterThanOrEqual(5);
      // The last refused write is counted when its writeFile fails, before it closes and removes its temp
      // file: give that cleanup its moment (2 s at most; a temp file left for good still fails).
      const temps = async () => (await readdir(join(dir, 'offsets'))).filter((f) => f.includes('.tmp'));
      for (const end = Date.now() + 2_000; (await temps()).length > 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      expect(await temps()).toEqual([]);
      spy.mockRestore();
      await c.stop();
      expect(JSON.parse(await readFile(join(dir, 'offsets', 'workers.json'), 'utf8')).offsets.conversations).toBe(5);
      expect(await temps()).toEqual([]);
    } finally {
      spy.mockRestore();
    }
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

  it("hands live consumers the appender's own event object (its bytes not decoded again), and the same event from the file after a reopen", async () => {
    const log = await open();
    const events = [connectedEvent('c1'), messageEvent('c1', 'hello'), messageEvent('c1', 'again')];
    const seen: LoggedEvent[] = [];
    const c = await log.consume({ group: 'live', topics: ['sessions', 'conversations'], concurrencyPerPartition: 4, handle: async (e) => void seen.push(e) });
    for (const e of events) await log.append(e);
    await c.caughtUp();
    expect(seen.map((e) => e.event)).toHaveLength(3);
    seen.forEach((e, i) => expect(e.event).toBe(events[i]));
    // An append of bytes (the worker thread's) has no object: it is decoded.
    const bytes = Event.encode(messageEvent('c1', 'as bytes')).finish();
    await log.appendEncoded('conversations', bytes);
    await c.caughtUp();
    expect(seen[3].event).toEqual(Event.decode(bytes));
    await c.stop();
    await log.close();
    const all = await readAll(await open());
    expect(all.map((e) => e.event)).toEqual([...events, Event.decode(bytes)]);
  });

  it('given a handler that throws synchronously (no promise) twice, then its event is retried, never skipped, and committed once it succeeds', async () => {
    const log = await open();
    const appended = await Promise.all(['a', 'b', 'c'].map((t) => log.append(messageEvent('c', t))));
    let failures = 0;
    const seen: number[] = [];
    const c = await log.consume({
      group: 'sync-throw',
      topics: ['conversations'],
      fromBeginning: true,
      concurrencyPerPartition: 2,
      handle: ((e: LoggedEvent) => {
        if (e.offset === appended[1].offset && failures < 2) {
          failures++;
          throw new Error('careless');
        }
        seen.push(e.offset);
        return Promise.resolve();
      }) as (e: LoggedEvent) => Promise<void>,
    });
    await c.caughtUp();
    expect(failures).toBe(2);
    expect(seen.sort((a, b) => a - b)).toEqual(appended.map((e) => e.offset));
    await c.stop();
    const again: number[] = [];
    const resumed = await log.consume({ group: 'sync-throw', topics: ['conversations'], concurrencyPerPartition: 2, handle: async (e) => void again.push(e.offset) });
    await resumed.caughtUp();
    expect(again).toEqual([]); // all three committed
    await resumed.stop();
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

  it('given one group commit of 2000 appends, when it is durable, then its appenders are told a slice at a time, with the event loop free in between', async () => {
    const log = await open({ fsync: true });
    // One batch: all appended in one tick.
    const appends = Array.from({ length: 2000 }, (_, i) => log.append(messageEvent('c', `${i}`)));
    let resolved = 0;
    const seenByImmediate: number[] = [];
    let second: Promise<unknown> | undefined;
    await Promise.all(
      appends.map((a, i) =>
        a.then(() => {
          resolved++;
          if (i === 0) {
            // Another appender, and the loop's next turn, while the batch is being told.
            second = log.append(messageEvent('c', 'next'));
            setImmediate(() => seenByImmediate.push(resolved));
          }
        }),
      ),
    );
    await second;
    // The loop ran something else before the 2000th appender heard back (it used to be told all at once).
    expect(seenByImmediate).toHaveLength(1);
    expect(seenByImmediate[0]).toBeLessThan(2000);
    expect(log.stats().records).toBe(2001);
  });

  it('stores an event appended as bytes (appendEncoded) exactly as given, and refuses an unknown topic or an oversized record', async () => {
    const log = await open();
    const event = messageEvent('c', 'encoded');
    const payload = Event.encode(event).finish();
    const where = await log.appendEncoded('conversations', payload);
    expect(where).toEqual({ topic: 'conversations', partition: 0, offset: 0, seq: 1 });
    await expect(log.appendEncoded('nope' as never, payload)).rejects.toThrow(/unknown topic/);
    await expect(log.appendEncoded('conversations', new Uint8Array(MAX_RECORD + 1))).rejects.toThrow(/exceeds/);
    const read: LoggedEvent[] = [];
    const c = await log.consume({ group: 'g', topics: ['conversations'], concurrencyPerPartition: 1, bytes: true, handle: async (e) => void read.push(e) });
    await c.caughtUp();
    await c.stop();
    expect(read.map((e) => [e.offset, e.event, Buffer.from(e.bytes!).equals(Buffer.from(payload))])).toEqual([[0, event, true]]);
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

  it('given the temp file of an offsets write a killed process left, when the log opens, then it is removed and the offsets are as last saved', async () => {
    let log = await open();
    await log.append(messageEvent('c', 'one'));
    const c = await log.consume({ group: 'proj', topics: ['conversations'], concurrencyPerPartition: 1, handle: async () => {} });
    await c.caughtUp();
    await c.stop();
    await log.close();
    // What a process killed between opening and renaming its temp file leaves (the name saveGroup gives it).
    await writeFile(join(dir, 'offsets', 'proj.json.tmp-4242-7'), '{"version":1,"group":"proj","off');
    log = await open();
    expect(await readdir(join(dir, 'offsets'))).toEqual(['proj.json']);
    expect(JSON.parse(await readFile(join(dir, 'offsets', 'proj.json'), 'utf8')).offsets).toEqual({ conversations: 1 });
    await log.close();
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
