import { OpenAiSynthesizer, OpenAiTranscriber } from '../openai';
import type { PcmChunk, Synthesizer, Transcriber, Transcript } from '../port';
import type { LocalSpeechEngine } from './engine';

/** Speech engines answer within this, or the call fails (retryable). */
const LOCAL_TIMEOUT_MS = 120_000;

/** PocketSphinx (en-US) in its own process. */
export class LocalTranscriber implements Transcriber {
  readonly name = 'pocketsphinx';
  constructor(private readonly engine: LocalSpeechEngine) {}

  async transcribe(audio: Buffer, mimeType: string, signal?: AbortSignal): Promise<Transcript> {
    const baseUrl = await this.engine.url();
    return new OpenAiTranscriber({ baseUrl, model: 'pocketsphinx-en-us', timeoutMs: LOCAL_TIMEOUT_MS, engine: this.name }).transcribe(audio, mimeType, signal);
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}

/** Piper with the en_US "joe" voice in its own process; a chunk per sentence. */
export class LocalSynthesizer implements Synthesizer {
  readonly name = 'piper';
  constructor(private readonly engine: LocalSpeechEngine) {}

  async *synthesize(text: string, signal?: AbortSignal): AsyncIterable<PcmChunk> {
    const baseUrl = await this.engine.url();
    yield* new OpenAiSynthesizer({ baseUrl, model: 'piper-en_US-joe-medium', voice: 'joe', timeoutMs: LOCAL_TIMEOUT_MS, engine: this.name }).synthesize(text, signal);
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
