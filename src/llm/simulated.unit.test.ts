import { createLlmProvider } from './factory';
import { OpenAiCompatibleLlm } from './openai';
import type { InputKind } from '../domain/media-kind';
import { LlmError, LlmRequest } from './port';
import { SimulatedLlm } from './simulated';

const now = new Date('2026-11-22T13:03:05.123Z');

function request(kind: InputKind, extra: Partial<LlmRequest> = {}): LlmRequest {
  const media = kind === 'text' ? undefined : { mimeType: `${kind}/x-test`, sizeBytes: 48_000, durationMs: kind === 'image' ? undefined : 4_200 };
  return { messageId: 'm1', kind, text: kind === 'text' ? 'How do I plan my week?' : undefined, media, timeZone: 'Asia/Kolkata', now, history: [], ...extra };
}

/** A sleep that resolves at once (or rejects if aborted) and records what was asked. */
function fakeSleep() {
  const calls: number[] = [];
  const sleep = async (ms: number, signal: AbortSignal) => {
    calls.push(ms);
    if (signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
  };
  return { calls, sleep };
}

const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('SimulatedLlm', () => {
  const ranges: [InputKind, number, number][] = [['text', 0, 1000], ['audio', 1000, 2000], ['video', 2000, 3000], ['image', 1000, 2000]];

  it.each(ranges)('%s waits within [%d, %d] ms, scaled', async (kind, min, max) => {
    for (const [r, scale] of [[0, 1], [0.5, 1], [0.999, 1], [0.5, 0.1], [0.5, 2]] as const) {
      const { calls, sleep } = fakeSleep();
      const llm = new SimulatedLlm({ delayScale: scale, random: () => r, sleep });
      await llm.generate(request(kind), { signal: new AbortController().signal, onDelta: () => {} });
      const expected = (min + (max - min) * r) * scale;
      if (expected === 0) expect(calls).toEqual([]);
      else expect(total(calls)).toBeCloseTo(expected, 6);
      expect(total(calls)).toBeGreaterThanOrEqual(min * scale - 1e-6);
      expect(total(calls)).toBeLessThanOrEqual(max * scale + 1e-6);
    }
  });

  it('streams word deltas spread over the delay that concatenate to the reply', async () => {
    const { calls, sleep } = fakeSleep();
    const deltas: string[] = [];
    const llm = new SimulatedLlm({ delayScale: 1, random: () => 0.5, sleep });
    const reply = await llm.generate(request('video'), { signal: new AbortController().signal, onDelta: (d) => deltas.push(d) });
    expect(reply.model).toBe('simulated');
    expect(deltas.join('')).toBe(reply.text);
    expect(deltas.length).toBeGreaterThan(5);
    for (const d of deltas) expect(d.trim()).not.toMatch(/\s/); // one word each
    expect(calls.length).toBeGreaterThan(1); // spread, not one wait then a burst
  });

  it('with delayScale 0 never sleeps and emits the whole reply as one delta, synchronously', () => {
    const sleep = jest.fn();
    const deltas: string[] = [];
    const llm = new SimulatedLlm({ delayScale: 0, sleep });
    const p = llm.generate(request('video'), { signal: new AbortController().signal, onDelta: (d) => deltas.push(d) });
    expect(deltas.length).toBe(1); // before any await
    expect(sleep).not.toHaveBeenCalled();
    return expect(p).resolves.toEqual({ text: deltas.join(''), model: 'simulated' });
  });

  it("speaks the client's local time and reflects the input", async () => {
    const llm = new SimulatedLlm({ delayScale: 0 });
    const opts = { signal: new AbortController().signal, onDelta: () => {} };
    const text = await llm.generate(request('text'), opts);
    expect(text.text).toContain('Sunday 22 November 2026, 18:33 (Asia/Kolkata, UTC+05:30)');
    expect(text.text).toContain('How do I plan my week?');
    const audio = await llm.generate(request('audio', { timeZone: 'Europe/Paris' }), opts);
    expect(audio.text).toContain('14:03 (Europe/Paris, UTC+01:00)');
    expect(audio.text).toMatch(/voice message \(audio\/x-test, 46\.9 KiB, 4\.2 s\)/);
    const image = await llm.generate(request('image'), opts);
    expect(image.text).toMatch(/image \(image\/x-test, 46\.9 KiB\)/);
    // Deterministic for the same request.
    expect((await llm.generate(request('text'), opts)).text).toBe(text.text);
  });

  it('answers what a voice or video message said, and says plainly when it heard nothing or could not listen', async () => {
    const llm = new SimulatedLlm({ delayScale: 0 });
    const opts = { signal: new AbortController().signal, onDelta: () => {} };
    const said = await llm.generate(request('audio', { transcript: 'what time is it in tokyo' }), opts);
    expect(said.text).toContain('You said: "what time is it in tokyo"');
    const video = await llm.generate(request('video', { transcript: 'look at this' }), opts);
    expect(video.text).toContain('You said: "look at this"');
    const silent = await llm.generate(request('audio', { transcript: '' }), opts);
    expect(silent.text).toMatch(/could not make out any words in your voice message \(audio\/x-test/);
    const deaf = await llm.generate(request('audio', { hearingNote: 'no speech recognizer is installed' }), opts);
    expect(deaf.text).toMatch(/cannot listen to it: no speech recognizer is installed/);
    const part = await llm.generate(request('audio', { transcript: 'first words', hearingNote: 'only its first 120 seconds were heard' }), opts);
    expect(part.text).toContain('You said: "first words". That was your voice message (audio/x-test, 46.9 KiB, 4.2 s) (only its first 120 seconds were heard).');
  });

  it('rejects an unknown zone with INVALID_ARGUMENT', async () => {
    const llm = new SimulatedLlm({ delayScale: 0 });
    await expect(llm.generate(request('text', { timeZone: 'Mars/Olympus' }), { signal: new AbortController().signal, onDelta: () => {} }))
      .rejects.toMatchObject({ name: 'LlmError', code: 'INVALID_ARGUMENT' });
  });

  it('aborts promptly with real timers, and emits nothing after the abort', async () => {
    const llm = new SimulatedLlm({ delayScale: 1, random: () => 0.99 }); // ~3 s video
    const ac = new AbortController();
    const deltas: string[] = [];
    const started = Date.now();
    const p = llm.generate(request('video'), { signal: ac.signal, onDelta: (d) => deltas.push(d) });
    setTimeout(() => ac.abort(), 100);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(1000);
    const seen = deltas.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(deltas.length).toBe(seen);
  });

  it('rejects at once when already aborted, even with delayScale 0', async () => {
    const llm = new SimulatedLlm({ delayScale: 0 });
    const onDelta = jest.fn();
    await expect(llm.generate(request('text'), { signal: AbortSignal.abort(), onDelta })).rejects.toMatchObject({ name: 'AbortError' });
    expect(onDelta).not.toHaveBeenCalled();
  });

  it('stops even if an injected sleep ignores the signal', async () => {
    const ac = new AbortController();
    const llm = new SimulatedLlm({ delayScale: 1, random: () => 0.5, sleep: async () => ac.abort() });
    await expect(llm.generate(request('text'), { signal: ac.signal, onDelta: () => {} })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('refuses a negative delayScale', () => {
    expect(() => new SimulatedLlm({ delayScale: -1 })).toThrow(/delayScale/);
  });
});

describe('createLlmProvider', () => {
  it('builds the simulated provider by default settings', () => {
    expect(createLlmProvider({ provider: 'simulated', timeoutMs: 1000, delayScale: 0 })).toBeInstanceOf(SimulatedLlm);
  });
  it('builds the OpenAI-compatible provider from a base URL', () => {
    const llm = createLlmProvider({ provider: 'openai', baseUrl: 'http://127.0.0.1:9/v1/', model: 'm', timeoutMs: 1000, delayScale: 1 });
    expect(llm).toBeInstanceOf(OpenAiCompatibleLlm);
    expect(llm.name).toBe('openai');
  });
  it('explains a missing base URL (its form is checked by the configuration)', () => {
    expect(() => createLlmProvider({ provider: 'openai', timeoutMs: 1000, delayScale: 1 })).toThrow(/LLM_BASE_URL/);
  });
  it('keeps LlmError importable for callers', () => {
    expect(new LlmError('x', 'INTERNAL').retryable).toBe(false);
  });
});
