import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { removeBucket } from '../../test/s3-buckets';
import { loadConfig } from '../config/config';
import { describeMediaStore } from './media.contract';
import { isTransient } from '../resilience/transient';
import { S3MediaStore, S3RequestError, type S3MediaStoreOptions } from './s3';

const logger = pino({ level: 'silent' });

/** The store as the server opens it (S3_* read by its configuration), with `over` changed. */
function options(over: Partial<S3MediaStoreOptions> = {}): S3MediaStoreOptions {
  return { ...loadConfig().s3!, logger, ...over };
}

/** GET a presigned URL with nothing but the URL, as a client would. */
async function fetchUrl(url: string, headers?: Record<string, string>) {
  const res = await fetch(url, { headers });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type'), headers: res.headers };
}

describeWithEngines(['S3_ENDPOINT'], 'MediaStore contract: s3', () => {
  // Buckets of their own (created by open(), removed after), so runs leave nothing behind.
  const contractBucket = `chatflow-test-${randomBytes(4).toString('hex')}`;
  describeMediaStore('s3', async () => ({
    store: await S3MediaStore.open(options({ bucket: contractBucket })),
    fetchUrl,
    cleanup: () => removeBucket(options({ bucket: contractBucket })),
  }));

  describe('S3MediaStore specifics', () => {
    const bucket = `chatflow-test-${randomBytes(4).toString('hex')}`;
    afterAll(() => removeBucket(options({ bucket })));

    it('creates a missing bucket, and opens an existing one (also concurrently)', async () => {
      const stores = await Promise.all([S3MediaStore.open(options({ bucket })), S3MediaStore.open(options({ bucket }))]);
      await stores[0].put('k', Buffer.from('v'), 'text/plain');
      const again = await S3MediaStore.open(options({ bucket }));
      expect((await again.get('k'))?.bytes.toString()).toBe('v');
      for (const s of [...stores, again]) await s.close();
    });

    it('hands out URLs valid for at least their ttl, whatever the fraction of the second they are signed in, and not a second more than needed', async () => {
      // S3 dates a signature in whole seconds: a URL signed at 12:00:00.9 with X-Amz-Expires=2 dies at 12:00:02,
      // 1.1 s later. Sign late in a second, so a store that forgot the truncation fails for certain.
      const store = await S3MediaStore.open(options({ bucket }));
      await store.put('short', Buffer.from('x'), 'text/plain');
      const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));
      while (Date.now() % 1000 < 850) await sleepUntil(Date.now() - (Date.now() % 1000) + 860);
      const signedAt = Date.now();
      const url = await store.url('short', 2_000);
      await sleepUntil(signedAt + 1_300);
      expect((await fetchUrl(url)).status).toBe(200);
      await sleepUntil(signedAt + 3_200);
      expect((await fetchUrl(url)).status).toBe(403);
      await store.close();
    });

    it('says which endpoint failed when S3 is unreachable', async () => {
      await expect(S3MediaStore.open(options({ endpoint: 'http://127.0.0.1:1', bucket }))).rejects.toThrow(/S3 at http:\/\/127\.0\.0\.1:1, bucket chatflow-test-/);
    });

    it('stores and serves keys whose characters need encoding in a URL', async () => {
      const store = await S3MediaStore.open(options({ bucket }));
      const odd = ["a b/c+d", "%41 not an A", "é/ü/日本", "!'()*&$=;:@,?#[]"].map((k, i) => `odd/${i}/${k}.bin`);
      for (const k of odd) await store.put(k, Buffer.from(k), 'application/octet-stream');
      for (const k of odd) {
        expect((await store.get(k))?.bytes.toString()).toBe(k);
        const res = await fetchUrl(await store.url(k, 60_000));
        expect({ k, status: res.status, body: res.bytes.toString() }).toEqual({ k, status: 200, body: k });
      }
      await store.close();
    });

    it('says why S3 refused a request, and a refusal of the request is not transient', async () => {
      const store = new S3MediaStore(options({ bucket, secretAccessKey: 'not-the-secret' }));
      const err = await store.put('k', Buffer.from('v'), 'text/plain').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(S3RequestError);
      expect((err as S3RequestError).$metadata.httpStatusCode).toBe(403);
      expect((err as Error).message).toMatch(/^S3 refused PUT k: SignatureDoesNotMatch \(HTTP 403\): ./);
      expect(isTransient(err)).toBe(false);
      await store.close();
    });

    it('stores nothing when the bytes do not match the hash they were put with', async () => {
      const store = await S3MediaStore.open(options({ bucket }));
      const err = await store.put('damaged', Buffer.from('what arrived'), 'text/plain', createHash('sha256').update('what was sent').digest('hex')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(S3RequestError);
      expect((err as Error).message).toMatch(/^S3 refused PUT damaged: XAmzContentSHA256Mismatch \(HTTP 400\)/);
      expect(await store.get('damaged')).toBeNull();
      await store.close();
    });

    it('refuses half a set of credentials', () => {
      expect(() => new S3MediaStore(options({ secretAccessKey: undefined, accessKeyId: 'x' }))).toThrow(/both/);
    });
  });
});

/** A stand-in for S3 on loopback that answers as each test tells it, and records what it was sent. */
describe('S3MediaStore on the wire (a fake S3: signing, errors, timeouts)', () => {
  let server: http.Server;
  let answer: (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void;
  const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  let endpoint: string;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        answer(req, body, res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  beforeEach(() => {
    seen.length = 0;
    answer = (_req, _body, res) => res.end();
  });

  const store = (over: Partial<S3MediaStoreOptions> = {}) =>
    new S3MediaStore({ endpoint, region: 'eu-west-3', bucket: 'media', accessKeyId: 'AKID', secretAccessKey: 'secret', forcePathStyle: true, logger, ...over });
  const s3Error = (status: number, code: string, message: string) => (_req: http.IncomingMessage, _body: Buffer, res: http.ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><Key>k</Key></Error>`);
  };

  it('signs a PUT with the body\'s hash (the one given, or its own) and sends the bytes as they are', async () => {
    const s = store();
    const bytes = randomBytes(100_000);
    const sha = createHash('sha256').update(bytes).digest('hex');
    await s.put('up/c1/m1.wav', bytes, 'audio/wav', sha);
    await s.put('reply/m1.png', Buffer.from('png'), 'image/png');
    expect(seen.map((r) => [r.method, r.url])).toEqual([['PUT', '/media/up/c1/m1.wav'], ['PUT', '/media/reply/m1.png']]);
    expect(seen[0].body.equals(bytes)).toBe(true);
    expect(seen[0].headers).toMatchObject({ 'content-type': 'audio/wav', 'content-length': '100000', 'x-amz-content-sha256': sha, host: new URL(endpoint).host });
    expect(seen[1].headers['x-amz-content-sha256']).toBe(createHash('sha256').update('png').digest('hex'));
    for (const r of seen) expect(r.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKID\/\d{8}\/eu-west-3\/s3\/aws4_request, SignedHeaders=[a-z0-9;-]*x-amz-content-sha256[a-z0-9;-]*, Signature=[0-9a-f]{64}$/);
    await s.close();
  });

  it('takes a session token from the credential chain, for requests and for URLs', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'ASIATEMP', AWS_SECRET_ACCESS_KEY: 'temp-secret', AWS_SESSION_TOKEN: 'the-token' });
    try {
      const s = store({ accessKeyId: undefined, secretAccessKey: undefined });
      answer = (_req, _body, res) => {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end('bytes');
      };
      expect(await s.get('a/b.png')).toEqual({ bytes: Buffer.from('bytes'), mimeType: 'image/png' });
      expect(seen[0].url).toBe('/media/a/b.png');
      expect(seen[0].headers['x-amz-security-token']).toBe('the-token');
      expect(seen[0].headers.authorization).toMatch(/Credential=ASIATEMP\//);
      const url = new URL(await s.url('a/b.png', 60_000));
      expect(Object.fromEntries(url.searchParams)).toMatchObject({ 'X-Amz-Expires': '61', 'X-Amz-Security-Token': 'the-token', 'X-Amz-Algorithm': 'AWS4-HMAC-SHA256' });
      expect(url.searchParams.get('X-Amz-Credential')).toMatch(/^ASIATEMP\/\d{8}\/eu-west-3\/s3\/aws4_request$/);
      await s.close();
    } finally {
      process.env = saved;
    }
  });

  it('names the bucket in the host of its URLs when path-style is off', async () => {
    const s = store({ endpoint: 'https://s3.eu-west-3.amazonaws.com', forcePathStyle: false });
    const url = new URL(await s.url('up/c 1/m1.wav', 60_000));
    expect([url.protocol, url.host, url.pathname]).toEqual(['https:', 'media.s3.eu-west-3.amazonaws.com', '/up/c%201/m1.wav']);
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    await s.close();
  });

  it('hands out URLs that live their ttl and the second their signature\'s date drops, up to SigV4\'s 7 days', async () => {
    const s = store();
    const expires = async (ttlMs: number) => new URL(await s.url('k', ttlMs)).searchParams.get('X-Amz-Expires');
    expect([await expires(1), await expires(1_500), await expires(30 * 24 * 3600_000)]).toEqual(['2', '3', String(7 * 24 * 3600)]);
    await s.close();
  });

  it('reads a missing key as null, and S3\'s other refusals as errors that say what S3 said', async () => {
    const s = store();
    answer = s3Error(404, 'NoSuchKey', 'The specified key does not exist.');
    expect(await s.get('gone')).toBeNull();
    answer = s3Error(403, 'AccessDenied', 'Access Denied.');
    const err = await s.get('secret').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(S3RequestError);
    expect((err as Error).message).toBe('S3 refused GET secret: AccessDenied (HTTP 403): Access Denied.');
    expect(isTransient(err)).toBe(false);
    await s.close();
  });

  it('calls a busy or failing S3 transient, so its callers wait and try again', async () => {
    const s = store();
    const errors: unknown[] = [];
    for (const a of [s3Error(503, 'SlowDown', 'Please reduce your request rate.'), s3Error(500, 'InternalError', 'We encountered an internal error.'), (_q: http.IncomingMessage, _b: Buffer, res: http.ServerResponse) => res.writeHead(502).end()]) {
      answer = a;
      errors.push(await s.put('k', Buffer.from('v'), 'text/plain').catch((e: unknown) => e));
    }
    expect(errors.map((e) => [(e as Error).name, (e as S3RequestError).$metadata.httpStatusCode, isTransient(e)])).toEqual([
      ['SlowDown', 503, true],
      ['InternalError', 500, true],
      ['HTTP502', 502, true],
    ]);
    expect((errors[2] as Error).message).toBe('S3 refused PUT k: HTTP502 (HTTP 502): Bad Gateway');
    await s.close();
  });

  it('gives up on a silent S3 after its idle timeout, and on one that hangs up mid-answer, both transient', async () => {
    const s = store({ idleTimeoutMs: 300 });
    answer = () => undefined; // never answers
    const started = Date.now();
    const silent = await s.put('k', Buffer.from('v'), 'text/plain').catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(silent).toMatchObject({ code: 'ETIMEDOUT', message: 'S3 sent nothing for 300 ms during PUT k' });
    expect(isTransient(silent)).toBe(true);
    answer = (_req, _body, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('only part of it');
      setTimeout(() => res.destroy(), 20);
    };
    const cut = await s.get('k').catch((e: unknown) => e);
    expect(cut).toMatchObject({ code: 'ECONNRESET' });
    expect(isTransient(cut)).toBe(true);
    await s.close();
  });

  it('calls a refused connection transient', async () => {
    const s = store({ endpoint: 'http://127.0.0.1:1' });
    const err = await s.get('k').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isTransient(err)).toBe(true);
    await s.close();
  });
});
