/**
 * The embedded log's file format, and what happens when it is damaged.
 *
 * File `events.log` = header (magic "CFEL", u32 LE version) then records
 * [u32 LE payload length][u32 LE crc32(payload)][payload = Event protobuf].
 * Record n (0-based) is offset n, seq n + 1.
 *
 * A record is valid when its length is 1..MAX_RECORD, its payload is all in
 * the file, its checksum matches and it decodes to an event with a payload.
 *
 * A TORN TAIL is what a crash in the middle of the log's last write leaves
 * behind. Precisely: from the first record that is not valid, the rest of the
 * file is at most one write (MAX_WRITE_BYTES: the log never writes more at
 * once) and no valid record starts anywhere in it. Only a torn tail is cut
 * automatically (its bytes kept aside). Any other bad record is DAMAGE: a
 * valid record after it, or more bytes after it than one write, means
 * acknowledged events would be lost, so opening refuses and names the repair.
 */
import { promises as fsp, write } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { Event } from '../gen/chatflow/v1/events';
import { ChatFlowError } from '../domain/errors';
import { topicOf, type Topic } from './port';

export const MAGIC = Buffer.from('CFEL', 'latin1');
export const VERSION = 1;
export const FILE_HEADER = 8;
export const RECORD_HEADER = 8;
/** Events reference media, they never carry bytes. */
export const MAX_RECORD = 4 * 1024 * 1024;
/** A group-commit batch holds at most this many bytes (a single larger record goes alone). */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** The most the log writes in one go: the largest a torn tail can be. */
export const MAX_WRITE_BYTES = Math.max(MAX_BATCH_BYTES, RECORD_HEADER + MAX_RECORD);
const SCAN_CHUNK = 1024 * 1024;
const RESYNC_CHUNK = 8 * 1024 * 1024;

export type RecordCheck = { ok: true; end: number; topic: Topic } | { ok: false; problem: string };

/** Is there a valid record at `pos`? */
export async function checkRecord(win: FileWindow, pos: number, size: number): Promise<RecordCheck> {
  if (size - pos < RECORD_HEADER) return { ok: false, problem: 'short record header' };
  const h = await win.get(pos, RECORD_HEADER);
  const len = h.readUInt32LE(0);
  // Zero length is never written (every event has a payload) and is what a zero-filled tail looks like.
  if (len === 0 || len > MAX_RECORD) return { ok: false, problem: `implausible record length ${len}` };
  if (pos + RECORD_HEADER + len > size) return { ok: false, problem: 'short record payload' };
  const payload = await win.get(pos + RECORD_HEADER, len);
  if (crc32(payload) !== h.readUInt32LE(4)) return { ok: false, problem: 'checksum mismatch' };
  const topic = topicOfPayload(payload);
  return topic ? { ok: true, end: pos + RECORD_HEADER + len, topic } : { ok: false, problem: 'undecodable event' };
}

function topicOfPayload(payload: Uint8Array): Topic | undefined {
  try {
    return topicOf(Event.decode(payload));
  } catch {
    return undefined;
  }
}

/** The first position in [from, size) where a valid record starts, scanning byte by byte. */
export async function findValidRecord(fh: FileHandle, from: number, size: number): Promise<number | undefined> {
  // Each chunk is read with room for the longest record starting in it, into one buffer (a damaged stretch of
  // gigabytes is scanned in the memory of one chunk).
  const room = Buffer.allocUnsafe(Math.max(0, Math.min(size - from, RESYNC_CHUNK + RECORD_HEADER + MAX_RECORD)));
  for (let base = from; base + RECORD_HEADER <= size; base += RESYNC_CHUNK) {
    const buf = room.subarray(0, Math.min(size, base + RESYNC_CHUNK + RECORD_HEADER + MAX_RECORD) - base);
    await readFully(fh, buf, base);
    for (let i = 0; i < RESYNC_CHUNK && base + i + RECORD_HEADER <= size; i++) {
      const len = buf.readUInt32LE(i);
      if (len === 0 || len > MAX_RECORD || base + i + RECORD_HEADER + len > size) continue;
      const payload = buf.subarray(i + RECORD_HEADER, i + RECORD_HEADER + len);
      if (crc32(payload) === buf.readUInt32LE(i + 4) && topicOfPayload(payload)) return base + i;
    }
  }
  return undefined;
}

/** Valid records in [from, size), resynchronising over damaged stretches. */
export async function countValidRecords(fh: FileHandle, from: number, size: number): Promise<number> {
  const win = new FileWindow(fh, size);
  let n = 0;
  let pos = await findValidRecord(fh, from, size);
  while (pos !== undefined && pos < size) {
    const r = await checkRecord(win, pos, size);
    if (r.ok) {
      n++;
      pos = r.end;
    } else {
      pos = await findValidRecord(fh, pos + 1, size);
    }
  }
  return n;
}

/** A bad record at `at` in a file of `size` bytes: a torn last write, or damage? (See the file comment.) */
export function decideDamage(d: { at: number; size: number; validRecordAfter: boolean }): 'torn-tail' | 'damage' {
  return d.size - d.at <= MAX_WRITE_BYTES && !d.validRecordAfter ? 'torn-tail' : 'damage';
}

export interface Damage {
  file: string;
  /** Byte position of the first bad record, and its record number (= offset; seq is one more). */
  at: number;
  record: number;
  problem: string;
  bytesAfter: number;
  validRecordsAfter: number;
}

export interface Inspection {
  /** Valid records before the first bad one, and where they end. */
  records: number;
  goodEnd: number;
  /** The first bad record, if any, and what it is. */
  bad?: Damage & { kind: 'torn-tail' | 'damage' };
}

/**
 * Verifies the header and every record (calling `onRecord` for each valid
 * one, in order) and classifies the first bad record. Reads only.
 */
export async function inspectLog(fh: FileHandle, file: string, size: number, onRecord: (end: number, topic: Topic) => void = () => {}): Promise<Inspection> {
  const win = new FileWindow(fh, size);
  const header = await win.get(0, FILE_HEADER);
  if (!header.subarray(0, 4).equals(MAGIC)) throw new Error(`${file} is not a ChatFlow event log`);
  if (header.readUInt32LE(4) !== VERSION) throw new Error(`${file}: unsupported version ${header.readUInt32LE(4)}`);
  let pos = FILE_HEADER;
  let records = 0;
  while (pos < size) {
    const r = await checkRecord(win, pos, size);
    if (!r.ok) {
      const base = { file, at: pos, record: records, problem: r.problem, bytesAfter: size - pos };
      const validRecordAfter = size - pos <= MAX_WRITE_BYTES && (await findValidRecord(fh, pos + 1, size)) !== undefined;
      const kind = decideDamage({ at: pos, size, validRecordAfter });
      const validRecordsAfter = kind === 'torn-tail' ? 0 : await countValidRecords(fh, pos + 1, size);
      return { records, goodEnd: pos, bad: { ...base, validRecordsAfter, kind } };
    }
    onRecord(r.end, r.topic);
    records++;
    pos = r.end;
  }
  return { records, goodEnd: pos };
}

/** Opening refused: the log is damaged before its tail. The message is the whole explanation. */
export class EventLogDamagedError extends ChatFlowError {
  constructor(readonly damage: Damage, repairCommand: string) {
    const d = damage;
    super(
      'FAILED_PRECONDITION',
      `The event log ${d.file} is damaged: record ${d.record} (seq ${d.record + 1}) at byte ${d.at} fails its check (${d.problem}), ` +
        `and the ${d.bytesAfter} bytes from there to the end hold ${d.validRecordsAfter} valid records. ` +
        `This is not a torn last write, so nothing was cut: ChatFlow refuses to start rather than drop acknowledged events. ` +
        `To cut the log at byte ${d.at} and keep those ${d.bytesAfter} bytes in a file beside it, stop every process using this data dir and run: ` +
        `${repairCommand} (see README, "Reliability").`,
    );
    this.name = 'EventLogDamagedError';
  }
}

/**
 * Copies [at, size) of the log into `<file>.corrupt-<time>-<pid>` (synced),
 * then truncates the log at `at` (synced). Returns the copy's path. The copy
 * goes a chunk at a time (the bytes after damage early in a large log are
 * most of it). If the copy cannot be made (a full disk) what was written of
 * it is removed and the log is left as it was.
 */
export async function cutTail(fh: FileHandle, file: string, at: number, size: number): Promise<string> {
  const copy = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`;
  const out = await fsp.open(copy, 'wx');
  try {
    const chunk = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, size - at));
    for (let pos = at; pos < size; ) {
      const n = Math.min(chunk.length, size - pos);
      await readFully(fh, chunk.subarray(0, n), pos);
      await writeFully(out, chunk.subarray(0, n), pos - at);
      pos += n;
    }
    await out.sync();
  } catch (err) {
    await out.close().catch(() => undefined);
    await fsp.rm(copy, { force: true });
    throw err;
  }
  await out.close();
  await syncDir(path.dirname(file));
  await fh.truncate(at);
  await fh.sync();
  return copy;
}

/** Sequential reader over a file for the open-time scan: reads in chunks, not per record. */
export class FileWindow {
  private buf = Buffer.alloc(0);
  private at = 0;
  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
  ) {}
  /** Bytes [pos, pos + n); the caller guarantees pos + n <= size. */
  async get(pos: number, n: number): Promise<Buffer> {
    if (pos < this.at || pos + n > this.at + this.buf.length) {
      this.buf = Buffer.allocUnsafe(Math.min(Math.max(n, SCAN_CHUNK), this.size - pos));
      this.at = pos;
      await readFully(this.fh, this.buf, pos);
    }
    return this.buf.subarray(pos - this.at, pos - this.at + n);
  }
}

export async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at ${position + done}`);
    done += bytesRead;
  }
}

/**
 * Writes all of `buf` at `position`, through `fs.write` on the handle's fd,
 * not `FileHandle.write`: the promise API's request cost the event loop ~8 µs
 * more per write on this VM (an O_DSYNC write: 31.7 against 23.9 µs, issue
 * 15), and the log writes a batch a few thousand times a second at saturation.
 * A closed handle's fd is -1, which `fs.write` refuses.
 */
export async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) done += await writeAt(fh.fd, buf, done, buf.length - done, position + done);
}

function writeAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, buf, offset, length, position, (err, written) => (err ? reject(err) : resolve(written))));
}

/** Makes a created or renamed file's directory entry durable (best effort: not every OS allows it). */
export async function syncDir(dir: string): Promise<void> {
  try {
    const d = await fsp.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* ignore */
  }
}
