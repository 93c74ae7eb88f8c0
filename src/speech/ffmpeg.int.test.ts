import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWhen } from '../../test/engines';
import { measuredProgram } from '../../test/measured-program';
import { parseWav } from '../../test/voice-signal';
import { findProgram } from './factory';
import { FfmpegVideoSplitter } from './ffmpeg';
import { KEYFRAME_SIZE, MAX_FFMPEG_DATA_BYTES } from './port';
import { describeVideoSplitter, makePicture, makeVideo } from './video.contract';

const ffmpeg = findProgram('ffmpeg');

describeWhen(!!ffmpeg, 'ffmpeg video splitter', 'needs ffmpeg (`npm run speech:install` installs it)', () => {
  describeVideoSplitter('ffmpeg', () => new FfmpegVideoSplitter(ffmpeg!), ffmpeg!);

  // Each ffmpeg costs ~80 ms of CPU just to start: a video is split by one, sound track or not.
  describe('ffmpeg starts per video', () => {
    let dir: string;
    let counted: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'chatflow-counted-ffmpeg-'));
      counted = join(dir, 'ffmpeg');
      await writeFile(counted, `#!/bin/sh\necho run >> "${dir}/runs"\nexec "${ffmpeg}" "$@"\n`);
      await chmod(counted, 0o755);
    });
    afterAll(async () => rm(dir, { recursive: true, force: true }));
    const runs = async () => (await readFile(join(dir, 'runs'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

    it.each([
      ['with a sound track', false],
      ['without one', true],
    ])('a video %s is split by one ffmpeg', async (_, silent) => {
      const video = makeVideo(ffmpeg!, silent);
      const splitter = new FfmpegVideoSplitter(counted);
      try {
        const before = await runs();
        const parts = await splitter.split(video, 'video/mp4');
        expect(parts.audio === undefined).toBe(silent);
        expect(parts.soundCut).toBeUndefined();
        expect((await runs()) - before).toBe(1);
      } finally {
        splitter.close();
      }
    }, 60_000);

    it('takes only the first maxSoundS of a video\'s sound (hours of it fit in an upload)', async () => {
      const splitter = new FfmpegVideoSplitter(ffmpeg!, { maxSoundS: 1 });
      try {
        const parts = await splitter.split(makeVideo(ffmpeg!), 'video/mp4');
        const wav = parseWav(parts.audio!);
        expect(wav.durationMs).toBeGreaterThan(900);
        expect(wav.durationMs).toBeLessThanOrEqual(1_050);
        expect(parts.durationMs).toBeGreaterThan(1_500); // the video's own length is still told
        expect(parts.soundCut).toEqual({ keptMs: 1_000 });
      } finally {
        splitter.close();
      }
    }, 60_000);

    // Each picture is under MAX_VIDEO_PIXELS, but ffmpeg's probe decoded one of each stream and held them all:
    // 20 pictures of 8K in a 2 MB upload took it 2 GB and 10 s (75 fit in an upload).
    it('splits a video of many 8K pictures (one per stream) within its data limit', async () => {
      const one = join(dir, '8k.mkv');
      const many = join(dir, 'many.mkv');
      await writeFile(one, makePicture(ffmpeg!, 7680, 4320));
      const streams = Array.from({ length: 20 }, (_, i) => i);
      execFileSync(ffmpeg!, ['-v', 'error', '-y', ...streams.flatMap(() => ['-i', one]), ...streams.flatMap((i) => ['-map', `${i}:v`]), '-c', 'copy', many]);
      const measured = await measuredProgram(ffmpeg!, dir, 'measured-ffmpeg');
      const splitter = new FfmpegVideoSplitter(measured.path);
      try {
        const { keyframe } = await splitter.split(await readFile(many), 'video/x-matroska');
        expect(keyframe.rgb.length).toBe(KEYFRAME_SIZE.width * KEYFRAME_SIZE.height * 3);
        expect((await measured.used()).peakKb * 1024).toBeLessThan(MAX_FFMPEG_DATA_BYTES + 128 * 1024 * 1024);
      } finally {
        splitter.close();
      }
    }, 60_000);

    it('finds the first keyframe however late it comes (a stream cut 16 s before its next keyframe)', async () => {
      const ts = join(dir, 'late.ts');
      execFileSync(ffmpeg!, ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'color=c=red:s=320x180:d=30:r=25', '-c:v', 'mpeg4', '-g', '600', '-q:v', '5', '-f', 'mpegts', ts]);
      const whole = await readFile(ts);
      const cut = whole.subarray(Math.floor(whole.length / 188 / 4) * 188); // whole 188-byte packets, past the first keyframe
      const splitter = new FfmpegVideoSplitter(counted);
      try {
        const before = await runs();
        const { keyframe } = await splitter.split(cut, 'video/mp2t');
        const { width, height } = KEYFRAME_SIZE;
        const mid = ((height / 2) * width + width / 2) * 3;
        expect([...keyframe.rgb.subarray(mid, mid + 3)].every((v, i) => Math.abs(v - [255, 0, 0][i]!) <= 24)).toBe(true);
        expect((await runs()) - before).toBe(1);
      } finally {
        splitter.close();
      }
    }, 60_000);
  });
});
