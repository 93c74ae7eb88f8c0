import { DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../src/config/config';

/** Where a bucket is: what `loadConfig().s3` gives (the S3_* settings). */
export interface BucketAt {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
}

/** The bucket that the S3_* variables of `env` name. */
export function bucketOf(env: Record<string, string | undefined>): BucketAt {
  const s3 = loadConfig(env).s3;
  if (!s3) throw new Error('S3_ENDPOINT is not set');
  return s3;
}

/**
 * Deletes a bucket and every object in it, a thousand at a time (a listing
 * gives at most that many). A bucket that does not exist is no error: a run
 * that stored no media never created one.
 */
export async function removeBucket(at: BucketAt): Promise<void> {
  const client = new S3Client({
    endpoint: at.endpoint,
    region: at.region,
    forcePathStyle: at.forcePathStyle,
    ...(at.accessKeyId && at.secretAccessKey ? { credentials: { accessKeyId: at.accessKeyId, secretAccessKey: at.secretAccessKey } } : {}),
  });
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
