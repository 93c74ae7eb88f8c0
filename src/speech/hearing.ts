import { SpeechError, type Synthesizer, type Transcriber, type Transcript, type VideoParts, type VideoSplitter } from './port';

/** The speech engines a worker uses; each may be absent (not installed / configured). */
export interface SpeechEngines {
  transcriber?: Transcriber;
  synthesizer?: Synthesizer;
  video?: VideoSplitter;
}

/** What the bot took in from a voice or video message. */
export interface Heard {
  /** undefined when it could not listen; `hearingNote` says why. */
  transcript?: Transcript;
  /** Why there is no transcript, or what of the recording it leaves out. */
  hearingNote?: string;
  /** A video's first keyframe (RGB), for the reply image and a vision model. */
  keyframe?: VideoParts['keyframe'];
}

/**
 * Listens to a voice message, or splits a video into its sound and a keyframe
 * and listens to the sound. An engine that is down or slow throws a retryable
 * SpeechError (the worker retries, then fails the message); input the engine
 * cannot read, or a missing engine, becomes a note the reply states plainly.
 */
export async function hear(
  engines: SpeechEngines,
  kind: 'audio' | 'video',
  bytes: Buffer,
  mimeType: string,
  signal: AbortSignal,
  observe: (engine: string, seconds: number) => void,
): Promise<Heard> {
  const listen = async (audio: Buffer, type: string): Promise<Heard> => {
    if (!engines.transcriber) return { hearingNote: 'no speech recognizer is set up on this server' };
    const started = performance.now();
    try {
      const transcript = await engines.transcriber.transcribe(audio, type, signal);
      observe(engines.transcriber.name, (performance.now() - started) / 1000);
      return { transcript, ...(transcript.cut && { hearingNote: onlyTheFirst(transcript.cut.heardMs) }) };
    } catch (err) {
      if (err instanceof SpeechError && !err.retryable) return { hearingNote: `the recording could not be decoded (${err.message})` };
      throw err;
    }
  };
  if (kind === 'audio') return listen(bytes, mimeType);
  if (!engines.video) return { hearingNote: 'no video decoder (ffmpeg) is set up on this server, so I can neither hear nor see videos' };
  let parts: VideoParts;
  try {
    parts = await engines.video.split(bytes, mimeType, signal);
  } catch (err) {
    if (err instanceof SpeechError && !err.retryable) return { hearingNote: `the video could not be decoded (${err.message})` };
    throw err;
  }
  const seen = { keyframe: parts.keyframe };
  if (!parts.audio) return { ...seen, hearingNote: 'the video has no sound' };
  const heard = await listen(parts.audio, 'audio/wav');
  if (parts.soundCut && heard.transcript && !heard.hearingNote) heard.hearingNote = onlyTheFirst(parts.soundCut.keptMs);
  return { ...seen, ...heard };
}

/** The note for a recording heard only in part (CHATFLOW_STT_MAX_SECONDS). */
function onlyTheFirst(ms: number): string {
  return `only its first ${Math.round(ms / 1000)} seconds were heard`;
}
