import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants, promises as fs, type Dir } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { diskFault, StorageUnavailableError } from '../domain/errors';
import { makeDir } from '../make-dir';
import type { MediaStore, StoredMedia } from './port';
import { RecentSet } from '../domain/recent-set';
import { RecentMap } from '../domain/recent-map';

/**
 * Media on local disk, behind signed URLs. The object `<key>` is one file,
 * `<dir>/<key>`: its bytes, then a trailer with its metadata (mime type,
 * size, sha256), so the file still opens as what it is (players and viewers
 * stop at the end of their format). A new key is written in place, its
 * folder synced meanwhile; an existing one is replaced whole through a temp
 * file in `<dir>/.tmp/` (the temp files of every put in one folder: a sweep
 * for those a killed process left reads that folder, not the store); see
 * writeDurably. `put` resolves once the object is durable, and a key is
 * only read once the event naming it is in the log. One file, not a second
 * one for the metadata: with 8 puts at once each took a third less time (one
 * sync and one rename fewer). `get` checks the bytes against the digest, so disk
 * corruption is caught. Media stored before (bytes at `<key>`, metadata at
 * `<key>.meta.json`) are still read; their sidecar is the authority while it
 * matches, so a stored upload's own bytes can never pass for a trailer.
 */
export interface LocalMediaStoreOptions {
  dir: string;
  /** Public base of the HTTP server that serves `/media/*`, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  secret: Buffer | string;
  now?: () => number;
}

/** An object ready to be served (LocalMediaStore.open): its bytes checked, not yet read. */
export interface ServableMedia {
  mimeType: string;
  size: number;
  /** Its bytes (`start`..`end`, both included; default all), read from disk as they are taken; the file is closed when the stream ends or is destroyed. */
  read(start?: number, end?: number): Readable;
  /** Closes the file without reading it (a HEAD). */
  close(): Promise<void>;
}

interface Meta {
  mimeType: string;
  size: number;
  sha256: string;
}

/** Where media stored by earlier versions keep their metadata. */
const META_SUFFIX = '.meta.json';
/** A file ends with its metadata's JSON, its length in 8 digits, then this. */
const TRAILER_MAGIC = ' chatflow-media/1\n';
const TRAILER_DIGITS = 8;
const MAX_KEY_LENGTH = 512;
/** Where every put writes before renaming into place (no key can name it: keys never start a segment with `.`). */
const TEMP_DIR = '.tmp';
/** A put's temp file in TEMP_DIR (see tempFileIn). */
const TEMP_FILE = /^[0-9a-f]{24}\.tmp$/;
/** A put's temp file as versions before 2026-11-25 wrote it, beside its object: `.<name>.<12 hex>.tmp`. */
const TEMP_FILE_BESIDE = /^\..+\.[0-9a-f]{12}\.tmp$/;
/** In TEMP_DIR once the whole store was walked for temp files beside objects: that walk is made once. */
const WALKED_MARKER = 'beside-swept';
/** Folders remembered as existing (per client and conversation), most recent kept. */
const KNOWN_FOLDERS = 4096;
/** Objects remembered as checked (a few hundred bytes each), most recent kept. */
const CHECKED_OBJECTS = 4096;
/** Where the platform has it, temp files are opened O_DSYNC: a write returns once its data is on disk. */
const DSYNC = constants.O_DSYNC ?? 0;
/** Hint to clients whose upload met a full disk. */
const DISK_RETRY_AFTER_MS = 1000;

export class LocalMediaStore implements MediaStore {
  private readonly dir: string;
  private readonly baseUrl: string;
  private readonly secret: Buffer | string;
  private readonly now: () => number;
  private sweepTimer?: NodeJS.Timeout;
  /** Folders a put made or found lately: the next put there skips its mkdir (one trip to the thread pool). */
  private readonly folders = new RecentSet<string>(KNOWN_FOLDERS);
  /**
   * Objects served lately whose bytes matched their digest, with the file as it was then: a player that seeks asks
   * for a range at a time, and each download read the whole object once to check it before sending any of it.
   */
  private readonly checked = new RecentMap<string, { stamp: string; meta: Meta }>(CHECKED_OBJECTS);
  private readonly tempDir: string;
  private sweeping?: Promise<unknown>;

  constructor(opts: LocalMediaStoreOptions) {
    this.dir = path.resolve(opts.dir);
    this.tempDir = path.join(this.dir, TEMP_DIR);
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.secret = opts.secret;
    this.now = opts.now ?? Date.now;
  }

  async put(key: string, bytes: Buffer, mimeType: string, digest?: string): Promise<void> {
    const file = this.fileFor(key);
    // An 8 MiB upload takes ~5 ms of the event loop to hash: the gateway's digest is taken, not made again.
    const meta = Buffer.from(JSON.stringify({ mimeType, size: bytes.length, sha256: digest ?? sha256(bytes) } satisfies Meta));
    const footer = Buffer.from(String(meta.length).padStart(TRAILER_DIGITS, '0') + TRAILER_MAGIC, 'latin1');
    try {
      const folders = [path.dirname(file), this.tempDir];
      const known = folders.every((f) => this.folders.has(f));
      const make = () => Promise.all(folders.map((f) => makeDir(f)));
      const write = () => writeDurably(file, this.dir, [bytes, meta, footer]);
      if (!known) await make();
      try {
        await write();
      } catch (err) {
        // A folder known to exist was removed behind the store's back: made again, once.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !known) throw err;
        for (const f of folders) this.folders.delete(f);
        await make();
        await write();
      }
      for (const f of folders) this.folders.add(f);
    } catch (err) {
      const what = diskFault(err);
      if (what) throw new StorageUnavailableError(`the server cannot store media right now (${what}); retry in ${DISK_RETRY_AFTER_MS} ms`, DISK_RETRY_AFTER_MS);
      throw err;
    }
  }

  async get(key: string): Promise<StoredMedia | null> {
    const file = this.fileFor(key);
    const [stored, sidecar] = await Promise.all([readIfExists(file), readIfExists(file + META_SUFFIX)]);
    if (!stored) return null;
    const meta = await speakingMeta(key, stored.length, sidecar, { bytes: stored, offset: 0 }, (size) => sha256(stored.subarray(0, size)));
    return meta && { bytes: stored.subarray(0, meta.size), mimeType: meta.mimeType };
  }

  /**
   * The object at `key` to serve as it is read (the `/media/` route): its type and size once its bytes were checked
   * against their digest, read through a chunk at a time, and then `read()`, its bytes as a stream that reads the
   * disk at the client's pace (or `close()` when they are not wanted). A download held by a client that reads
   * slowly, or never, costs a file handle and a chunk, not the object (`get` holds it whole: up to the media limit
   * per request). The same metadata as `get` speaks: a sidecar of an earlier version while it matches, else the
   * trailer. null: nothing stored there; throws when the bytes do not match their metadata.
   */
  async open(key: string): Promise<ServableMedia | null> {
    const file = this.fileFor(key);
    // An object checked lately needs no sidecar (its metadata is kept with the check): it is read only otherwise.
    const known = this.checked.get(key);
    const sidecarOf = () => readIfExists(file + META_SUFFIX);
    const [handle, sidecar] = await Promise.all([openIfExists(file), known ? undefined : sidecarOf()]);
    if (!handle) return null;
    try {
      const st = await handle.stat({ bigint: true });
      const fileSize = Number(st.size);
      // Checked already, and the file not changed since (a put replaces it by a rename: another inode): not read twice.
      const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      const meta =
        known?.stamp === stamp ? known.meta : await speakingMeta(key, fileSize, sidecar === undefined ? await sidecarOf() : sidecar, await readTail(handle, fileSize), (size) => digestOf(handle, size));
      if (!meta) {
        await handle.close();
        return null;
      }
      if (known?.stamp !== stamp) this.checked.set(key, { stamp, meta });
      const { size, mimeType } = meta;
      const read = (start = 0, end = size - 1) => {
        if (size > 0) return handle.createReadStream({ start, end });
        void handle.close();
        return Readable.from([]);
      };
      return { mimeType, size, read, close: () => handle.close() };
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  async url(key: string, ttlMs: number): Promise<string> {
    assertValidKey(key);
    const exp = this.now() + Math.max(0, Math.floor(ttlMs));
    const sig = signMediaKey(key, exp, this.secret);
    return `${this.baseUrl}/media/${encodeMediaKey(key)}?exp=${exp}&sig=${sig}`;
  }

  /**
   * Removes the temp files of puts that never finished: a process killed
   * between opening its temp file and renaming it leaves the file behind, and
   * nothing else ever would (a put that fails removes its own). Only files
   * last written at least `minAgeMs` ago (by the file system's clock) go, so
   * a put still running here or in another process sharing the folder keeps
   * its file. Reads the temp folder alone; the first sweep of a store also
   * walks it whole, once, for the temp files earlier versions left beside
   * their objects (objects are never touched: no key segment starts with `.`).
   */
  async sweepLeftovers(minAgeMs: number): Promise<{ removed: number; bytes: number }> {
    const before = Date.now() - minAgeMs;
    const swept = { removed: 0, bytes: 0 };
    /** Removes the leftovers in `dir` (and below, when deep) old enough to go: how many were too young, null when `dir` does not exist. */
    const sweep = async (dir: string, leftover: RegExp, deep: boolean): Promise<number | null> => {
      let entries: Dir;
      try {
        entries = await fs.opendir(dir); // read as it goes: a folder may hold millions of objects
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // nothing stored yet, or removed meanwhile
        throw err;
      }
      let young = 0;
      for await (const entry of entries) {
        const at = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          if (deep && at !== this.tempDir) young += (await sweep(at, leftover, deep)) ?? 0;
        } else if (entry.isFile() && leftover.test(entry.name)) {
          const stat = await fs.stat(at).catch(() => undefined);
          if (!stat) continue;
          if (stat.mtimeMs > before) {
            young++;
            continue;
          }
          await fs.rm(at, { force: true });
          swept.removed++;
          swept.bytes += stat.size;
        }
      }
      return young;
    };
    await sweep(this.tempDir, TEMP_FILE, false);
    const marker = path.join(this.tempDir, WALKED_MARKER);
    // Walked again next time while it finds one too young to go (an earlier version's put that may still be running).
    if (!(await fs.stat(marker).then(() => true, () => false)) && (await sweep(this.dir, TEMP_FILE_BESIDE, true)) === 0) {
      await makeDir(this.tempDir);
      await fs.writeFile(marker, `temp files beside objects swept ${new Date().toISOString()}\n`);
    }
    return swept;
  }

  /**
   * Sweeps leftovers (see sweepLeftovers) now and then every `everyMs`, one
   * sweep at a time, until close(); `onSwept` hears each sweep's result, or
   * its error (a sweep that fails is tried again at the next period).
   */
  startSweeping(opts: { everyMs: number; minAgeMs: number; onSwept: (result: { removed: number; bytes: number } | Error) => void }): void {
    const sweep = () => {
      this.sweeping ??= this.sweepLeftovers(opts.minAgeMs)
        .then(opts.onSwept, (err: unknown) => opts.onSwept(err instanceof Error ? err : new Error(String(err))))
        .finally(() => (this.sweeping = undefined));
    };
    clearInterval(this.sweepTimer);
    this.sweepTimer = setInterval(sweep, opts.everyMs).unref();
    sweep();
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.sweeping;
  }

  private fileFor(key: string): string {
    assertValidKey(key);
    const file = path.resolve(this.dir, ...key.split('/'));
    if (!file.startsWith(this.dir + path.sep)) throw new Error(`media key escapes the store: ${JSON.stringify(key)}`);
    return file;
  }
}

/**
 * Keys are `/`-separated relative paths. Rejected: empty or overlong keys,
 * absolute paths, empty segments, `.`/`..` and any segment starting with `.`
 * (temp files use that), backslashes, control characters, and names ending
 * in `.meta.json` (reserved for metadata).
 */
export function isValidMediaKey(key: string): boolean {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) return false;
  if (/[\\\x00-\x1f\x7f]/.test(key) || /^[a-zA-Z]:/.test(key)) return false;
  if (key.endsWith(META_SUFFIX)) return false;
  return key.split('/').every((segment) => segment.length > 0 && !segment.startsWith('.'));
}

function assertValidKey(key: string): void {
  if (!isValidMediaKey(key)) throw new Error(`invalid media key: ${JSON.stringify(key)}`);
}

/** Each segment percent-encoded, slashes kept. */
export function encodeMediaKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** HMAC-SHA256 over key and expiry (unix ms), base64url. */
export function signMediaKey(key: string, exp: number, secret: Buffer | string): string {
  return createHmac('sha256', secret).update(`${key}\n${exp}`).digest('base64url');
}

/** True when `sig` was made with `secret` for this key and expiry, and `exp` has not passed. */
export function verifyMediaSignature(
  key: string,
  exp: string | number,
  sig: string,
  secret: Buffer | string,
  now: number = Date.now(),
): boolean {
  const expiry = typeof exp === 'number' ? exp : /^\d{1,16}$/.test(exp) ? Number(exp) : NaN;
  if (!Number.isSafeInteger(expiry) || expiry < now) return false;
  const expected = Buffer.from(signMediaKey(key, expiry, secret), 'base64url');
  const given = Buffer.from(typeof sig === 'string' ? sig : '', 'base64url');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The chunks stored at `file` (in the store at `store`), durably: its bytes
 * and its folder's entry for it are on disk when this resolves.
 *
 * A new key is written where it belongs: created (O_EXCL, so only by this
 * put), then its bytes written O_DSYNC while its folder is synced, both at
 * once (the entry exists from the create on). Writing a temp file, renaming
 * it and only then syncing the folder took two syncs in a row: a 100 KiB put
 * after a pause, p50 3.49–3.66 ms that way against 2.44–2.60 this way on
 * this VM (loadtest/media-put-bench.ts, issue 15). What
 * a killed process leaves half-written at a new key is no object (no trailer:
 * `get` finds nothing), and nothing names it: a key is read only once the
 * event naming it is in the log, appended after its put resolved. A key
 * that exists already (a resend, a redo, an overwrite) is replaced whole
 * instead (see `replace`), so what it held stays readable until then.
 */
async function writeDurably(file: string, store: string, chunks: readonly Buffer[]): Promise<void> {
  const [opened, folder] = await Promise.allSettled([fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | DSYNC), fs.open(path.dirname(file), 'r')]);
  try {
    if (opened.status === 'rejected') {
      if ((opened.reason as NodeJS.ErrnoException).code !== 'EEXIST') throw opened.reason;
      return await replace(file, tempFileIn(store), chunks, folder);
    }
    const handle = opened.value;
    try {
      await Promise.all([write(handle, chunks), syncFolder(folder)]);
    } catch (err) {
      await removeUnfinished(handle, file);
      throw err;
    }
    await handle.close();
  } finally {
    if (folder.status === 'fulfilled') void folder.value.close().catch(() => undefined);
  }
}

/**
 * `file` replaced whole: the chunks written to the temp file `tmp` (on the
 * same file system), renamed over it, then its folder synced.
 */
async function replace(file: string, tmp: string, chunks: readonly Buffer[], folder: PromiseSettledResult<fs.FileHandle>): Promise<void> {
  try {
    const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | DSYNC);
    try {
      await write(handle, chunks);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
    await Promise.all([handle.close(), fs.rename(tmp, file)]);
    await syncFolder(folder);
  } catch (err) {
    await fs.rm(tmp, { force: true }); // a half-written file on a full disk would keep it full
    throw err;
  }
}

/** The chunks on disk (O_DSYNC where the platform has it, else a datasync after them). */
async function write(handle: fs.FileHandle, chunks: readonly Buffer[]): Promise<void> {
  await writeAll(handle, chunks);
  if (!DSYNC) await handle.datasync();
}

/** Not every platform can sync a folder; its entries are written all the same. */
async function syncFolder(folder: PromiseSettledResult<fs.FileHandle>): Promise<void> {
  if (folder.status === 'fulfilled') await folder.value.sync().catch(() => undefined);
}

/**
 * A new file whose put failed: emptied (a half-written file on a full disk
 * would keep it full) and removed, unless another put of its key replaced it
 * meanwhile (then the name is that put's, and stays).
 */
async function removeUnfinished(handle: fs.FileHandle, file: string): Promise<void> {
  try {
    const [mine, named] = await Promise.all([handle.stat(), fs.lstat(file).catch(() => null)]);
    await handle.truncate(0);
    if (named && named.ino === mine.ino && named.dev === mine.dev) await fs.rm(file, { force: true });
  } catch {
    // best effort: a leftover without its trailer is no object (get finds nothing)
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Where a put into the store at `dir` writes before renaming into place (matches TEMP_FILE). */
export function tempFileIn(dir: string): string {
  return path.join(dir, TEMP_DIR, `${randomBytes(12).toString('hex')}.tmp`);
}

/** One writev for all chunks, continued where the disk wrote less than asked. */
export async function writeAll(handle: Pick<fs.FileHandle, 'writev'>, chunks: readonly Buffer[]): Promise<void> {
  const rest = chunks.filter((c) => c.length > 0);
  while (rest.length > 0) {
    let { bytesWritten } = await handle.writev(rest);
    if (bytesWritten <= 0) throw new Error('the disk accepted no bytes');
    while (rest.length > 0 && bytesWritten >= rest[0]!.length) bytesWritten -= rest.shift()!.length;
    if (rest.length > 0) rest[0] = rest[0]!.subarray(bytesWritten);
  }
}

/**
 * The metadata a file ends with, or null when it has none (or not whole). `file` is the file's end, from `offset`
 * on (all of it by default).
 */
function readTrailer(file: Buffer, offset = 0): Meta | null {
  if (!hasTrailerMagic(file)) return null;
  const end = file.length - TRAILER_MAGIC.length - TRAILER_DIGITS;
  const digits = file.toString('latin1', end, end + TRAILER_DIGITS);
  if (end < 0 || !/^\d+$/.test(digits)) return null;
  const start = end - Number(digits);
  const meta = start >= 0 ? parseMeta(file.subarray(start, end)) : null;
  return meta && meta.size === offset + start ? meta : null;
}

/**
 * The metadata that speaks for the object at `key`, a file of `fileSize` bytes (its sidecar, if any, and its end,
 * `tail`), once the bytes it describes match their digest (`digest` of the file's first `size` bytes): a sidecar
 * of an earlier version while it matches (it describes the whole file: the bytes alone), else the trailer (a later
 * put of the same key leaves the sidecar stale). Null: bytes with no metadata at all (an earlier version's first
 * write, interrupted); throws when the bytes do not match their metadata.
 */
async function speakingMeta(
  key: string,
  fileSize: number,
  sidecar: Buffer | null,
  tail: { bytes: Buffer; offset: number } | null,
  digest: (size: number) => Promise<string> | string,
): Promise<Meta | null> {
  const described = sidecar && parseMeta(sidecar);
  for (const meta of [described?.size === fileSize ? described : null, tail && readTrailer(tail.bytes, tail.offset)]) {
    if (meta && (await digest(meta.size)) === meta.sha256) return meta;
  }
  if (sidecar || (tail && hasTrailerMagic(tail.bytes))) throw new Error(`media ${key}: stored bytes do not match their metadata`);
  return null;
}

/** Metadata of a few hundred bytes: a trailer longer than this is no trailer of ours. */
const TAIL_BYTES = 4096;

/** The last TAIL_BYTES of a file (or all of it), and where they start. */
async function readTail(handle: fs.FileHandle, fileSize: number): Promise<{ bytes: Buffer; offset: number } | null> {
  const offset = Math.max(0, fileSize - TAIL_BYTES);
  const bytes = Buffer.alloc(fileSize - offset);
  const { bytesRead } = await handle.read(bytes, 0, bytes.length, offset);
  return bytesRead === bytes.length ? { bytes, offset } : null;
}

/** SHA-256 (hex) of a file's first `size` bytes, read a chunk at a time. */
async function digestOf(handle: fs.FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const chunk = Buffer.allocUnsafe(Math.min(size, 64 * 1024));
  for (let at = 0; at < size; ) {
    const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, size - at), at);
    if (bytesRead === 0) break; // shorter than said: the digest will not match
    hash.update(chunk.subarray(0, bytesRead));
    at += bytesRead;
  }
  return hash.digest('hex');
}

async function openIfExists(file: string): Promise<fs.FileHandle | null> {
  try {
    return await fs.open(file, 'r');
  } catch (err) {
    if (isAbsent(err)) return null;
    throw err;
  }
}

/** No such file, a file where a folder would be, or a name longer than the disk allows: nothing stored there. */
function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENAMETOOLONG';
}

function hasTrailerMagic(file: Buffer): boolean {
  return file.length >= TRAILER_MAGIC.length && file.toString('latin1', file.length - TRAILER_MAGIC.length) === TRAILER_MAGIC;
}

function parseMeta(json: Buffer): Meta | null {
  try {
    const meta = JSON.parse(json.toString('utf8')) as Partial<Meta> | null;
    if (typeof meta?.mimeType === 'string' && Number.isSafeInteger(meta.size) && typeof meta.sha256 === 'string') return meta as Meta;
  } catch {
    // not JSON: no metadata
  }
  return null;
}

async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if (isAbsent(err)) return null;
    throw err;
  }
}
