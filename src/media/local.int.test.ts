import * as http from 'node:http';
import pino from 'pino';
import type { AddressInfo } from 'node:net';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { spawn } from 'node:child_process';
import { LocalMediaStore, signMediaKey, tempFileIn, verifyMediaSignature, writeAll } from './local';
import { downloadPlaces, handleMediaRequest } from './local-http';
import { RequestPlaces } from '../resilience/request-places';
import { describeMediaStore } from './media.contract';
import { enospc, fileHandlePrototype } from '../../test/disk-writes';
import { neverRead as rawNeverRead } from '../../test/never-read';

const SECRET = 'test-secret-0123456789';

/** A store in a fresh temp dir, served by a tiny HTTP server on an ephemeral port. */
async function startServer(now: () => number = Date.now, stallMs?: number, places?: RequestPlaces) {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'chatflow-media-'));
  const dir = path.join(root, 'media');
  let store!: LocalMediaStore;
  const server = http.createServer((req, res) => {
    handleMediaRequest(req, res, { store, secret: SECRET, now, logger: pino({ level: 'silent' }), stallMs, places }).then((handled) => {
      if (!handled) res.writeHead(404).end('not here\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;
  store = new LocalMediaStore({ dir, baseUrl, secret: SECRET, now });
  return {
    store, root, dir, baseUrl, port,
    async fetchUrl(url: string, headers?: Record<string, string>) {
      const res = await fetch(url, { headers });
      return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type'), headers: res.headers };
    },
    async cleanup() {
      await new Promise((resolve) => server.close(resolve));
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}

/** The temp files in the temp folder of the store at `dir`. */
async function tempsIn(dir: string): Promise<string[]> {
  return (await fs.readdir(path.join(dir, '.tmp')).catch(() => [] as string[])).filter((n) => n.endsWith('.tmp'));
}

/** A GET with the path sent exactly as written (fetch would normalise `..`). */
function rawGet(port: number, rawPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, method: 'GET' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describeMediaStore('LocalMediaStore', () => startServer());

describe('LocalMediaStore specifics', () => {
  let t: Awaited<ReturnType<typeof startServer>>;
  let clock = 1_700_000_000_000;
  beforeAll(async () => {
    t = await startServer(() => clock);
  });
  afterAll(() => t.cleanup());

  it('makes its folders with the default mode (the umask\'s), so a server not running as root can use them', async () => {
    await t.store.put('modes/voice.wav', Buffer.from('abc'), 'audio/wav');
    const umask = process.umask();
    for (const folder of [path.join(t.dir, 'modes'), path.join(t.dir, '.tmp')]) {
      expect(((await fs.stat(folder)).mode & 0o777).toString(8)).toBe((0o777 & ~umask).toString(8));
    }
  });

  it('serves with Content-Length and a private Cache-Control bounded by the expiry', async () => {
    await t.store.put('c/voice.wav', Buffer.from('abc'), 'audio/wav');
    const url = await t.store.url('c/voice.wav', 90_000);
    expect(url).toMatch(new RegExp(`^${t.baseUrl}/media/c/voice\\.wav\\?exp=${clock + 90_000}&sig=[A-Za-z0-9_-]+$`));
    const res = await t.fetchUrl(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe('3');
    expect(res.headers.get('cache-control')).toBe('private, max-age=90');
  });

  it('answers a range as RFC 9110 has it where S3 does not: 416 names the size, an inverted range gets the whole object, If-Range too', async () => {
    await t.store.put('r/voice.wav', Buffer.from('0123456789'), 'audio/wav');
    const url = await t.store.url('r/voice.wav', 60_000);
    const past = await t.fetchUrl(url, { range: 'bytes=10-' });
    expect({ status: past.status, contentRange: past.headers.get('content-range') }).toEqual({ status: 416, contentRange: 'bytes */10' });
    expect((await t.fetchUrl(url, { range: 'bytes=5-1' })).bytes.toString()).toBe('0123456789');
    expect((await t.fetchUrl(url, { range: 'bytes=0-1', 'if-range': '"v1"' })).status).toBe(200);
    const head = await fetch(url, { method: 'HEAD', headers: { range: 'bytes=2-3' } });
    expect({ status: head.status, length: head.headers.get('content-length'), contentRange: head.headers.get('content-range') }).toEqual({ status: 206, length: '2', contentRange: 'bytes 2-3/10' });
  });

  it('answers HEAD without a body and refuses other methods', async () => {
    await t.store.put('h.bin', Buffer.from('12345'), 'application/octet-stream');
    const url = await t.store.url('h.bin', 60_000);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('5');
    const post = await fetch(url, { method: 'POST' });
    expect(post.status).toBe(405);
  });

  it('refuses an expired link with 403', async () => {
    await t.store.put('exp.bin', Buffer.from('x'), 'application/octet-stream');
    const url = await t.store.url('exp.bin', 5_000);
    expect((await t.fetchUrl(url)).status).toBe(200);
    clock += 5_001;
    expect((await t.fetchUrl(url)).status).toBe(403);
  });

  it('refuses tampered signatures, expiries and keys with 403', async () => {
    await t.store.put('a.bin', Buffer.from('a'), 'application/octet-stream');
    await t.store.put('b.bin', Buffer.from('b'), 'application/octet-stream');
    const url = new URL(await t.store.url('a.bin', 60_000));
    const sig = url.searchParams.get('sig')!;

    const badSig = new URL(url);
    badSig.searchParams.set('sig', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1));
    expect((await t.fetchUrl(badSig.href)).status).toBe(403);

    const longer = new URL(url);
    longer.searchParams.set('exp', String(Number(url.searchParams.get('exp')) + 1_000_000));
    expect((await t.fetchUrl(longer.href)).status).toBe(403);

    const otherKey = new URL(url);
    otherKey.pathname = '/media/b.bin';
    expect((await t.fetchUrl(otherKey.href)).status).toBe(403);

    const noSig = new URL(url);
    noSig.search = '';
    expect((await t.fetchUrl(noSig.href)).status).toBe(403);

    const wrongSecret = `${t.baseUrl}/media/a.bin?exp=${clock + 60_000}&sig=${signMediaKey('a.bin', clock + 60_000, 'other')}`;
    expect((await t.fetchUrl(wrongSecret)).status).toBe(403);
  });

  it('returns 404 for a correctly signed missing key', async () => {
    expect((await t.fetchUrl(await t.store.url('never/there.png', 60_000))).status).toBe(404);
  });

  it('rejects path traversal, absolute and reserved keys in the store', async () => {
    for (const bad of ['../escape', 'a/../../escape', '/etc/passwd', 'a//b', './a', 'a/.hidden', 'a\\b', 'x.meta.json', '', 'C:/x']) {
      await expect(t.store.put(bad, Buffer.from('x'), 'text/plain')).rejects.toThrow(/invalid media key/);
      await expect(t.store.get(bad)).rejects.toThrow(/invalid media key/);
      await expect(t.store.url(bad, 1000)).rejects.toThrow(/invalid media key/);
    }
    expect(await fs.readdir(t.root)).toEqual(['media']);
  });

  it('never serves files outside the store over HTTP', async () => {
    await fs.writeFile(path.join(t.root, 'secret.txt'), 'top secret');
    await fs.writeFile(path.join(t.root, 'secret.txt.meta.json'), JSON.stringify({ mimeType: 'text/plain', size: 10 }));
    const exp = clock + 60_000;
    for (const key of ['../secret.txt', '..%2fsecret.txt', '%2e%2e/secret.txt', '%2e%2e%2fsecret.txt', 'a/..%2f..%2fsecret.txt']) {
      // Even a link signed for the traversal key is refused.
      const status = await rawGet(t.port, `/media/${key}?exp=${exp}&sig=${signMediaKey(decodeURIComponent(key), exp, SECRET)}`);
      expect([400, 404]).toContain(status);
    }
  });

  it('answers a signed key whose file name the disk cannot hold with 404, not 500', async () => {
    // Valid as a key (under 512 characters) but one segment is longer than a file name may be (ENAMETOOLONG).
    await t.store.put('uploads/there.png', Buffer.from('x'), 'image/png');
    expect((await t.fetchUrl(await t.store.url(`uploads/${'n'.repeat(300)}.png`, 60_000))).status).toBe(404);
  });

  it('logs a store failure and answers 500', async () => {
    await t.store.put('broken/one.png', Buffer.from('abc'), 'image/png');
    await flipFirstByte(path.join(t.dir, 'broken', 'one.png')); // bytes no longer match their metadata
    const logged: unknown[] = [];
    const logger = { error: (obj: unknown) => void logged.push(obj) };
    const url = new URL(await t.store.url('broken/one.png', 60_000));
    let status = 0;
    const res = { writeHead: (s: number) => void (status = s), end: () => undefined };
    await handleMediaRequest({ url: url.pathname + url.search, method: 'GET' } as never, res as never, { store: t.store, secret: SECRET, now: () => clock, logger });
    expect(status).toBe(500);
    expect(logged).toEqual([expect.objectContaining({ key: 'broken/one.png', err: expect.any(Error) })]);
  });

  it('treats bytes without metadata (an interrupted first write) as missing', async () => {
    await fs.mkdir(path.join(t.dir, 'partial'), { recursive: true });
    await fs.writeFile(path.join(t.dir, 'partial', 'x.wav'), 'half');
    expect(await t.store.get('partial/x.wav')).toBeNull();
  });

  it('leaves no temp files behind and keeps files readable on disk', async () => {
    await t.store.put('disk/look.png', Buffer.from('png bytes'), 'image/png');
    const files = (await fs.readdir(path.join(t.dir, 'disk'))).sort();
    expect(files).toEqual(['look.png']); // one file: the bytes, then their metadata
    expect((await fs.readFile(path.join(t.dir, 'disk', 'look.png'), 'utf8')).startsWith('png bytes')).toBe(true);
  });

  describe('a put that fails or is cut short', () => {
    /** FileHandle's prototype, typed for the media store's writes (FileHandle.writev). */
    const handlePrototype = async () => (await fileHandlePrototype()) as unknown as fs.FileHandle;
    const temps = () => tempsIn(t.dir);

    it('a new key whose write meets a full disk leaves nothing behind, and is stored whole once space returns', async () => {
      const writev = jest.spyOn(await handlePrototype(), 'writev').mockRejectedValueOnce(enospc());
      try {
        await expect(t.store.put('full/c1/new.wav', Buffer.from('RIFF...'), 'audio/wav')).rejects.toThrow(/cannot store media right now \(no space left on device\)/);
      } finally {
        writev.mockRestore();
      }
      expect(await fs.readdir(path.join(t.dir, 'full', 'c1'))).toEqual([]);
      expect(await temps()).toEqual([]);
      await t.store.put('full/c1/new.wav', Buffer.from('RIFF...'), 'audio/wav');
      expect(await t.store.get('full/c1/new.wav')).toEqual({ bytes: Buffer.from('RIFF...'), mimeType: 'audio/wav' });
    });

    it('a failed put of a new key does not remove what another put of that key stored meanwhile', async () => {
      const proto = await handlePrototype();
      const real = proto.writev;
      let first = true;
      const writev = jest.spyOn(proto, 'writev').mockImplementation(async function (this: fs.FileHandle, ...args: Parameters<fs.FileHandle['writev']>) {
        if (!first) return real.apply(this, args);
        first = false;
        // While this put writes, a second put of the same key (a resend on a new stream) stores it whole.
        await t.store.put('race/c1/m.wav', Buffer.from('second, whole'), 'audio/wav');
        throw enospc();
      });
      try {
        await expect(t.store.put('race/c1/m.wav', Buffer.from('first'), 'audio/wav')).rejects.toThrow(/no space left on device/);
      } finally {
        writev.mockRestore();
      }
      expect((await t.store.get('race/c1/m.wav'))?.bytes.toString()).toBe('second, whole');
      expect(await temps()).toEqual([]);
    });

    it('a key left half-written (a put killed while writing it) reads as missing, and the next put of it stores it whole', async () => {
      const whole = Buffer.alloc(10_000, 5);
      await t.store.put('cut/c1/first.wav', whole, 'audio/wav');
      const file = path.join(t.dir, 'cut', 'c1', 'again.wav');
      await fs.writeFile(file, (await fs.readFile(path.join(t.dir, 'cut', 'c1', 'first.wav'))).subarray(0, 6_000));
      expect(await t.store.get('cut/c1/again.wav')).toBeNull();
      await t.store.put('cut/c1/again.wav', whole, 'audio/wav');
      expect(await t.store.get('cut/c1/again.wav')).toEqual({ bytes: whole, mimeType: 'audio/wav' });
      expect(await temps()).toEqual([]);
    });
  });

  it('stores into a folder removed behind its back since its last put there (remembered as existing)', async () => {
    await t.store.put('gone/c1/a.png', Buffer.from('one'), 'image/png');
    await fs.rm(path.join(t.dir, 'gone'), { recursive: true });
    await t.store.put('gone/c1/b.png', Buffer.from('two'), 'image/png');
    expect((await t.store.get('gone/c1/b.png'))?.bytes.toString()).toBe('two');
    expect(await fs.readdir(path.join(t.dir, 'gone', 'c1'))).toEqual(['b.png']);
  });

  it('checks an object once while its file is unchanged: a player\'s range requests do not each read it whole; a change is checked again', async () => {
    const bytes = randomBytes(2 * 1024 * 1024);
    await t.store.put('seek/video.mp4', bytes, 'video/mp4');
    const url = await t.store.url('seek/video.mp4', 60_000);
    const proto = (await fileHandlePrototype()) as unknown as { read: (...a: unknown[]) => Promise<{ bytesRead: number }> };
    const realRead = proto.read;
    let read = 0;
    proto.read = async function (this: unknown, ...a: unknown[]) {
      const r = await realRead.apply(this, a);
      read += r.bytesRead;
      return r;
    };
    try {
      const first = await t.fetchUrl(url, { range: 'bytes=0-1' });
      expect(first.status).toBe(206);
      expect(read).toBeGreaterThanOrEqual(bytes.length); // the first time: read whole, to check it
      read = 0;
      for (let i = 0; i < 20; i++) expect((await t.fetchUrl(url, { range: `bytes=${i * 1000}-${i * 1000 + 9}` })).bytes.equals(bytes.subarray(i * 1000, i * 1000 + 10))).toBe(true);
      expect(read).toBeLessThan(64 * 1024); // then only what is sent (and a chunk per read stream)
    } finally {
      proto.read = realRead;
    }
    // Changed in place behind the store's back: checked again, and refused.
    await flipFirstByte(path.join(t.dir, 'seek', 'video.mp4'));
    expect((await t.fetchUrl(url, { range: 'bytes=0-1' })).status).toBe(500);
  });

  it('detects bytes that no longer match their metadata', async () => {
    await t.store.put('corrupt.bin', Buffer.from('good'), 'application/octet-stream');
    await flipFirstByte(path.join(t.dir, 'corrupt.bin'));
    await expect(t.store.get('corrupt.bin')).rejects.toThrow(/do not match/);
  });

  it('keeps the digest its caller gives (the gateway hashed the upload already) instead of hashing again', async () => {
    const bytes = Buffer.from('RIFF voice');
    await t.store.put('given/right.wav', bytes, 'audio/wav', createHash('sha256').update(bytes).digest('hex'));
    expect(await t.store.get('given/right.wav')).toEqual({ bytes, mimeType: 'audio/wav' });
    // A digest that is not the bytes' is kept as given, so a caller's mistake shows as a mismatch, never as silence.
    await t.store.put('given/wrong.wav', bytes, 'audio/wav', createHash('sha256').update('other').digest('hex'));
    await expect(t.store.get('given/wrong.wav')).rejects.toThrow(/do not match/);
  });

  it('detects a file cut short inside its metadata', async () => {
    await t.store.put('cut/short.bin', Buffer.from('whole'), 'application/octet-stream');
    const file = path.join(t.dir, 'cut', 'short.bin');
    const stored = await fs.readFile(file);
    await fs.writeFile(file, Buffer.concat([stored.subarray(0, 8), stored.subarray(-20)])); // the end kept, the middle lost
    await expect(t.store.get('cut/short.bin')).rejects.toThrow(/do not match/);
  });

  describe('temp files of puts that never finished', () => {
    const HOUR = 3_600_000;
    async function age(file: string, ageMs: number): Promise<void> {
      const at = new Date(Date.now() - ageMs);
      await fs.utimes(file, at, at);
    }
    async function leaveTemp(bytes: number, ageMs: number): Promise<string> {
      const tmp = tempFileIn(t.dir);
      await fs.mkdir(path.dirname(tmp), { recursive: true });
      await fs.writeFile(tmp, Buffer.alloc(bytes, 7));
      await age(tmp, ageMs);
      return tmp;
    }
    /** A temp file as versions before 2026-11-25 left it: beside its object, `.<name>.<12 hex>.tmp`. */
    async function leaveTempBeside(key: string, bytes: number, ageMs: number): Promise<string> {
      const file = path.join(t.dir, ...key.split('/'));
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${'0123456789ab'}.tmp`);
      await fs.mkdir(path.dirname(tmp), { recursive: true });
      await fs.writeFile(tmp, Buffer.alloc(bytes, 7));
      await age(tmp, ageMs);
      return tmp;
    }
    const exists = (file: string) => fs.stat(file).then(() => true, () => false);
    const temps = tempsIn;

    it('are swept once old enough; young ones (a put still running) and every object stay', async () => {
      await t.store.put('sweep/c1/kept.png', Buffer.from('png'), 'image/png');
      await t.store.put('sweep/c1/abcdef0123456789abcdef01.tmp', Buffer.from('an object named like a temp file'), 'text/plain');
      await age(path.join(t.dir, 'sweep', 'c1', 'abcdef0123456789abcdef01.tmp'), 2 * HOUR);
      const stale = [await leaveTemp(1000, 2 * HOUR), await leaveTemp(24, HOUR)];
      const running = await leaveTemp(500, 1000);

      expect(await t.store.sweepLeftovers(15 * 60_000)).toEqual({ removed: 2, bytes: 1024 });
      for (const file of stale) expect(await exists(file)).toBe(false);
      expect(await exists(running)).toBe(true);
      expect((await t.store.get('sweep/c1/kept.png'))?.bytes.toString()).toBe('png');
      expect((await t.store.get('sweep/c1/abcdef0123456789abcdef01.tmp'))?.mimeType).toBe('text/plain');
      expect(await t.store.sweepLeftovers(15 * 60_000)).toEqual({ removed: 0, bytes: 0 });
      await fs.rm(running);
    });

    it('a put leaves nothing in the temp folder, and writes nothing beside its object', async () => {
      await t.store.put('clean/c1/a.wav', Buffer.from('wav'), 'audio/wav');
      expect((await fs.readdir(path.join(t.dir, '.tmp'))).filter((n) => n.endsWith('.tmp'))).toEqual([]);
      expect(await fs.readdir(path.join(t.dir, 'clean', 'c1'))).toEqual(['a.wav']);
    });

    it('the temp folder removed behind the store\'s back is made again', async () => {
      await t.store.put('again/a.bin', Buffer.from('1'), 'application/octet-stream');
      await fs.rm(path.join(t.dir, '.tmp'), { recursive: true });
      await t.store.put('again/b.bin', Buffer.from('2'), 'application/octet-stream');
      expect((await t.store.get('again/b.bin'))?.bytes.toString()).toBe('2');
    });

    it("earlier versions' temp files beside their objects are swept by the first sweep's walk of the store, made once", async () => {
      await t.store.put('old/c1/kept.png', Buffer.from('png'), 'image/png');
      const stale = [await leaveTempBeside('old/c1/lost.png', 1000, 2 * HOUR), await leaveTempBeside('old/c2/deeper/lost.wav', 24, HOUR)];
      const young = await leaveTempBeside('old/c1/now.wav', 500, 1000);
      // One too young to go (an earlier version's put may still be running): the store is walked again next time.
      expect(await t.store.sweepLeftovers(15 * 60_000)).toEqual({ removed: 2, bytes: 1024 });
      for (const file of stale) expect(await exists(file)).toBe(false);
      expect(await exists(young)).toBe(true);
      await age(young, 2 * HOUR);
      expect(await t.store.sweepLeftovers(15 * 60_000)).toEqual({ removed: 1, bytes: 500 });
      // Walked whole with nothing left: not walked again (a sweep reads the temp folder alone).
      const after = await leaveTempBeside('old/c1/later.png', 10, 2 * HOUR);
      expect(await t.store.sweepLeftovers(15 * 60_000)).toEqual({ removed: 0, bytes: 0 });
      expect(await exists(after)).toBe(true);
      expect((await t.store.get('old/c1/kept.png'))?.bytes.toString()).toBe('png');
    });

    it('are swept at start and then periodically until close, each result told', async () => {
      const stale = await leaveTemp(10, 2 * HOUR);
      const store = new LocalMediaStore({ dir: t.dir, baseUrl: t.baseUrl, secret: SECRET });
      const told: unknown[] = [];
      store.startSweeping({ everyMs: 20, minAgeMs: HOUR, onSwept: (r) => told.push(r) });
      for (let i = 0; i < 100 && told.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
      await store.close();
      const after = told.length;
      expect(told[0]).toEqual({ removed: 1, bytes: 10 });
      expect(told.slice(1, 3)).toEqual([{ removed: 0, bytes: 0 }, { removed: 0, bytes: 0 }]);
      expect(await exists(stale)).toBe(false);
      await new Promise((r) => setTimeout(r, 100));
      expect(told.length).toBe(after); // closed: no more sweeps
    });

    it('a store whose folder does not exist yet sweeps nothing', async () => {
      const store = new LocalMediaStore({ dir: path.join(t.root, 'never-written'), baseUrl: t.baseUrl, secret: SECRET });
      expect(await store.sweepLeftovers(0)).toEqual({ removed: 0, bytes: 0 });
    });

    /**
     * A child putting `mib` MiB objects under `dir`/k, keys `k/<key(i)>.bin`
     * for i = 0, 1, …, SIGKILLed once `caught` says so (polled every 2 ms,
     * at most 20 s); tried again (up to 10 times) until it was.
     */
    async function killMidPut(dir: string, mib: number, key: string, caught: () => Promise<boolean>): Promise<void> {
      const script = `
        const { LocalMediaStore } = require('./src/media/local');
        const store = new LocalMediaStore({ dir: ${JSON.stringify(dir)}, baseUrl: 'http://127.0.0.1:1', secret: 's' });
        (async () => { for (let i = 0; i < 100; i++) await store.put('k/' + (${key}) + '.bin', Buffer.alloc(${mib} << 20, i % 251), 'application/octet-stream'); })();`;
      for (let attempt = 0; attempt < 10; attempt++) {
        const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], { cwd: path.resolve(__dirname, '../..'), stdio: 'ignore' });
        const exited = new Promise((r) => child.once('exit', r));
        let seen = false;
        try {
          // Bounded: a put that never shows what is looked for must not leave the child filling the disk.
          for (const until = Date.now() + 20_000; !seen && Date.now() < until; ) {
            await new Promise((r) => setTimeout(r, 2));
            seen = await caught();
          }
        } finally {
          child.kill('SIGKILL');
          await exited;
        }
        if (seen) return;
      }
      throw new Error('never caught the child in the middle of a put');
    }

    it('left by a process killed while replacing objects are what the sweep removes; every object stays whole', async () => {
      const dir = path.join(t.root, 'killed');
      const objects = path.join(dir, 'k');
      // Three keys written over and over: after the first three puts, each put replaces one through a temp file.
      await killMidPut(dir, 4, 'i % 3', async () => (await temps(dir)).length > 0 && (await fs.readdir(objects).catch(() => [])).length === 3);
      const leftovers = await temps(dir);
      expect(leftovers.length).toBeGreaterThan(0);
      const store = new LocalMediaStore({ dir, baseUrl: t.baseUrl, secret: SECRET });
      expect((await store.sweepLeftovers(0)).removed).toBe(leftovers.length);
      expect(await temps(dir)).toEqual([]);
      expect((await fs.readdir(objects)).sort()).toEqual(['0.bin', '1.bin', '2.bin']);
      for (const name of ['0', '1', '2']) expect((await store.get(`k/${name}.bin`))?.bytes.length).toBe(4 << 20);
    }, 60_000);

    it('a process killed while writing a new object leaves it missing, never partial; it is stored whole when put again', async () => {
      const dir = path.join(t.root, 'killed-new');
      const objects = path.join(dir, 'k');
      const full = 32 << 20;
      // Caught with a new object shorter than its bytes (being written), after one finished.
      const sizes = async () => Promise.all((await fs.readdir(objects).catch(() => [] as string[])).map(async (n) => (await fs.stat(path.join(objects, n)).catch(() => null))?.size ?? full));
      await killMidPut(dir, 32, 'i', async () => {
        const s = await sizes();
        return s.some((n) => n > full) && s.some((n) => n < full);
      });
      const store = new LocalMediaStore({ dir, baseUrl: t.baseUrl, secret: SECRET });
      const names = await fs.readdir(objects);
      const got = await Promise.all(names.map((n) => store.get(`k/${n}`)));
      const missing = names.filter((_, i) => got[i] === null);
      // Each one whole (its own bytes) or missing: never a part of it.
      got.forEach((g, i) => g && expect([g.bytes.length, g.bytes[0]]).toEqual([full, Number(names[i]!.split('.')[0]) % 251]));
      expect(missing.length).toBeGreaterThan(0);
      expect(missing.length).toBeLessThan(names.length);
      for (const n of missing) await store.put(`k/${n}`, Buffer.alloc(full, 9), 'application/octet-stream');
      for (const n of missing) expect((await store.get(`k/${n}`))?.bytes.equals(Buffer.alloc(full, 9))).toBe(true);
      expect(await temps(dir)).toEqual([]);
    }, 60_000);
  });

  describe('downloads whose clients read slowly or never', () => {
    const MiB = 1024 * 1024;
    /** `n` connections that each ask for `url` and never read a byte of the answer. */
    function neverRead(port: number, url: string, n: number) {
      const u = new URL(url);
      return rawNeverRead(port, `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: x\r\n\r\n`, n);
    }

    it('hold a chunk of the object each, not the object: 40 downloads of 8 MiB that are never read (each held 8 MiB before)', async () => {
      const big = randomBytes(8 * MiB);
      await t.store.put('big/video.webm', big, 'video/webm');
      const url = await t.store.url('big/video.webm', 60_000);
      const before = process.memoryUsage().arrayBuffers;
      const flood = neverRead(t.port, url, 40);
      try {
        await new Promise((r) => setTimeout(r, 1_500)); // every request answered, as far as its client lets it
        const held = process.memoryUsage().arrayBuffers - before;
        expect(held).toBeLessThan(40 * MiB); // a quarter of one object's worth per download at most; before: 320 MiB and more
        // Served whole and unchanged to a client that reads.
        expect((await t.fetchUrl(url)).bytes.equals(big)).toBe(true);
      } finally {
        flood.destroy();
      }
    });

    it('are cut off once their client takes nothing for stallMs', async () => {
      const s = await startServer(() => clock, 300);
      try {
        // Larger than what the kernel's buffers of a loopback connection take in, so that the server's writes stall.
        const size = 64 * MiB;
        await s.store.put('big/slow.webm', randomBytes(size), 'video/webm');
        const flood = neverRead(s.port, await s.store.url('big/slow.webm', 60_000), 1);
        await new Promise((r) => setTimeout(r, 1_500));
        // Read now: what was on its way, then the end of a connection cut short (a client that reads gets it all).
        const socket = flood.sockets[0]!;
        let got = 0;
        socket.on('data', (c: Buffer) => (got += c.length));
        const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
        socket.resume();
        await closed;
        expect(got).toBeGreaterThan(0);
        expect(got).toBeLessThan(size);
      } finally {
        await s.cleanup();
      }
    }, 20_000);

    it('wait for one of the places of downloads, and are refused 503 + Retry-After when none frees in time', async () => {
      const places = new RequestPlaces({ atOnce: 4, perClient: 2, waitMs: 500, maxWaiting: 10, retryAfterMs: 2_000, busy: 'too many downloads at once; try again' });
      const s = await startServer(() => clock, 60_000, places);
      try {
        await s.store.put('big/held.webm', randomBytes(64 * MiB), 'video/webm');
        await s.store.put('small/one.png', Buffer.from('png'), 'image/png');
        const url = await s.store.url('small/one.png', 60_000);
        // This address's two places held by downloads that are never read.
        const flood = neverRead(s.port, await s.store.url('big/held.webm', 60_000), 2);
        await new Promise((r) => setTimeout(r, 300));
        const refused = await s.fetchUrl(url);
        expect([refused.status, refused.headers.get('retry-after'), refused.bytes.toString()]).toEqual([503, '2', 'too many downloads at once; try again in 2000 ms\n']);
        flood.destroy();
        await new Promise((r) => setTimeout(r, 100));
        expect(places.inUse).toBe(0);
        expect((await s.fetchUrl(url)).bytes.toString()).toBe('png');
      } finally {
        await s.cleanup();
      }
    }, 20_000);

    it('come as a process takes them (downloadPlaces): 64 of one address at once', async () => {
      const places = downloadPlaces(1_000);
      const mine = Array.from({ length: 65 }, () => places.take('address 127.0.0.1'));
      expect(mine.filter((p) => p.wait === undefined)).toHaveLength(64);
      expect(places.take('address 10.0.0.2').wait).toBeUndefined();
      for (const p of mine) p.end();
    });
  });

  describe('media stored by earlier versions (bytes, and a .meta.json beside them)', () => {
    const sidecar = (bytes: Buffer, mimeType: string) => JSON.stringify({ mimeType, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    async function storeTheOldWay(key: string, bytes: Buffer, mimeType: string): Promise<string> {
      const file = path.join(t.dir, ...key.split('/'));
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, bytes);
      await fs.writeFile(file + '.meta.json', sidecar(bytes, mimeType));
      return file;
    }

    /** What a client downloading the key gets: the route reads the store its own way (LocalMediaStore.open). */
    const served = async (key: string) => {
      const res = await t.fetchUrl(await t.store.url(key, 60_000));
      return res.status === 200 ? { bytes: res.bytes, mimeType: res.contentType } : res.status;
    };

    it('are read and served as they were', async () => {
      const bytes = Buffer.from('RIFF old voice');
      await storeTheOldWay('old/voice.wav', bytes, 'audio/wav');
      expect(await t.store.get('old/voice.wav')).toEqual({ bytes, mimeType: 'audio/wav' });
      expect(await served('old/voice.wav')).toEqual({ bytes, mimeType: 'audio/wav' });
    });

    it('give way to a later put of the same key (the sidecar left stale)', async () => {
      await storeTheOldWay('old/again.png', Buffer.from('first'), 'image/png');
      await t.store.put('old/again.png', Buffer.from('second'), 'image/jpeg');
      expect(await t.store.get('old/again.png')).toEqual({ bytes: Buffer.from('second'), mimeType: 'image/jpeg' });
      expect(await served('old/again.png')).toEqual({ bytes: Buffer.from('second'), mimeType: 'image/jpeg' });
    });

    it('are served as their sidecar says even when their own bytes end like a trailer', async () => {
      // An upload crafted to carry a trailer of its own, naming another type: the sidecar is the authority.
      const inner = Buffer.from('<script>alert(1)</script>');
      const meta = Buffer.from(sidecar(inner, 'text/html'));
      const crafted = Buffer.concat([inner, meta, Buffer.from(String(meta.length).padStart(8, '0') + ' chatflow-media/1\n')]);
      await storeTheOldWay('old/crafted.png', crafted, 'image/png');
      expect(await t.store.get('old/crafted.png')).toEqual({ bytes: crafted, mimeType: 'image/png' });
      expect(await served('old/crafted.png')).toEqual({ bytes: crafted, mimeType: 'image/png' });
    });

    it('still detect their own corruption', async () => {
      const file = await storeTheOldWay('old/rot.bin', Buffer.from('bits'), 'application/octet-stream');
      await flipFirstByte(file);
      await expect(t.store.get('old/rot.bin')).rejects.toThrow(/do not match/);
      expect(await served('old/rot.bin')).toBe(500);
    });
  });
});

async function flipFirstByte(file: string): Promise<void> {
  const bytes = await fs.readFile(file);
  bytes[0] ^= 0xff;
  await fs.writeFile(file, bytes);
}

describe('writeAll', () => {
  it('writes every byte in order, however short each write the disk makes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), async (parts, limits) => {
        const written: number[] = [];
        let call = 0;
        const handle = {
          // A disk that writes at most limits[call] bytes per call.
          async writev(buffers: readonly NodeJS.ArrayBufferView[]) {
            let budget = limits[call++ % limits.length]!;
            let bytesWritten = 0;
            for (const b of buffers) {
              const u = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
              const n = Math.min(budget, u.length);
              written.push(...u.subarray(0, n));
              budget -= n;
              bytesWritten += n;
              if (n < u.length) break;
            }
            return { bytesWritten, buffers };
          },
        };
        await writeAll(handle as never, parts.map((p) => Buffer.from(p)));
        expect(written).toEqual(parts.flatMap((p) => [...p]));
      }),
    );
  });

  it('fails instead of spinning when the disk accepts nothing', async () => {
    await expect(writeAll({ writev: async (b: NodeJS.ArrayBufferView[]) => ({ bytesWritten: 0, buffers: b }) } as never, [Buffer.from('x')])).rejects.toThrow(/no bytes/);
  });
});

describe('verifyMediaSignature', () => {
  const now = 1_000_000;
  const sig = signMediaKey('k/v.png', now + 10, SECRET);
  it('accepts a valid, unexpired signature (string or number expiry)', () => {
    expect(verifyMediaSignature('k/v.png', now + 10, sig, SECRET, now)).toBe(true);
    expect(verifyMediaSignature('k/v.png', String(now + 10), sig, Buffer.from(SECRET), now)).toBe(true);
  });
  it('rejects expired, malformed and mismatched input', () => {
    expect(verifyMediaSignature('k/v.png', now + 10, sig, SECRET, now + 11)).toBe(false);
    expect(verifyMediaSignature('k/v.png', 'soon', sig, SECRET, now)).toBe(false);
    expect(verifyMediaSignature('k/v.png', '1e9', sig, SECRET, now)).toBe(false);
    expect(verifyMediaSignature('k/v.png', now + 10, '', SECRET, now)).toBe(false);
    expect(verifyMediaSignature('k/v.png', now + 10, sig.slice(0, -2), SECRET, now)).toBe(false);
    expect(verifyMediaSignature('k/other.png', now + 10, sig, SECRET, now)).toBe(false);
    expect(verifyMediaSignature('k/v.png', now + 10, sig, 'wrong', now)).toBe(false);
  });
});
