import { DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { loadConfig, type Config } from '../src/config/config';

/** Where a bucket is: the S3 settings as the configuration reads them. */
export type BucketAt = NonNullable<Config['s3']>;

/** The bucket that the S3_* variables of `env` name. */
export function bucketOf(env: Record<string, string | undefined>): BucketAt {
  const s3 = loadConfig(env).s3;
  if (!s3) throw new Error('S3_ENDPOINT is not set');
  return s3;
}

/** An SDK client for the bucket's server (the caller destroys it). */
export function clientOf(at: BucketAt): S3Client {
  return new S3Client({
    endpoint: at.endpoint,
    region: at.region,
    forcePathStyle: at.forcePathStyle,
    ...(at.accessKeyId && at.secretAccessKey ? { credentials: { accessKeyId: at.accessKeyId, secretAccessKey: at.secretAccessKey } } : {}),
  });
}

/**
 * Deletes a bucket and every object in it, a thousand at a time (a listing
 * gives at most that many). A bucket that does not exist is no error: a run
 * that stored no media never created one.
 */
export async function removeBucket(at: BucketAt): Promise<void> {
  const client = clientOf(at);
  try {
    for (;;) {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: at.bucket }));
      const keys = (listed.Contents ?? []).flatMap((c) => (c.Key ? [{ Key: c.Key }] : []));
      if (keys.length === 0) break;
      // Listed again from the start each time: what was listed is deleted by then.
      await client.send(new DeleteObjectsCommand({ Bucket: at.bucket, Delete: { Objects: keys, Quiet: true } }));
    }
    await client.send(new DeleteBucketCommand({ Bucket: at.bucket }));
  } catch (err) {
    if ((err as { name?: string }).name !== 'NoSuchBucket') throw err;
  } finally {
    client.destroy();
  }
}
