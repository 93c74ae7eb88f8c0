import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadBucketCommand,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
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
}

/** Presigned URLs are valid at most 7 days (SigV4). */
const MAX_URL_TTL_S = 7 * 24 * 3600;

/** Media in an S3 bucket; clients download through presigned GET URLs. */
export class S3MediaStore implements MediaStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly logger: Logger;

  constructor(opts: S3MediaStoreOptions) {
    if (Boolean(opts.accessKeyId) !== Boolean(opts.secretAccessKey)) {
      throw new Error('S3: set both the access key id and the secret access key, or neither (to use the AWS credential chain)');
    }
    this.bucket = opts.bucket;
    this.logger = opts.logger;
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
      store.client.destroy();
      // Not logged here: the caller's retry logs it, with this message.
      throw new Error(`S3 at ${opts.endpoint}, bucket ${opts.bucket}: ${describe(err)}`, { cause: err });
    }
    opts.logger.info({ engine: 's3', endpoint: opts.endpoint, bucket: opts.bucket }, 'media on S3');
    return store;
  }

  async put(key: string, bytes: Buffer, mimeType: string): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentType: mimeType, ContentLength: bytes.length }));
  }

  async get(key: string): Promise<StoredMedia | null> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!res.Body) throw new Error(`S3 returned no body for ${key}`);
      const bytes = Buffer.from(await res.Body.transformToByteArray());
      return { bytes, mimeType: res.ContentType ?? 'application/octet-stream' };
    } catch (err) {
      if (err instanceof NoSuchKey || (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)) return null;
      throw err;
    }
  }

  async url(key: string, ttlMs: number): Promise<string> {
    const expiresIn = Math.min(MAX_URL_TTL_S, Math.max(1, Math.ceil(ttlMs / 1000)));
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn });
  }

  async close(): Promise<void> {
    this.client.destroy();
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

function describe(err: unknown): string {
  if (err instanceof S3ServiceException) return `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? '?'}): ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
