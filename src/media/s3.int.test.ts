import { randomBytes } from 'node:crypto';
import { DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { describeMediaStore } from './media.contract';
import { S3MediaStore, type S3MediaStoreOptions } from './s3';

const logger = pino({ level: 'silent' });

function options(over: Partial<S3MediaStoreOptions> = {}): S3MediaStoreOptions {
  return {
    endpoint: process.env.S3_ENDPOINT!,
    region: process.env.S3_REGION ?? 'us-east-1',
    bucket: process.env.S3_BUCKET ?? 'chatflow-media',
    accessKeyId: process.env.S3_ACCESS_KEY_ID,
    secretAccessKey: process.env.S3_SECRET_ACCESS_KEY,
    forcePathStyle: (process.env.S3_FORCE_PATH_STYLE ?? 'true') !== 'false',
    logger,
    ...over,
  };
}

async function removeBucket(o: S3MediaStoreOptions): Promise<void> {
  const client = new S3Client({ endpoint: o.endpoint, region: o.region, forcePathStyle: o.forcePathStyle, credentials: { accessKeyId: o.accessKeyId!, secretAccessKey: o.secretAccessKey! } });
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: o.bucket }));
    const keys = (listed.Contents ?? []).flatMap((c) => (c.Key ? [{ Key: c.Key }] : []));
    if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: o.bucket, Delete: { Objects: keys } }));
    await client.send(new DeleteBucketCommand({ Bucket: o.bucket }));
  } finally {
    client.destroy();
  }
}

/** GET a presigned URL with nothing but the URL, as a client would. */
async function fetchUrl(url: string) {
  const res = await fetch(url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type') };
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

    it('hands out URLs that stop working after their ttl', async () => {
      const store = await S3MediaStore.open(options({ bucket }));
      await store.put('short', Buffer.from('x'), 'text/plain');
      const url = await store.url('short', 1_000);
      expect((await fetchUrl(url)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 2_100));
      expect((await fetchUrl(url)).status).toBe(403);
      await store.close();
    });

    it('says which endpoint failed when S3 is unreachable', async () => {
      await expect(S3MediaStore.open(options({ endpoint: 'http://127.0.0.1:1', bucket }))).rejects.toThrow(/S3 at http:\/\/127\.0\.0\.1:1, bucket chatflow-test-/);
    });

    it('refuses half a set of credentials', () => {
      expect(() => new S3MediaStore(options({ secretAccessKey: undefined, accessKeyId: 'x' }))).toThrow(/both/);
    });
  });
});
