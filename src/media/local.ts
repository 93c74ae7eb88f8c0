import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { diskFault, StorageUnavailableError } from '../domain/errors';
import type { MediaStore, StoredMedia } from './port';

/**
 * Media on local disk, behind signed URLs. The object `<key>` lives at
 * `<dir>/<key>`; its metadata (mime type, size, sha256) at `<dir>/<key>.meta.json`.
 * Both are written to a temp file, fsynced and renamed, then their folder is
 * synced; `put` resolves after that, and a key is only read once the event
 * naming it is in the log. `get` checks the bytes against the metadata's
 * digest, so a concurrent overwrite is never seen half-way (it retries) and
 * disk corruption is caught.
 */
export interface LocalMediaStoreOptions {
  dir: string;
  /** Public base of the HTTP server that serves `/media/*`, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  secret: Buffer | string;
  now?: () => number;
}

interface Meta {
  mimeType: string;
  size: number;
  sha256: string;
}

const META_SUFFIX = '.meta.json';
const MAX_KEY_LENGTH = 512;
/** Hint to clients whose upload met a full disk. */
const DISK_RETRY_AFTER_MS = 1000;

export class LocalMediaStore implements MediaStore {
  private readonly dir: string;
  private readonly baseUrl: string;
  private readonly secret: Buffer | string;
  private readonly now: () => number;

  constructor(opts: LocalMediaStoreOptions) {
    this.dir = path.resolve(opts.dir);
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.secret = opts.secret;
    this.now = opts.now ?? Date.now;
  }

  async put(key: string, bytes: Buffer, mimeType: string): Promise<void> {
    const file = this.fileFor(key);
    const meta: Meta = { mimeType, size: bytes.length, sha256: sha256(bytes) };
    try {
      await makeDir(path.dirname(file));
      // Both files synced at once, then their directory: two fsyncs in a row instead
      // of three. No order is needed between them: a key is only read once the
      // event naming it is in the log, and that is appended after put resolves.
      await Promise.all([writeAtomic(file, bytes), writeAtomic(file + META_SUFFIX, Buffer.from(JSON.stringify(meta)))]);
      await syncDir(path.dirname(file));
    } catch (err) {
      const what = diskFault(err);
      if (what) throw new StorageUnavailableError(`the server cannot store media right now (${what}); retry in ${DISK_RETRY_AFTER_MS} ms`, DISK_RETRY_AFTER_MS);
      throw err;
    }
  }

  async get(key: string): Promise<StoredMedia | null> {
    const file = this.fileFor(key);
    for (let attempt = 0; ; attempt++) {
      const meta = await readIfExists(file + META_SUFFIX);
      if (!meta) return null;
      const bytes = await readIfExists(file);
      const { mimeType, size, sha256: digest } = JSON.parse(meta.toString('utf8')) as Meta;
      if (bytes && bytes.length === size && sha256(bytes) === digest) return { bytes, mimeType };
      // Mid-overwrite by another writer: try again shortly; persistent mismatch is corruption.
      if (attempt >= 5) throw new Error(`media ${key}: stored bytes do not match their metadata`);
      await new Promise((r) => setTimeout(r, 10 * (attempt + 1)));
    }
  }

  async url(key: string, ttlMs: number): Promise<string> {
    assertValidKey(key);
    const exp = this.now() + Math.max(0, Math.floor(ttlMs));
    const sig = signMediaKey(key, exp, this.secret);
    return `${this.baseUrl}/media/${encodeMediaKey(key)}?exp=${exp}&sig=${sig}`;
  }

  async close(): Promise<void> {}

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

/** mkdir -p that reports the real cause: node's recursive mkdir says ENOENT whatever stopped it (ENOSPC included). */
async function makeDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (err) {
    const parent = path.dirname(dir);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === dir) throw err;
    await makeDir(parent);
    await fs.mkdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

async function writeAtomic(file: string, bytes: Buffer): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(tmp, 'w');
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }); // a half-written file on a full disk would keep it full
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await fs.open(dir, 'r');
    try { await handle.sync(); } finally { await handle.close(); }
  } catch {
    // Not every platform can fsync a directory; the renames are still atomic.
  }
}

async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No such file, a file where a folder would be, or a name longer than the disk allows: nothing stored there.
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENAMETOOLONG') return null;
    throw err;
  }
}
