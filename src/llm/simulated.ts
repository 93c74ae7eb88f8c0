// The default provider: no network, a plausible reply, and the processing time
// of the reference implementations (DESIGN.md "Simulated processing time"), so
// load tests exercise the 500-message budget with realistic holding times.
import { fnv1a } from '../domain/fnv1a';
import { formatBytes } from '../domain/format-bytes';
import { formatLocalTime } from '../domain/local-time';
import type { InputKind } from '../domain/media-kind';
import { LlmCallOptions, LlmError, LlmProvider, LlmReply, LlmRequest } from './port';

/** Processing time per input kind, in seconds: [min, max). Image is not in the spec; audio's range is reused. */
export const SIMULATED_DELAY_SECONDS: Record<InputKind, readonly [number, number]> = {
  text: [0, 1],
  audio: [1, 2],
  video: [2, 3],
  image: [1, 2],
};

/** Below this, splitting the wait further only costs timers (500 concurrent replies × every word). */
const MIN_STEP_MS = 25;

export interface SimulatedLlmOptions {
  /** Multiplies the processing times; 0 = reply at once (benchmarks). */
  delayScale: number;
  /** Uniform [0, 1) source; injectable for tests. */
  random?: () => number;
  /** Waits ms or rejects when signal aborts; injectable for tests. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** What every provider rejects with when the caller aborts (not an LlmError: nothing failed). */
export function abortError(signal: AbortSignal): Error {
  const err = new Error('LLM call aborted', { cause: signal.reason });
  err.name = 'AbortError';
  return err;
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class SimulatedLlm implements LlmProvider {
  readonly name = 'simulated';
  readonly usesHistory = false;
  private readonly delayScale: number;
  private readonly random: () => number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  constructor(opts: SimulatedLlmOptions) {
    if (!(opts.delayScale >= 0) || !Number.isFinite(opts.delayScale)) {
      throw new Error(`SimulatedLlm: delayScale must be a finite number >= 0, got ${opts.delayScale}`);
    }
    this.delayScale = opts.delayScale;
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? abortableSleep;
  }

  /** Total processing time for a kind, in ms. */
  delayMs(kind: InputKind): number {
    const [min, max] = SIMULATED_DELAY_SECONDS[kind] ?? SIMULATED_DELAY_SECONDS.text;
    const r = Math.min(Math.max(this.random(), 0), 1);
    return (min + (max - min) * r) * 1000 * this.delayScale;
  }

  generate(request: LlmRequest, options: LlmCallOptions): Promise<LlmReply> {
    const { signal, onDelta } = options;
    if (signal.aborted) return Promise.reject(abortError(signal));
    let text: string;
    try {
      text = composeReply(request);
    } catch (err) {
      return Promise.reject(err);
    }
    const reply: LlmReply = { text, model: 'simulated' };
    const total = this.delayMs(request.kind);
    if (total <= 0) {
      // Benchmarks: no timer at all. A model with nothing to wait for has its whole answer at once: one delta,
      // before generate() returns (a word at a time cost the worker ~30 strings and calls per reply, issue 15).
      onDelta(text);
      return Promise.resolve(reply);
    }
    // Leading-space words: the deltas concatenate to exactly `text`.
    const words = text.match(/\s*\S+/g) ?? [text];
    return this.stream(words, total, options).then(() => reply);
  }

  /** Spreads the words evenly over `total` ms, grouping them so a step is >= MIN_STEP_MS. */
  private async stream(words: string[], total: number, { signal, onDelta }: LlmCallOptions): Promise<void> {
    const steps = Math.max(1, Math.min(words.length, Math.floor(total / MIN_STEP_MS)));
    let next = 0;
    for (let step = 1; step <= steps; step++) {
      await this.sleep(total / steps, signal);
      // An injected sleep may ignore the signal; never emit after an abort.
      if (signal.aborted) throw abortError(signal);
      const end = Math.round((words.length * step) / steps);
      for (; next < end; next++) onDelta(words[next]);
    }
  }
}

// ---------------------------------------------------------------------------
// Reply text: deterministic for a given request, so tests and replays agree.

function composeReply(req: LlmRequest): string {
  let localTime: string;
  try {
    localTime = formatLocalTime(req.now, req.timeZone);
  } catch {
    throw new LlmError(`unknown time zone "${req.timeZone}"`, 'INVALID_ARGUMENT');
  }
  const turn = req.history.filter((h) => h.author === 'client').length + 1;
  const opener = turn === 1 ? 'Hello!' : `Thanks, that is message ${turn} of our conversation.`;
  const clock = `For you it is ${localTime}.`;

  if (req.kind === 'text' || !req.media) {
    const raw = (req.text ?? '').trim().replace(/\s+/g, ' ');
    if (!raw) return `${opener} Your message was empty. ${clock} What would you like to talk about?`;
    const wordCount = raw.split(' ').length;
    const quote = raw.length > 160 ? `${raw.slice(0, 157)}...` : raw;
    const pick = [
      'Here is my take: break it into small steps and start with the one you can check fastest.',
      'A good next step would be to write down what "done" looks like, then work back from it.',
      'I would start by listing what you already know, then what is still uncertain.',
    ][fnv1a(raw) % 3]; // a stable, cheap choice among phrasings
    const question = raw.endsWith('?') ? 'You asked' : 'You wrote';
    return `${opener} ${question}: "${quote}" (${wordCount} word${wordCount === 1 ? '' : 's'}). ${pick} ${clock}`;
  }

  const { mimeType, sizeBytes, durationMs } = req.media;
  const what = { audio: 'voice message', video: 'video', image: 'image', text: 'message' }[req.kind];
  const facts = [mimeType, formatBytes(sizeBytes)];
  if (durationMs !== undefined) facts.push(formatDuration(durationMs));
  const received = `your ${what} (${facts.join(', ')})`;
  if (req.kind === 'image') return `${opener} I received ${received}. Tell me what you would like to know about it. ${clock}`;
  // Voice and video: answer what was said.
  const said = req.transcript?.trim();
  const part = req.hearingNote ? ` (${req.hearingNote})` : '';
  if (said) return `${opener} You said: "${said.length > 300 ? `${said.slice(0, 297)}...` : said}". That was ${received}${part}. ${clock}`;
  if (said === '') return `${opener} I could not make out any words in ${received}${part}. Could you say it again, or type it? ${clock}`;
  return `${opener} I received ${received}, but I cannot listen to it: ${req.hearingNote ?? 'no speech recognizer is configured'}. ${clock}`;
}

function formatDuration(ms: number): string {
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}


