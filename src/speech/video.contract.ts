/**
 * Contract of the VideoSplitter port: real videos made by ffmpeg from a known
 * picture (and a tone track), split into a keyframe and a 16 kHz WAV.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWav } from '../../test/voice-signal';
import { KEYFRAME_SIZE, SpeechError, type VideoSplitter } from './port';

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
  });
}
