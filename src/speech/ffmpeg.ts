import { mkdtemp, opendir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diskFault } from '../domain/errors';
import { Semaphore } from '../resilience/semaphore';
import { LauncherExited, ProgramLauncher } from './launcher';
import { KEYFRAME_SIZE, MAX_FFMPEG_DATA_BYTES, MAX_VIDEO_PIXELS, SpeechError, type VideoParts, type VideoSplitter } from './port';

/**
 * Video through ffmpeg (a separate program, LGPL/GPL, never linked in): the
 * first keyframe as RGB pixels letterboxed into KEYFRAME_SIZE and, when the
 * video has one, the first audio track as 16 kHz mono WAV, both from one ffmpeg
 * run. The upload goes through a
 * temporary file because MP4s often keep their index at the end. ffmpeg is
 * started by a small helper process (ProgramLauncher), not by the server:
 * forking the server stalled its event loop. At most `concurrency` videos are
 * split at once (CHATFLOW_FFMPEG_CONCURRENCY): each ffmpeg costs ~80 ms of CPU
 * and tens of MB just to start, and a burst of videos (up to the 500 messages
 * in processing) would otherwise start that many at once. The others wait
 * their turn, or until their message is given up. What one ffmpeg may take is
 * bounded whatever the upload holds: no picture over MAX_VIDEO_PIXELS is
 * decoded, and each runs under a data limit (MAX_FFMPEG_DATA_BYTES): a picture
 * of one colour compresses ~1000:1, so an upload of a few MB can hold pictures
 * that take GBs to decode.
 */
export class FfmpegVideoSplitter implements VideoSplitter {
  readonly name = 'ffmpeg';

  private readonly launcher = new ProgramLauncher();
  private readonly turns: Semaphore;
  private readonly timeoutMs: number;
  private readonly maxSoundS: number;
  /** Settles once the temporary directories left by killed processes were looked for (and removed). */
  readonly swept: Promise<void>;

  constructor(private readonly ffmpeg: string, opts: { concurrency?: number; timeoutMs?: number; maxSoundS?: number } = {}) {
    this.turns = new Semaphore(opts.concurrency ?? DEFAULT_FFMPEG_CONCURRENCY);
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.maxSoundS = opts.maxSoundS ?? MAX_SOUND_S;
    this.swept = sweepLeftDirs(2 * this.timeoutMs);
  }

  /** Stops the helper process that starts ffmpeg. */
  close(): void {
    this.launcher.close();
  }

  split(video: Buffer, mimeType: string, signal?: AbortSignal): Promise<VideoParts> {
    return this.turns.use(() => this.splitNow(video, mimeType, signal), { signal });
  }

  private async splitNow(video: Buffer, _mimeType: string, signal?: AbortSignal): Promise<VideoParts> {
    const dir = await mkdtemp(join(tmpdir(), TEMP_PREFIX));
    try {
      const input = join(dir, 'in');
      await writeFile(input, video).catch((err: unknown) => {
        const what = diskFault(err);
        throw what ? tempDiskFull(what) : err;
      });
      const { width, height } = KEYFRAME_SIZE;
      const frame = join(dir, 'frame.rgb');
      const audio = join(dir, 'audio.wav');
      const fit = `scale=${width}:${height}:force_original_aspect_ratio=decrease,pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2`;
      // One ffmpeg for both parts (each start costs ~80 ms of CPU). The video is opened twice: the picture
      // comes from the first opening, decoding keyframes only, and stops at the first one (trim), which ends
      // that input, so a long video is not decoded to its end; the sound comes from the second. The tee
      // muxer writes the picture to one file and the sound, if any, to the other: a video without sound
      // leaves that side with no stream, and `onfail=ignore` lets the picture side finish alone. Only the
      // first maxSoundS of the sound are kept (see MAX_SOUND_S). Neither opening decodes a picture larger than
      // MAX_VIDEO_PIXELS (ffmpeg's probe of the second decodes one too); the picture is decoded by one thread,
      // as only one frame is wanted (frame threads would each decode another keyframe, a frame's memory each).
      const maxPixels = ['-max_pixels', String(MAX_VIDEO_PIXELS)];
      const report = await this.run([
        '-nostdin', '-hide_banner', '-y',
        '-skip_frame', 'nokey', '-threads', '1', ...maxPixels, '-i', input,
        '-t', String(this.maxSoundS), ...maxPixels, '-i', input,
        '-map', '0:v:0', '-map', '1:a:0?',
        '-vf', `trim=end_frame=1,${fit}`, '-c:v', 'rawvideo', '-pix_fmt', 'rgb24',
        '-ac', '1', '-ar', '16000', '-c:a', 'pcm_s16le',
        '-f', 'tee', `[select=v:f=rawvideo]${frame}|[select=a:f=wav:onfail=ignore]${audio}`,
      ], signal);
      const rgb = await readFile(frame).catch(() => Buffer.alloc(0));
      if (rgb.length !== width * height * 3) throw new SpeechError('the video has no picture ffmpeg could decode', false);
      const hasAudio = await stat(audio).then((s) => s.size > 44, () => false);
      const durationMs = durationOf(report);
      const soundCut = hasAudio && durationMs > this.maxSoundS * 1000 ? { keptMs: this.maxSoundS * 1000 } : undefined;
      return { keyframe: { rgb, width, height }, audio: hasAudio ? await readFile(audio) : undefined, durationMs, ...(soundCut && { soundCut }) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** ffmpeg's report (stderr) when it succeeded; a SpeechError saying why not otherwise. */
  private async run(args: string[], signal?: AbortSignal): Promise<string> {
    const { stderr, error } = await this.launcher
      .run(this.ffmpeg, args, { timeoutMs: this.timeoutMs, maxBuffer: 4 * 1024 * 1024, maxDataBytes: MAX_FFMPEG_DATA_BYTES, signal })
      .catch((err: unknown) => {
        if (err instanceof LauncherExited) throw new SpeechError(`ffmpeg could not be started: ${err.message}`, true);
        throw err;
      });
    if (!error) return stderr;
    if (error.code === 'ENOENT') throw new SpeechError(`ffmpeg not found at ${this.ffmpeg}`, false);
    if (error.killed) throw new SpeechError('ffmpeg did not finish in time', true);
    const full = /No space left on device|Disk quota exceeded/.exec(stderr);
    if (full) throw tempDiskFull(full[0] === 'Disk quota exceeded' ? 'disk quota exceeded' : 'no space left on device');
    const large = /Picture size (\d+)x(\d+) exceeds specified max pixel count/.exec(stderr);
    if (large) throw new SpeechError(`its picture is ${large[1]}×${large[2]} pixels; pictures of at most ${(MAX_VIDEO_PIXELS / 1e6).toFixed(1)} megapixels (8K, 7680×4320) are read`, false);
    const last = stderr.trim().split('\n').slice(-2).join(' ').slice(0, 300);
    throw new SpeechError(`ffmpeg could not read the video: ${last}`, false);
  }
}

/**
 * The most of a video's sound that is kept: CHATFLOW_STT_MAX_SECONDS's default
 * (src/config/schema.ts), all the recognizer hears. An upload of
 * CHATFLOW_MAX_MEDIA_BYTES (8 MB) at a few kbit/s holds hours of sound, which
 * would decode to hundreds of MB of WAV in the worker's memory.
 */
const MAX_SOUND_S = 120;

/** CHATFLOW_FFMPEG_CONCURRENCY's default (src/config/schema.ts). */
const DEFAULT_FFMPEG_CONCURRENCY = 2;

/** The temporary directories of the splits (any process's), in the OS's temporary directory. */
const TEMP_PREFIX = 'chatflow-video-';

/**
 * Removes the split directories older than `olderThanMs`: a process killed during a split (SIGKILL, power loss)
 * left them, each holding an upload. A split lasts at most its ffmpeg's timeout once its directory exists (the
 * wait for a turn comes before), so none older than twice that is in use, by this process or another.
 */
async function sweepLeftDirs(olderThanMs: number): Promise<void> {
  const before = Date.now() - olderThanMs;
  const tmp = await opendir(tmpdir()).catch(() => undefined); // read as it goes: a shared /tmp may hold millions of entries
  if (!tmp) return;
  try {
    for await (const entry of tmp) {
      if (!entry.name.startsWith(TEMP_PREFIX)) continue;
      const dir = join(tmpdir(), entry.name);
      const s = await stat(dir).catch(() => undefined); // (a dirent's type may be unknown on some filesystems)
      if (s?.isDirectory() && s.mtimeMs < before) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  } catch {
    // tmp unreadable midway: what is left goes at the next start
  }
}

/** The temporary disk (the OS's, where the upload and ffmpeg's output go) refused a write: not the video's fault, and may pass. */
function tempDiskFull(what: string): SpeechError {
  return new SpeechError(`the server's temporary disk could not take the video (${what})`, true);
}

/** "Duration: 00:00:03.04" from ffmpeg's report on the input; 0 when absent. */
function durationOf(stderr: string): number {
  const m = /Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)/.exec(stderr);
  return m ? Math.round(((+m[1]! * 60 + +m[2]!) * 60 + +m[3]!) * 1000) : 0;
}
