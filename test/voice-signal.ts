import { createHash } from 'node:crypto';
import { parseWavHeader, type WavHeader } from '../src/domain/media-validation';
import { encodeWav } from '../src/media/wav';

/**
 * A TEST SIGNAL, NOT SPEECH: a 16-bit PCM mono WAV of tones whose melody is
 * derived from the text (one tone per syllable, pauses between words), 0.6–6 s.
 * Tests use it as a well-formed upload that no recognizer understands (it
 * lives with the tests: the server never makes one; voice replies come from
 * the speech synthesizer, src/speech, or there is none).
 */
export const MIN_VOICE_MS = 600;
export const MAX_VOICE_MS = 6000;

export interface Voice {
  bytes: Buffer;
  durationMs: number;
  mimeType: 'audio/wav';
}

interface Note {
  ms: number;
  /** Fundamental at start and end (Hz); 0 = silence. */
  f0: number;
  f1: number;
  amp: number;
  /** Weights of the 2nd and 3rd harmonics: the "vowel colour". */
  h2: number;
  h3: number;
  /** Length of a consonant noise burst at the start (ms). */
  noiseMs: number;
}

export function synthesizeVoice(text: string, opts: { sampleRate?: number; seed?: string } = {}): Voice {
  const sampleRate = Math.round(Math.min(48000, Math.max(8000, opts.sampleRate ?? 16000)));
  const rand = prng(`${opts.seed ?? ''}\0${text}`);
  const notes = plan(text, rand);
  const samples = render(notes, sampleRate, rand);
  const bytes = encodeWav(samples, sampleRate);
  return { bytes, durationMs: Math.round((samples.length * 1000) / sampleRate), mimeType: 'audio/wav' };
}

/** Parse a WAV header; throws when the bytes are not a WAV with fmt and data chunks. */
export function parseWav(bytes: Uint8Array): WavHeader {
  const header = parseWavHeader(bytes);
  if (!header) throw new Error('not a valid WAV file');
  return header;
}

/** Turn text into notes: syllables of words, pauses at spaces and punctuation. */
function plan(text: string, rand: () => number): Note[] {
  const tokens = text.normalize('NFKD').toLowerCase().match(/[\p{L}\p{N}']+|[.,;:!?]/gu) ?? [];
  const base = 110 + rand() * 110; // the speaker's pitch: 110–220 Hz
  const notes: Note[] = [];
  let total = 0;
  const push = (n: Note) => { notes.push(n); total += n.ms; };
  const silence = (ms: number) => push({ ms, f0: 0, f1: 0, amp: 0, h2: 0, h3: 0, noiseMs: 0 });

  silence(60);
  for (let i = 0; i < tokens.length && total < MAX_VOICE_MS; i++) {
    const token = tokens[i]!;
    if (/^[.!?]$/.test(token)) { silence(220); continue; }
    if (/^[,;:]$/.test(token)) { silence(120); continue; }
    const syllables = token.match(/[^aeiouy]*[aeiouy]+(?:[^aeiouy]*$)?/g) ?? chunk(token, 3);
    const question = tokens[i + 1] === '?'; // rising tone on the word before a question mark
    syllables.slice(0, 5).forEach((syl, s) => {
      const h = hash32(syl);
      const stressed = s === 0 || (h & 7) === 0;
      const f0 = base * (0.85 + ((h >>> 3) % 40) / 100) * (stressed ? 1.12 : 1);
      const glide = question && s === Math.min(syllables.length, 5) - 1 ? 1.25 : 0.92 + ((h >>> 9) % 10) / 100;
      const vowel = (syl.match(/[aeiouy]/) ?? ['a'])[0]!;
      const colour = 'aeiouy'.indexOf(vowel);
      push({
        ms: Math.min(260, 90 + syl.length * 22 + (stressed ? 30 : 0)),
        f0,
        f1: f0 * glide,
        amp: (stressed ? 0.9 : 0.7) + rand() * 0.1,
        h2: 0.15 + colour * 0.07,
        h3: 0.35 - colour * 0.05,
        noiseMs: /^[^aeiouy]/.test(syl) ? 12 + (h % 14) : 0,
      });
      silence(15 + Math.floor(rand() * 20));
    });
    silence(45 + Math.floor(rand() * 40));
  }
  if (notes.length <= 2) push({ ms: 400, f0: base, f1: base * 0.9, amp: 0.8, h2: 0.3, h3: 0.2, noiseMs: 0 }); // "hm"

  // Fit into [MIN_VOICE_MS, MAX_VOICE_MS]: stretch short utterances, cut long ones.
  const scale = total < MIN_VOICE_MS ? MIN_VOICE_MS / total : 1;
  const out: Note[] = [];
  let used = 0;
  for (const n of notes) {
    const ms = Math.min(n.ms * scale, MAX_VOICE_MS - used);
    if (ms <= 0) break;
    out.push({ ...n, ms });
    used += ms;
  }
  return out;
}

function render(notes: Note[], sampleRate: number, rand: () => number): Float32Array {
  const total = notes.reduce((s, n) => s + Math.round((n.ms * sampleRate) / 1000), 0);
  const out = new Float32Array(total);
  let at = 0;
  let phase = 0;
  const vibrato = vibratoTable(sampleRate);
  for (const n of notes) {
    const len = Math.round((n.ms * sampleRate) / 1000);
    if (n.amp > 0) {
      const attack = Math.min(len / 4, sampleRate * 0.015);
      const noiseLen = (n.noiseMs * sampleRate) / 1000;
      for (let i = 0; i < len; i++) {
        const t = i / len;
        const f = (n.f0 + (n.f1 - n.f0) * t) * vibrato[i % vibrato.length]!;
        phase += (2 * Math.PI * f) / sampleRate;
        const env = i < attack ? i / attack : Math.pow(1 - (i - attack) / (len - attack), 0.6);
        // sin 2x = 2 sin x cos x, sin 3x = sin x (3 - 4 sin² x): two trig calls a sample instead of three.
        const s1 = Math.sin(phase);
        const voiced = s1 + n.h2 * 2 * s1 * Math.cos(phase) + n.h3 * s1 * (3 - 4 * s1 * s1);
        const noise = i < noiseLen ? (rand() * 2 - 1) * 0.5 * (1 - i / noiseLen) : 0;
        out[at + i] = (n.amp * env * voiced) / (1 + n.h2 + n.h3) + noise;
      }
    }
    at += len;
  }
  return out;
}

/** The 5.5 Hz vibrato factor for two seconds (a whole number of periods), made once per sample rate. */
const vibratoTables = new Map<number, Float64Array>();
function vibratoTable(sampleRate: number): Float64Array {
  let table = vibratoTables.get(sampleRate);
  if (!table) {
    table = Float64Array.from({ length: 2 * sampleRate }, (_, i) => 1 + 0.02 * Math.sin((2 * Math.PI * 5.5 * i) / sampleRate));
    vibratoTables.set(sampleRate, table);
  }
  return table;
}

/** A 16-bit mono PCM WAV around samples already encoded (s16le), e.g. a synthesizer's output. */
function chunk(s: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += n) out.push(s.slice(i, i + n));
  return out;
}

function hash32(s: string): number {
  return createHash('sha256').update(s).digest().readUInt32LE(0);
}

/** Deterministic PRNG (mulberry32) seeded from a string. */
function prng(seed: string): () => number {
  let a = hash32(seed);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
