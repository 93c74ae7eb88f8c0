/**
 * Speech and sight are ports like the other engines (DESIGN.md): a transcriber
 * (audio → text), a synthesizer (text → voice) and, for video, a splitter that
 * takes out the audio track and a keyframe. Adapters sit beside this file;
 * `factory.ts` picks them from configuration.
 */

export interface TranscriptWord {
  word: string;
  startMs: number;
  endMs: number;
}

export interface Transcript {
  text: string;
  /** Word timings, when the engine gives them (empty otherwise). */
  words: TranscriptWord[];
  /** The engine or model that heard it. */
  engine: string;
  /** The recording went on past what the engine hears (CHATFLOW_STT_MAX_SECONDS): only its first `heardMs` are in `text`. */
  cut?: { heardMs: number };
}

export interface Transcriber {
  readonly name: string;
  /** Any audio the engine decodes (WAV always; Ogg, WebM, MP3… where the engine has ffmpeg). */
  transcribe(audio: Buffer, mimeType: string, signal?: AbortSignal): Promise<Transcript>;
  close(): Promise<void>;
}

/** A piece of synthesized speech: 16-bit little-endian mono PCM. */
export interface PcmChunk {
  pcm: Buffer;
  sampleRate: number;
}

export interface Synthesizer {
  readonly name: string;
  /**
   * The text spoken, in order, chunk by chunk as the engine produces them (a
   * sentence at a time for Piper): the first chunk comes before the whole text
   * is synthesized.
   */
  synthesize(text: string, signal?: AbortSignal): AsyncIterable<PcmChunk>;
  close(): Promise<void>;
}

/** What a video holds for the bot: what was said and what it showed. */
export interface VideoParts {
  /** The audio track as 16 kHz mono WAV; undefined when the video has none. */
  audio?: Buffer;
  /** One frame (the first keyframe) as RGB pixels, scaled into `KEYFRAME_SIZE` keeping its aspect (letterboxed). */
  keyframe: { rgb: Buffer; width: number; height: number };
  durationMs: number;
  /** The sound went on past the splitter's limit: `audio` holds its first `keptMs`. */
  soundCut?: { keptMs: number };
}

export const KEYFRAME_SIZE = { width: 480, height: 270 } as const;

/**
 * The largest picture a video splitter decodes: 8K UHD (7680×4320). A picture
 * of one plain colour compresses ~1000:1, so an upload of a few hundred KB can
 * hold one of 16000×16000 pixels, which took ffmpeg 900 MB to decode.
 */
export const MAX_VIDEO_PIXELS = 7680 * 4320;

/**
 * What one ffmpeg may take of memory (its soft data limit), the video
 * splitter's and the offline speech engine's alike; the largest legitimate
 * need measured: an 8K keyframe, ~220 MB.
 */
export const MAX_FFMPEG_DATA_BYTES = 512 * 1024 * 1024;

export interface VideoSplitter {
  readonly name: string;
  split(video: Buffer, mimeType: string, signal?: AbortSignal): Promise<VideoParts>;
}

/**
 * A speech engine failed (down, timed out, refused the input). `retryable`
 * when trying again may help (engine down or overloaded); bad input is not.
 */
export class SpeechError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'SpeechError';
  }
}
