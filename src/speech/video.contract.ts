/**
 * Contract of the VideoSplitter port: real videos made by ffmpeg from a known
 * picture (and a tone track), split into a keyframe and a 16 kHz WAV.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWav } from '../../test/voice-signal';
import { KEYFRAME_SIZE, MAX_VIDEO_PIXELS, SpeechError, type VideoSplitter } from './port';

/** A 2 s 640x360 MP4: left half red, right half blue; with a 440 Hz track unless `silent`. */
export function makeVideo(ffmpeg: string, silent = false): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'chatflow-video-contract-'));
  try {
    const out = join(dir, 'v.mp4');
    const picture = ['-f', 'lavfi', '-i', 'color=c=red:s=640x360:d=2,drawbox=x=320:y=0:w=320:h=360:color=blue:t=fill'];
    const sound = silent ? [] : ['-f', 'lavfi', '-i', 'sine=frequency=440:duration=2'];
    execFileSync(ffmpeg, ['-v', 'error', '-y', ...picture, ...sound, '-c:v', 'mpeg4', '-q:v', '2', '-pix_fmt', 'yuv420p', ...(silent ? [] : ['-c:a', 'aac']), '-shortest', out]);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A video of one PNG picture, `width`×`height`, in Matroska: a plain colour
 * compresses ~1000:1, so a picture of hundreds of megapixels fits in an
 * upload (16000×16000 in 800 KB).
 */
export function makePicture(ffmpeg: string, width: number, height: number): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'chatflow-video-contract-'));
  try {
    const out = join(dir, 'p.mkv');
    execFileSync(ffmpeg, ['-v', 'error', '-y', '-f', 'lavfi', '-i', `color=c=white:s=${width}x${height}:d=1:r=1`, '-frames:v', '1', '-c:v', 'png', out]);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function describeVideoSplitter(name: string, make: () => VideoSplitter, ffmpeg: string): void {
  describe(`VideoSplitter contract: ${name}`, () => {
    const TIMEOUT = 60_000;

    it('gives the keyframe letterboxed into KEYFRAME_SIZE with its colours, the sound as 16 kHz WAV, and the duration', async () => {
      const parts = await make().split(makeVideo(ffmpeg), 'video/mp4');
      const { width, height } = KEYFRAME_SIZE;
      expect(parts.keyframe).toMatchObject({ width, height });
      const px = (x: number, y: number) => [...parts.keyframe.rgb.subarray((y * width + x) * 3, (y * width + x) * 3 + 3)];
      const near = (got: number[], want: number[]) => got.every((v, i) => Math.abs(v - want[i]!) <= 24);
      expect(near(px(40, height / 2), [255, 0, 0])).toBe(true);
      expect(near(px(width - 40, height / 2), [0, 0, 255])).toBe(true);
      const wav = parseWav(parts.audio!);
      expect(wav.sampleRate).toBe(16000);
      expect(wav.durationMs).toBeGreaterThan(1500);
      expect(parts.durationMs).toBeGreaterThan(1500);
      expect(parts.durationMs).toBeLessThan(2600);
    }, TIMEOUT);

    it('gives no audio for a silent video', async () => {
      const parts = await make().split(makeVideo(ffmpeg, true), 'video/mp4');
      expect(parts.audio).toBeUndefined();
      expect(parts.keyframe.rgb.length).toBe(KEYFRAME_SIZE.width * KEYFRAME_SIZE.height * 3);
    }, TIMEOUT);

    it('refuses bytes that are not a video with a SpeechError not worth retrying', async () => {
      const err = await make().split(Buffer.from('ftyp but not really a video'), 'video/mp4').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SpeechError);
      expect((err as SpeechError).retryable).toBe(false);
    }, TIMEOUT);

    // 8000×8000 in a 200 KB upload; ffmpeg took 260 MB to decode it (16000×16000, 800 KB: 900 MB and 5 s).
    it('refuses a picture larger than MAX_VIDEO_PIXELS (8K) without decoding it, saying how large it is; 8K itself is read', async () => {
      const err = await make().split(makePicture(ffmpeg, 8000, 8000), 'video/x-matroska').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SpeechError);
      expect((err as SpeechError).retryable).toBe(false);
      expect((err as SpeechError).message).toBe('its picture is 8000×8000 pixels; pictures of at most 33.2 megapixels (8K, 7680×4320) are read');
      const parts = await make().split(makePicture(ffmpeg, 7680, 4320), 'video/x-matroska');
      expect(parts.keyframe.rgb.length).toBe(KEYFRAME_SIZE.width * KEYFRAME_SIZE.height * 3);
      expect(MAX_VIDEO_PIXELS).toBe(7680 * 4320);
    }, TIMEOUT);
  });
}
