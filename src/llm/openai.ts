// Any OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp,
// Ollama, LM Studio...), streamed over SSE. The contract that matters to the
// worker: every failure becomes an LlmError with a gRPC code and a retry hint,
// and the call never outlives timeoutMs (the processing budget is shared).
import { formatLocalTime, isoLocalTime } from '../domain/local-time';
import { LlmCallOptions, LlmError, LlmProvider, LlmReply, LlmRequest } from './port';
import { abortError } from './simulated';

export interface OpenAiCompatibleLlmOptions {
  /** e.g. "http://host:8000/v1" (a trailing slash is fine). */
  baseUrl: string;
  apiKey?: string;
  model: string;
  /** Whole call, first byte to [DONE]. */
  timeoutMs: number;
  systemPrompt?: string;
  fetch?: typeof fetch;
}

const DEFAULT_SYSTEM_PROMPT =
  'You are ChatFlow, a concise and friendly assistant. Answer in the language of the user, in a few sentences.';

/** Error bodies are for humans; keep what we quote bounded. */
const MAX_ERROR_TEXT = 500;

type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };
type ChatMessage = { role: 'system' | 'user' | 'assistant'; content: string | ContentPart[] };

export class OpenAiCompatibleLlm implements LlmProvider {
  readonly name = 'openai';
  readonly usesHistory = true;
  private readonly url: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: OpenAiCompatibleLlmOptions) {
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    this.fetchImpl = opts.fetch ?? fetch;
  }

  async generate(request: LlmRequest, { signal: callerSignal, onDelta }: LlmCallOptions): Promise<LlmReply> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const signal = AbortSignal.any([callerSignal, timeout]);
    // Tells the caller's abort apart from our own deadline.
    const aborted = (): Error =>
      callerSignal.aborted && !isTimeout(callerSignal.reason)
        ? abortError(callerSignal)
        : new LlmError(`LLM did not answer within ${this.opts.timeoutMs} ms`, 'DEADLINE_EXCEEDED', true);

    if (callerSignal.aborted) throw aborted();
    const messages = buildMessages(request, this.opts.systemPrompt ?? DEFAULT_SYSTEM_PROMPT);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;

    let response: Response;
    try {
      // raceAbort: an injected fetch might ignore the signal; we must not hang on it.
      response = await raceAbort(
        this.fetchImpl(this.url, {
          method: 'POST',
          headers,
          body: JSON.stringify({ model: this.opts.model, stream: true, messages }),
          signal,
        }),
        signal,
      );
    } catch (err) {
      if (signal.aborted) throw aborted();
      throw new LlmError(`LLM server unreachable at ${this.url}: ${describeNetworkError(err)}`, 'UNAVAILABLE', true);
    }

    try {
      if (!response.ok) throw await httpError(response, signal);
      const type = response.headers.get('content-type') ?? '';
      // Some servers ignore stream:true and answer with one JSON document.
      if (type.includes('application/json')) return await this.readJson(response, signal, onDelta);
      return await this.readStream(response, signal, onDelta);
    } catch (err) {
      if (signal.aborted) throw aborted();
      if (err instanceof LlmError) throw err;
      throw new LlmError(`LLM response could not be read: ${describeNetworkError(err)}`, 'UNAVAILABLE', true);
    } finally {
      // Error bodies and JSON answers are read whole; this covers early throws.
      if (response.body && !response.body.locked) response.body.cancel().catch(() => undefined);
    }
  }

  private async readStream(response: Response, signal: AbortSignal, onDelta: (t: string) => void): Promise<LlmReply> {
    if (!response.body) throw new LlmError('LLM server sent no body', 'UNAVAILABLE', true);
    const reader = response.body.getReader();
    const parser = new SseParser();
    const decoder = new TextDecoder();
    let text = '';
    let model = this.opts.model;
    let done = false;

    const handle = (data: string) => {
      if (data.trim() === '[DONE]') return void (done = true);
      let chunk: any;
      try {
        chunk = JSON.parse(data);
      } catch {
        return; // keep-alives and vendor noise: ignore what is not JSON
      }
      if (chunk?.error) {
        // A mid-stream failure; a retry is only safe if nothing was shown yet.
        throw new LlmError(`LLM stream error: ${errorMessage(chunk)}`, 'UNAVAILABLE', text === '');
      }
      if (typeof chunk?.model === 'string' && chunk.model) model = chunk.model;
      const piece = chunk?.choices?.[0]?.delta?.content;
      if (typeof piece === 'string' && piece !== '') {
        text += piece;
        onDelta(piece);
      }
    };

    try {
      while (!done) {
        const { value, done: eof } = await raceAbort(reader.read(), signal);
        if (eof) {
          for (const data of parser.push(decoder.decode(), true)) if (!done) handle(data);
          break;
        }
        for (const data of parser.push(decoder.decode(value, { stream: true }))) {
          handle(data);
          if (done) break;
        }
      }
    } finally {
      // After [DONE] or a failure, release the connection instead of draining it.
      reader.cancel().catch(() => undefined);
    }

    // Truncated stream with content: keep what the user already saw streaming.
    if (!done && text === '') throw new LlmError('LLM stream ended before any content', 'UNAVAILABLE', true);
    if (text.trim() === '') throw new LlmError('LLM returned an empty reply', 'INTERNAL');
    return { text, model };
  }

  private async readJson(response: Response, signal: AbortSignal, onDelta: (t: string) => void): Promise<LlmReply> {
    const body: any = JSON.parse(await raceAbort(response.text(), signal));
    const text = body?.choices?.[0]?.message?.content;
    if (typeof text !== 'string' || text.trim() === '') throw new LlmError('LLM returned an empty reply', 'INTERNAL');
    onDelta(text);
    return { text, model: typeof body.model === 'string' && body.model ? body.model : this.opts.model };
  }
}

// ---------------------------------------------------------------------------

/**
 * Incremental SSE parser (only what chat completions need: `data` lines).
 * Chunks may split anywhere, including between "\r" and "\n".
 */
export class SseParser {
  private buffer = '';
  private data: string[] = [];

  /** Feeds text; returns the data of every event completed by it. `end` flushes a final unterminated event. */
  push(chunk: string, end = false): string[] {
    this.buffer += chunk;
    const events: string[] = [];
    // A trailing "\r" may be the first half of "\r\n": wait for the next chunk.
    let limit = this.buffer.length;
    if (!end && this.buffer.endsWith('\r')) limit--;
    let start = 0;
    const lineEnd = /\r\n|\r|\n/g;
    let m: RegExpExecArray | null;
    while ((m = lineEnd.exec(this.buffer)) !== null && m.index < limit) {
      this.line(this.buffer.slice(start, m.index), events);
      start = m.index + m[0].length;
    }
    this.buffer = this.buffer.slice(start);
    if (end) {
      if (this.buffer !== '') this.line(this.buffer, events);
      this.buffer = '';
      this.line('', events);
    }
    return events;
  }

  private line(line: string, events: string[]): void {
    if (line === '') {
      if (this.data.length) events.push(this.data.join('\n'));
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
  }
}

function buildMessages(req: LlmRequest, systemPrompt: string): ChatMessage[] {
  let clock: string;
  try {
    clock = `The user's local time is ${formatLocalTime(req.now, req.timeZone)} (ISO ${isoLocalTime(req.now, req.timeZone)}); their time zone is ${req.timeZone}. Use it whenever time or date matters.`;
  } catch {
    throw new LlmError(`unknown time zone "${req.timeZone}"`, 'INVALID_ARGUMENT');
  }
  const messages: ChatMessage[] = [{ role: 'system', content: `${systemPrompt}\n${clock}` }];
  for (const h of req.history) messages.push({ role: h.author === 'client' ? 'user' : 'assistant', content: h.text });
  const turn = describeTurn(req);
  // Vision: the keyframe as an image_url part (a data URL) beside the words.
  const content: ChatMessage['content'] = req.image
    ? [{ type: 'text', text: turn }, { type: 'image_url', image_url: { url: `data:${req.image.mimeType};base64,${req.image.data.toString('base64')}` } }]
    : turn;
  messages.push({ role: 'user', content });
  return messages;
}

/**
 * What was said in a voice or video message is the user's text. Otherwise
 * the model sees media as words: kind, type, size, duration.
 */
function describeTurn(req: LlmRequest): string {
  if (req.kind === 'text' || !req.media) return req.text ?? '';
  if (req.transcript) {
    // What the model should know beside the words: where they were said, and what of the recording was not heard.
    const notes = [req.kind === 'video' && req.image ? 'said in a video; its first frame is attached' : undefined, req.hearingNote].filter(Boolean);
    return notes.length > 0 ? `${req.transcript}\n[${notes.join('; ')}]` : req.transcript;
  }
  if (req.image) return '[The user sent a video without speech; its first frame is attached. Describe what you see and ask what they would like.]';
  const { mimeType, sizeBytes, durationMs } = req.media;
  const what = { audio: 'a voice message', video: 'a video', image: 'an image', text: 'a message' }[req.kind];
  const length = durationMs !== undefined ? `, ${(durationMs / 1000).toFixed(1)} seconds long` : '';
  return (
    `[The user sent ${what} (${mimeType}, ${sizeBytes} bytes${length}). ` +
    `You cannot see or hear its content: acknowledge it briefly and invite them to describe it in text.]`
  );
}

async function httpError(response: Response, signal: AbortSignal): Promise<LlmError> {
  let detail = '';
  try {
    const body = await raceAbort(response.text(), signal);
    try {
      detail = errorMessage(JSON.parse(body));
    } catch {
      detail = body;
    }
  } catch (err) {
    if (signal.aborted) throw err; // the caller maps it to abort / deadline
  }
  detail = detail.trim().slice(0, MAX_ERROR_TEXT);
  const msg = `LLM server answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`;
  const s = response.status;
  if (s === 429) return new LlmError(msg, 'RESOURCE_EXHAUSTED', true);
  if (s === 408) return new LlmError(msg, 'DEADLINE_EXCEEDED', true);
  if (s >= 500) return new LlmError(msg, 'UNAVAILABLE', true);
  // 400/404/413/422: the request (prompt, model, size) was refused; 401/403 and
  // the rest are our configuration's fault, not the user's.
  if (s === 400 || s === 404 || s === 413 || s === 422) return new LlmError(msg, 'INVALID_ARGUMENT');
  return new LlmError(msg, 'INTERNAL');
}

/** OpenAI: {"error":{"message"}}; others: {"error":"..."} or {"message"} or {"detail"}. */
function errorMessage(body: any): string {
  const e = body?.error ?? body;
  if (typeof e === 'string') return e;
  for (const v of [e?.message, body?.message, body?.detail]) if (typeof v === 'string') return v;
  return JSON.stringify(body);
}

/** fetch's "fetch failed" hides the useful part (ECONNREFUSED, ENOTFOUND...) in its cause. */
function describeNetworkError(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } } | undefined;
  const cause = e?.cause;
  return [e?.message ?? String(err), cause?.code ?? cause?.message].filter(Boolean).join(': ');
}

function isTimeout(reason: unknown): boolean {
  return (reason as { name?: string } | undefined)?.name === 'TimeoutError';
}

/** Settles with `p`, or rejects as soon as `signal` aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}
