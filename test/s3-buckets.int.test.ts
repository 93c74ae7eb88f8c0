import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describeWithEngines } from './engines';
import { bucketOf, clientOf, removeBucket } from './s3-buckets';

async function exists(client: S3Client, bucket: string): Promise<boolean> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

// What load tests and test clusters clean up with: a run's media must not stay on the developer's disk.
describeWithEngines(['S3_ENDPOINT'], 'removeBucket (test and load-test clean-up)', () => {
  it('removes a bucket of more objects than one listing gives (1,000), and a missing one without error', async () => {
    const at = { ...bucketOf(process.env), bucket: `chatflow-test-${randomBytes(4).toString('hex')}` };
    const client = clientOf(at);
    try {
      await client.send(new CreateBucketCommand({ Bucket: at.bucket }));
      const keys = Array.from({ length: 1_050 }, (_, i) => `uploads/c/${i}.bin`);
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((Key) => client.send(new PutObjectCommand({ Bucket: at.bucket, Key, Body: Buffer.from(Key) }))));
      }
      await removeBucket(at);
      expect(await exists(client, at.bucket)).toBe(false);
      await expect(removeBucket(at)).resolves.toBeUndefined();
    } finally {
      client.destroy();
    }
  }, 120_000);
});
