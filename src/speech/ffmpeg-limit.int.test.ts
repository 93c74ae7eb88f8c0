import { promises } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enospc } from '../../test/disk-writes';
import { FfmpegVideoSplitter } from './ffmpeg';
import { SpeechError } from './port';

/**
 * Every video a client sends starts ffmpeg (~80 ms of CPU and tens of MB each
 * just to start): without a bound, a burst of videos — up to the 500 messages
 * in processing — starts that many at once. A stand-in ffmpeg records how many
 * of it run together.
 */
describe('FfmpegVideoSplitter: ffmpeg processes at once', () => {
  let dir: string;
  let fake: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-fake-ffmpeg-'));
    fake = join(dir, 'ffmpeg');
    // Counts itself in while it runs (a file per process), keeps the highest count seen, then fails as on a bad upload.
    await writeFile(fake, `#!/bin/sh
echo run >> "${dir}/runs"
touch "${dir}/running.$$"
n=$(ls "${dir}" | grep -c '^running\\.')
flock "${dir}/peak.lock" sh -c 'p=$(cat "${dir}/peak" 2>/dev/null || echo 0); [ "$1" -gt "$p" ] && echo "$1" > "${dir}/peak"; true' _ "$n"
sleep 0.3
rm -f "${dir}/running.$$"
echo "Invalid data found when processing input" >&2
exit 1
`);
    await chmod(fake, 0o755);
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('runs at most its concurrency, the other videos waiting their turn, each answered', async () => {
    const splitter = new FfmpegVideoSplitter(fake, { concurrency: 2 });
    try {
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => splitter.split(Buffer.from('not a video'), 'video/mp4')));
      expect(results.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(Array(8).fill('ffmpeg could not read the video: Invalid data found when processing input'));
      expect(Number(await readFile(join(dir, 'peak'), 'utf8'))).toBe(2);
    } finally {
      splitter.close();
    }
  });

  it('a video whose message is given up while it waits for its turn starts no ffmpeg', async () => {
    const splitter = new FfmpegVideoSplitter(fake, { concurrency: 1 });
    const runs = async () => (await readFile(join(dir, 'runs'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
    const before = await runs();
    try {
      const first = splitter.split(Buffer.from('not a video'), 'video/mp4').catch(() => undefined);
      const gone = new AbortController();
      const waiting = splitter.split(Buffer.from('not a video'), 'video/mp4', gone.signal);
      gone.abort(new Error('deadline passed'));
      await expect(waiting).rejects.toThrow('deadline passed');
      await first;
      expect((await runs()) - before).toBe(1);
    } finally {
      splitter.close();
    }
  });
});

/**
 * The server's temporary disk full: the upload cannot be written for ffmpeg,
 * or ffmpeg cannot write what it decoded. Neither is the video's fault (it
 * was told "the video could not be decoded", or the message failed INTERNAL):
 * a SpeechError worth retrying, saying what is full.
 */
describe('FfmpegVideoSplitter: a full temporary disk', () => {
  let dir: string;
  beforeAll(async () => (dir = await mkdtemp(join(tmpdir(), 'chatflow-full-ffmpeg-'))));
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  /** Where the disk is found full: writing the upload for ffmpeg, or ffmpeg writing what it decoded (a stand-in that says so). */
  const places: Array<[string, () => Promise<{ ffmpeg: string; undo: () => void }>]> = [
    ['the upload not written (ENOSPC)', async () => {
      const spy = jest.spyOn(promises, 'writeFile').mockRejectedValueOnce(enospc());
      return { ffmpeg: '/bin/true', undo: () => spy.mockRestore() };
    }],
    ['ffmpeg failing for want of space (not the video being bad)', async () => {
      const ffmpeg = join(dir, 'ffmpeg');
      await writeFile(ffmpeg, '#!/bin/sh\necho "[tee @ 0x1] frame.rgb: No space left on device" >&2\nexit 1\n');
      await chmod(ffmpeg, 0o755);
      return { ffmpeg, undo: () => undefined };
    }],
  ];

  it.each(places)('%s is a retryable SpeechError that says the disk is full', async (_where, fill) => {
    const { ffmpeg, undo } = await fill();
    const splitter = new FfmpegVideoSplitter(ffmpeg);
    try {
      const err = await splitter.split(Buffer.from('a video'), 'video/mp4').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SpeechError);
      expect(err).toMatchObject({ retryable: true, message: 'the server\'s temporary disk could not take the video (no space left on device)' });
    } finally {
      undo();
      splitter.close();
    }
  });
});

/**
 * A video's upload is written to a temporary directory for ffmpeg and removed
 * once split; a process killed meanwhile (SIGKILL, power loss) leaves it, up to
 * the largest upload each time. Those left by any process are removed once
 * no split can still be using them.
 */
describe('FfmpegVideoSplitter: temporary directories left by a killed process', () => {
  it('removes those older than twice its timeout when it starts; newer ones, which may be in use, stay', async () => {
    const old = await mkdtemp(join(tmpdir(), 'chatflow-video-'));
    const recent = await mkdtemp(join(tmpdir(), 'chatflow-video-'));
    const other = await mkdtemp(join(tmpdir(), 'chatflow-other-'));
    await writeFile(join(old, 'in'), 'an upload');
    const longAgo = new Date(Date.now() - 10 * 60_000);
    await Promise.all([old, other].map((d) => utimes(d, longAgo, longAgo)));
    const splitter = new FfmpegVideoSplitter('/bin/true', { timeoutMs: 60_000 });
    try {
      await splitter.swept;
      const exists = (d: string) => stat(d).then(() => true, () => false);
      expect(await Promise.all([old, recent, other].map(exists))).toEqual([false, true, true]);
    } finally {
      splitter.close();
      await Promise.all([old, recent, other].map((d) => rm(d, { recursive: true, force: true })));
    }
  });
});
