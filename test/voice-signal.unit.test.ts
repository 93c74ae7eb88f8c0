import { validateMedia } from '../src/domain/media-validation';
import { MAX_VOICE_MS, MIN_VOICE_MS, parseWav, synthesizeVoice } from './voice-signal';

describe('synthesizeVoice', () => {
  const text = 'It is 14:05 in Paris. How can I help you today?';

  it('produces a 16-bit PCM mono WAV whose header matches its data', () => {
    const v = synthesizeVoice(text, { seed: 'r1' });
    expect(v.mimeType).toBe('audio/wav');
    expect(v.bytes.toString('ascii', 0, 4)).toBe('RIFF');
    expect(v.bytes.toString('ascii', 8, 12)).toBe('WAVE');
    expect(v.bytes.readUInt32LE(4)).toBe(v.bytes.length - 8);
    const h = parseWav(v.bytes);
    expect(h).toMatchObject({ sampleRate: 16000, channels: 1, bitsPerSample: 16, dataOffset: 44 });
    expect(h.dataLength).toBe(v.bytes.length - 44);
    expect(h.dataLength % 2).toBe(0);
    expect(h.durationMs).toBe(v.durationMs);
    expect(v.durationMs).toBeGreaterThanOrEqual(MIN_VOICE_MS);
    expect(v.durationMs).toBeLessThanOrEqual(MAX_VOICE_MS);
    expect(validateMedia({ kind: 'audio', mimeType: v.mimeType, data: v.bytes, maxBytes: 8 << 20 })).toMatchObject({ ok: true, durationMs: v.durationMs });
  });

  it('is audible: real signal, not silence, and never clipped flat', () => {
    const v = synthesizeVoice(text);
    const samples = Array.from({ length: (v.bytes.length - 44) / 2 }, (_, i) => v.bytes.readInt16LE(44 + i * 2));
    const rms = Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length);
    expect(rms).toBeGreaterThan(1000);
    expect(Math.max(...samples.map(Math.abs))).toBeLessThan(32767);
    expect(new Set(samples).size).toBeGreaterThan(1000);
  });

  it('scales with text length within 0.6–6 s', () => {
    const durations = ['', 'Hi', 'Hello there, nice to meet you.', 'word '.repeat(400)].map((t) => synthesizeVoice(t).durationMs);
    expect(durations[0]).toBe(MIN_VOICE_MS);
    expect(durations[1]).toBe(MIN_VOICE_MS);
    expect(durations[2]).toBeGreaterThan(durations[1]!);
    expect(durations[3]).toBe(MAX_VOICE_MS);
  });

  it('is deterministic per text and seed, and differs otherwise', () => {
    const a = synthesizeVoice('Good morning', { seed: 's' }).bytes;
    expect(synthesizeVoice('Good morning', { seed: 's' }).bytes.equals(a)).toBe(true);
    expect(synthesizeVoice('Good evening', { seed: 's' }).bytes.equals(a)).toBe(false);
    expect(synthesizeVoice('Good morning', { seed: 't' }).bytes.equals(a)).toBe(false);
  });

  it('honours the sample rate (clamped to 8–48 kHz) and handles any script', () => {
    expect(parseWav(synthesizeVoice('hello', { sampleRate: 8000 }).bytes).sampleRate).toBe(8000);
    expect(parseWav(synthesizeVoice('hello', { sampleRate: 1 }).bytes).sampleRate).toBe(8000);
    expect(parseWav(synthesizeVoice('hello', { sampleRate: 96000 }).bytes).sampleRate).toBe(48000);
    expect(synthesizeVoice('こんにちは 世界 🙂').durationMs).toBeGreaterThanOrEqual(MIN_VOICE_MS);
  });

  it('parseWav refuses non-WAV bytes', () => {
    expect(() => parseWav(Buffer.from('not a wav at all'))).toThrow(/not a valid WAV/);
  });
});
