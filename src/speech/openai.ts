import { SpeechError, type PcmChunk, type Synthesizer, type Transcriber, type Transcript } from './port';
import { WavStreamReader } from './wav-stream';

/**
 * Adapters for the OpenAI-compatible audio API: OpenAI itself, a self-hosted
 * Whisper / Piper / Kokoro server, LocalAI, vLLM — and ChatFlow's own local
 * engines (local/speech_server.py), which serve the same endpoints.
 */
export interface OpenAiSpeechOptions {
  /** Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8000/v1`. */
  baseUrl: string;
  apiKey?: string;
  model: string;
  timeoutMs: number;
  /** Name reported in transcripts and logs (default: the model). */
  engine?: string;
}

/** `POST /v1/audio/transcriptions` (multipart), asking for word timings. */
export class OpenAiTranscriber implements Transcriber {
  readonly name: string;

  constructor(private readonly opts: OpenAiSpeechOptions) {
    this.name = opts.engine ?? opts.model;
  }

  async transcribe(audio: Buffer, mimeType: string, signal?: AbortSignal): Promise<Transcript> {
    const form = new FormData();
    form.append('file', new Blob([audio], { type: mimeType }), `audio.${extensionOf(mimeType)}`);
    form.append('model', this.opts.model);
    form.append('response_format', 'verbose_json');
    form.append('timestamp_granularities[]', 'word');
    const res = await call(this.opts, '/audio/transcriptions', { method: 'POST', body: form }, 'speech recognizer', signal);
    const body = (await res.json().catch(() => null)) as { text?: unknown; words?: { word?: unknown; start?: unknown; end?: unknown }[]; duration?: unknown; x_cut?: unknown } | null;
    if (!body || typeof body.text !== 'string') throw new SpeechError('the speech recognizer answered without a text', true);
    const words = Array.isArray(body.words)
      ? body.words
          .filter((w) => typeof w.word === 'string' && typeof w.start === 'number' && typeof w.end === 'number')
          .map((w) => ({ word: (w.word as string).trim(), startMs: Math.round((w.start as number) * 1000), endMs: Math.round((w.end as number) * 1000) }))
      : [];
    // `x_cut`: ChatFlow's offline engine heard only the first `duration` seconds (an OpenAI server never says so).
    const cut = body.x_cut === true && typeof body.duration === 'number' ? { heardMs: Math.round(body.duration * 1000) } : undefined;
    return { text: body.text.trim(), words, engine: this.name, ...(cut && { cut }) };
  }

  async close(): Promise<void> {}
}

/** `POST /v1/audio/speech` with `response_format: wav`, read as a stream. */
export class OpenAiSynthesizer implements Synthesizer {
  readonly name: string;

  constructor(private readonly opts: OpenAiSpeechOptions & { voice: string }) {
    this.name = opts.engine ?? opts.model;
  }

  async *synthesize(text: string, signal?: AbortSignal): AsyncIterable<PcmChunk> {
    const body = JSON.stringify({ model: this.opts.model, voice: this.opts.voice, input: text, response_format: 'wav' });
    const res = await call(this.opts, '/audio/speech', { method: 'POST', body, headers: { 'content-type': 'application/json' } }, 'speech synthesizer', signal);
    if (!res.body) throw new SpeechError('the speech synthesizer answered without audio', true);
    const reader = new WavStreamReader();
    try {
      for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
        const chunk = reader.push(Buffer.from(bytes));
        if (chunk) yield chunk;
      }
      reader.finish();
    } catch (err) {
      throw asSpeechError(err, 'speech synthesizer', signal);
    }
  }

  async close(): Promise<void> {}
}

async function call(opts: OpenAiSpeechOptions, path: string, init: RequestInit, what: string, signal?: AbortSignal): Promise<Response> {
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const headers = new Headers(init.headers);
  if (opts.apiKey) headers.set('authorization', `Bearer ${opts.apiKey}`);
  let res: Response;
  try {
    res = await fetch(opts.baseUrl.replace(/\/+$/, '') + path, { ...init, headers, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    throw asSpeechError(err, what, signal);
  }
  if (!res.ok) {
    const detail = (await res.text().catch(() => '')).slice(0, 300);
    throw new SpeechError(`the ${what} answered HTTP ${res.status}: ${detail || res.statusText}`, res.status === 429 || res.status >= 500);
  }
  return res;
}

function asSpeechError(err: unknown, what: string, signal?: AbortSignal): Error {
  if (signal?.aborted) return err as Error; // the caller's own abort: not an engine failure
  if (err instanceof SpeechError) return err;
  const e = err as Error & { cause?: { code?: string; message?: string; errors?: { code?: string }[] } };
  if (e.name === 'TimeoutError') return new SpeechError(`the ${what} did not answer in time`, true);
  const why = e.cause?.code ?? e.cause?.errors?.[0]?.code ?? e.cause?.message ?? e.message;
  return new SpeechError(`the ${what} is unreachable (${why})`, true);
}

function extensionOf(mimeType: string): string {
  const sub = mimeType.split(';')[0]!.split('/')[1] ?? 'bin';
  return ({ 'x-wav': 'wav', wave: 'wav', mpeg: 'mp3', 'x-m4a': 'm4a', quicktime: 'mov' } as Record<string, string>)[sub] ?? sub;
}
