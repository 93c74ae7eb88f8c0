import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { PROJECT_ROOT } from './project-root';
import type { Logger } from 'pino';
import { FfmpegVideoSplitter } from './ffmpeg';
import { LocalSynthesizer, LocalTranscriber } from './local/adapters';
import { LocalSpeechEngine, SpeechEngineShutDown } from './local/engine';
import { OpenAiSynthesizer, OpenAiTranscriber } from './openai';
import type { Synthesizer, Transcriber, VideoSplitter } from './port';

type Mode = 'auto' | 'local' | 'openai' | 'none';

export interface SpeechConfig {
  stt: { mode: Mode; url?: string; model: string; apiKey?: string };
  tts: { mode: Mode; url?: string; model: string; voice: string; apiKey?: string };
  timeoutMs: number;
  /** The most seconds of a recording the offline recognizer hears, and of a video's sound that is kept (CHATFLOW_STT_MAX_SECONDS). */
  maxHeardSeconds?: number;
  /** Where deploy/install-speech.sh put the offline engines (default `<project>/.speech`). */
  dir?: string;
  ffmpeg?: string;
  /** Most videos split at once (CHATFLOW_FFMPEG_CONCURRENCY). */
  ffmpegConcurrency?: number;
}

export interface Speech {
  transcriber?: Transcriber;
  synthesizer?: Synthesizer;
  video?: VideoSplitter;
  /** One line for the ready log: which engine does what, or that none is installed. */
  summary: { stt: string; tts: string; video: string };
  close(): Promise<void>;
}



/** The offline engines installed by `npm run speech:install`, if any. */
export function findLocalEngines(dir = join(PROJECT_ROOT, '.speech')): { python: string } | undefined {
  const python = join(dir, 'venv', 'bin', 'python');
  // Written last by the install script, once both engines loaded.
  return existsSync(python) && existsSync(join(dir, 'installed')) ? { python } : undefined;
}

/** An executable on the PATH (or the path itself when it has a slash). */
export function findProgram(name: string): string | undefined {
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * Picks the adapters. `auto`: the OpenAI-compatible server when its URL is set,
 * else the offline engine when installed, else none — and says so, because a
 * bot that cannot hear or speak must not pretend to.
 */
export function createSpeech(cfg: SpeechConfig, logger: Logger): Speech {
  const local = findLocalEngines(cfg.dir ? resolve(cfg.dir) : undefined);
  const pick = (mode: Mode, url: string | undefined, kind: 'stt' | 'tts'): 'local' | 'openai' | 'none' => {
    if (mode === 'local' && !local) throw new Error(`CHATFLOW_${kind.toUpperCase()}=local but no offline engine is installed: run \`npm run speech:install\``);
    if (mode !== 'auto') return mode;
    return url ? 'openai' : local ? 'local' : 'none';
  };
  const stt = pick(cfg.stt.mode, cfg.stt.url, 'stt');
  const tts = pick(cfg.tts.mode, cfg.tts.url, 'tts');
  const engines: LocalSpeechEngine[] = [];
  const engine = (kind: 'stt' | 'tts') => {
    const e = new LocalSpeechEngine(local!.python, kind, logger.child({ engineKind: kind }), { maxSeconds: cfg.maxHeardSeconds });
    engines.push(e);
    return e;
  };
  const transcriber =
    stt === 'openai' ? new OpenAiTranscriber({ baseUrl: cfg.stt.url!, apiKey: cfg.stt.apiKey, model: cfg.stt.model, timeoutMs: cfg.timeoutMs })
    : stt === 'local' ? new LocalTranscriber(engine('stt'))
    : undefined;
  const synthesizer =
    tts === 'openai' ? new OpenAiSynthesizer({ baseUrl: cfg.tts.url!, apiKey: cfg.tts.apiKey, model: cfg.tts.model, voice: cfg.tts.voice, timeoutMs: cfg.timeoutMs })
    : tts === 'local' ? new LocalSynthesizer(engine('tts'))
    : undefined;
  const videoOff = cfg.ffmpeg === 'none';
  const ffmpeg = videoOff ? undefined : findProgram(cfg.ffmpeg ?? 'ffmpeg');
  if (cfg.ffmpeg && !videoOff && !ffmpeg) throw new Error(`CHATFLOW_FFMPEG=${cfg.ffmpeg} is not an executable program (\`none\` turns video splitting off)`);
  const video = ffmpeg ? new FfmpegVideoSplitter(ffmpeg, { concurrency: cfg.ffmpegConcurrency, maxSoundS: cfg.maxHeardSeconds }) : undefined;
  const absent = (mode: Mode, kind: 'STT' | 'TTS') => (mode === 'none' ? `none (CHATFLOW_${kind}=none)` : 'none (not installed: npm run speech:install)');
  const summary = {
    stt: stt === 'openai' ? `${cfg.stt.model} at ${cfg.stt.url}` : stt === 'local' ? 'pocketsphinx (offline, en-US)' : absent(cfg.stt.mode, 'STT'),
    tts: tts === 'openai' ? `${cfg.tts.model}/${cfg.tts.voice} at ${cfg.tts.url}` : tts === 'local' ? 'piper en_US-joe-medium (offline)' : `${absent(cfg.tts.mode, 'TTS')}: no voice replies`,
    video: ffmpeg ? `ffmpeg (${ffmpeg})` : `none (${videoOff ? 'CHATFLOW_FFMPEG=none' : 'ffmpeg not found'}): videos are answered without their sound or picture`,
  };
  if ((!transcriber && cfg.stt.mode !== 'none') || (!synthesizer && cfg.tts.mode !== 'none') || (!video && !videoOff)) {
    logger.warn(summary, 'speech engines missing: voice and video messages are answered without hearing, seeing or speaking (npm run speech:install installs them)');
  }
  // Start the offline engines now, so the first voice message does not wait for a model to load.
  // Stopped before it was up (a start that failed further on) is no failure of the engine's.
  for (const e of engines) e.url().catch((err) => err instanceof SpeechEngineShutDown || logger.error({ err, kind: e.kind }, 'speech engine failed to start'));
  return {
    transcriber,
    synthesizer,
    video,
    summary,
    close: async () => {
      video?.close();
      await Promise.all(engines.map((e) => e.close()));
    },
  };
}

