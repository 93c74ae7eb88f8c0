import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { CreateBucketCommand, HeadBucketCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import aws4 from 'aws4';
import type { Logger } from 'pino';
import type { MediaStore, StoredMedia } from './port';

export interface S3MediaStoreOptions {
  /** e.g. `http://127.0.0.1:9000`; the URLs handed to clients are built on it. */
  endpoint: string;
  region: string;
  bucket: string;
  /** Both or neither; neither means the AWS SDK's default credential chain. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** `http://host/bucket/key` rather than `http://bucket.host/key` (MinIO and most self-hosted servers). */
  forcePathStyle: boolean;
  logger: Logger;
  /** A request whose connection stays silent this long fails as ETIMEDOUT (transient: its caller tries again). */
  idleTimeoutMs?: number;
}

/** Presigned URLs are valid at most 7 days (SigV4). */
const MAX_URL_TTL_S = 7 * 24 * 3600;
/** Longer than any pause of a healthy store under load, short enough that a frozen one does not hold a socket and its bytes for good. */
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** As many parallel requests per store as the AWS SDK's own default. */
const MAX_SOCKETS = 50;

/**
 * An S3 error answer, shaped as the AWS SDK shapes its errors (`name` is S3's
 * error code, `$metadata.httpStatusCode`, `$fault`), so isTransient reads both alike.
 */
export class S3RequestError extends Error {
  readonly $metadata: { httpStatusCode: number };
  readonly $fault: 'client' | 'server';
  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
    this.$fault = status >= 500 ? 'server' : 'client';
  }
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * Media in an S3 bucket; clients download through presigned GET URLs.
 *
 * The hot path (put, get, url: each media message's upload, its reading by a
 * worker, the reply's voice or image, and the URL of each) is one SigV4-signed
 * HTTP request or one signed URL, made with `aws4` on a keep-alive agent. The
 * AWS SDK's middleware added 1–1.5 ms to each operation and more than half of
 * their CPU (loadtest/results/s3-raw-2026-11-26). The SDK still resolves the
 * credentials (its default chain, refreshed when they expire) and creates the
 * bucket at start-up.
 */
export class S3MediaStore implements MediaStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly region: string;
  private readonly logger: Logger;
  private readonly endpoint: URL;
  /** Where objects live: the host to connect to, `host[:port]` as signed, and the path before the key (`/bucket/` path-style, `/` virtual-hosted). */
  private readonly hostname: string;
  private readonly host: string;
  private readonly prefix: string;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly idleTimeoutMs: number;

  constructor(opts: S3MediaStoreOptions) {
    if (Boolean(opts.accessKeyId) !== Boolean(opts.secretAccessKey)) {
      throw new Error('S3: set both the access key id and the secret access key, or neither (to use the AWS credential chain)');
    }
    this.bucket = opts.bucket;
    this.region = opts.region;
    this.logger = opts.logger;
    this.endpoint = new URL(opts.endpoint);
    if (this.endpoint.protocol !== 'http:' && this.endpoint.protocol !== 'https:') throw new Error(`S3: the endpoint must be an http or https URL, not ${opts.endpoint}`);
    const base = this.endpoint.pathname.replace(/\/+$/, '');
    this.hostname = opts.forcePathStyle ? this.endpoint.hostname : `${opts.bucket}.${this.endpoint.hostname}`;
    this.host = opts.forcePathStyle ? this.endpoint.host : `${opts.bucket}.${this.endpoint.host}`;
    this.prefix = opts.forcePathStyle ? `${base}/${encodeSegment(opts.bucket)}/` : `${base}/`;
    this.transport = this.endpoint.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.client = new S3Client({
      endpoint: opts.endpoint,
      region: opts.region,
      forcePathStyle: opts.forcePathStyle,
      // Checksums only where S3 requires them: many self-hosted servers reject the SDK's default trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      ...(opts.accessKeyId && opts.secretAccessKey ? { credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey } } : {}),
    });
  }

  /** A store on the bucket, created if missing. Fails (for the caller to retry) while S3 is unreachable. */
  static async open(opts: S3MediaStoreOptions): Promise<S3MediaStore> {
    const store = new S3MediaStore(opts);
    try {
      await store.ensureBucket();
    } catch (err) {
      await store.close();
      // Not logged here: the caller's retry logs it, with this message.
      throw new Error(`S3 at ${opts.endpoint}, bucket ${opts.bucket}: ${describe(err)}`, { cause: err });
    }
    opts.logger.info({ engine: 's3', endpoint: opts.endpoint, bucket: opts.bucket }, 'media on S3');
    return store;
  }

  async put(key: string, bytes: Buffer, mimeType: string, sha256?: string): Promise<void> {
    // The payload's hash is signed, so S3 refuses bytes damaged on the way (an upload's is known already).
    const headers = {
      'Content-Type': mimeType,
      'Content-Length': String(bytes.length),
      'X-Amz-Content-Sha256': sha256 ?? createHash('sha256').update(bytes).digest('hex'),
    };
    const res = await this.request('PUT', key, headers, bytes);
    if (res.status !== 200) throw errorOf(res, `PUT ${key}`);
  }

  async get(key: string): Promise<StoredMedia | null> {
    const res = await this.request('GET', key, {});
    if (res.status === 404) return null;
    if (res.status !== 200) throw errorOf(res, `GET ${key}`);
    return { bytes: res.body, mimeType: res.headers['content-type'] ?? 'application/octet-stream' };
  }

  async url(key: string, ttlMs: number): Promise<string> {
    // X-Amz-Date is in whole seconds (the fraction dropped), and S3 counts X-Amz-Expires from it: one second more,
    // or a URL signed at hh:mm:ss.9 for 1 s dies 0.1 s later.
    const expiresIn = Math.min(MAX_URL_TTL_S, Math.max(1, Math.ceil(ttlMs / 1000)) + 1);
    const signed = aws4.sign(
      { host: this.host, path: `${this.prefix}${encodeKey(key)}?X-Amz-Expires=${expiresIn}`, method: 'GET', service: 's3', region: this.region, signQuery: true },
      await this.credentials(),
    );
    return `${this.endpoint.protocol}//${this.host}${signed.path}`;
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.agent.destroy();
  }

  /** The SDK's credentials (memoized by it, and refreshed before they expire), as aws4 takes them. */
  private credentials(): Promise<aws4.Credentials> {
    return this.client.config.credentials();
  }

  private async request(method: 'GET' | 'PUT', key: string, headers: Record<string, string>, body?: Buffer): Promise<Response> {
    const signed = aws4.sign({ host: this.host, path: `${this.prefix}${encodeKey(key)}`, method, service: 's3', region: this.region, headers }, await this.credentials());
    return new Promise<Response>((resolve, reject) => {
      const req = this.transport.request(
        { protocol: this.endpoint.protocol, hostname: this.hostname, port: this.endpoint.port || undefined, path: signed.path, method, headers: signed.headers as http.OutgoingHttpHeaders, agent: this.agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }));
          res.on('error', reject);
          res.on('close', () => {
            if (!res.complete) reject(Object.assign(new Error(`S3 closed the connection in the middle of its answer to ${method} ${key}`), { code: 'ECONNRESET' }));
          });
        },
      );
      req.setTimeout(this.idleTimeoutMs, () => {
        req.destroy(Object.assign(new Error(`S3 sent nothing for ${this.idleTimeoutMs} ms during ${method} ${key}`), { code: 'ETIMEDOUT' }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  private async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (!(err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)) throw err;
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
      this.logger.info({ engine: 's3', bucket: this.bucket }, 'S3 bucket created');
    } catch (err) {
      // Another process created it between our HEAD and our CREATE.
      if (err instanceof S3ServiceException && err.name === 'BucketAlreadyOwnedByYou') return;
      throw err;
    }
  }
}

/** A key's segments percent-encoded as S3 signs them (RFC 3986: all but `A–Z a–z 0–9 - _ . ~`), its slashes kept. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeSegment).join('/');
}

function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** S3's error document (`<Error><Code>…</Code><Message>…</Message></Error>`), or the bare status when it sent none. */
function errorOf(res: Response, what: string): S3RequestError {
  const text = res.body.toString('utf8', 0, Math.min(res.body.length, 4096));
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? `HTTP${res.status}`;
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? http.STATUS_CODES[res.status] ?? 'no reason given';
  return new S3RequestError(code, res.status, `S3 refused ${what}: ${code} (HTTP ${res.status}): ${message}`);
}

function describe(err: unknown): string {
  if (err instanceof S3ServiceException) return `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? '?'}): ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
