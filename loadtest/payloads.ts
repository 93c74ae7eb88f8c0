import { encodeWav } from '../src/media/wav';
// The messages a simulated user sends, sized like the reference load test's
// uploads (small phone-recorded clips):
//   text  — one sentence, 20–120 characters;
//   audio — a WAV, 16 kHz mono 16-bit PCM, 1–2 s of a voice-like tone:
//           32–64 KB (+ 44-byte header);
//   video — an MP4 container (ftyp + free + mdat boxes), 100–200 KB; the mdat
//           holds random bytes (the server checks the container by its magic
//           bytes and the simulated model does not decode frames).
// A few variants of each are built once per process and reused, so building
// payloads costs the load generator nothing while it runs.
import { randomBytes } from 'node:crypto';
import type { UserMessage } from '../src/gen/chatflow/v1/chat';

export type Kind = 'text' | 'audio' | 'video';
export const KINDS: readonly Kind[] = ['text', 'audio', 'video'];

export const PAYLOAD_SIZES = {
  text: { minChars: 20, maxChars: 120 },
  audio: { sampleRate: 16_000, minSeconds: 1, maxSeconds: 2, bytesPerSecond: 32_000 },
  video: { minBytes: 100 * 1024, maxBytes: 200 * 1024 },
} as const;

/** A RIFF/WAVE file of 16-bit mono PCM: a tone with a slow amplitude envelope (speech-like loudness). */
export function wav(seconds: number, sampleRate = PAYLOAD_SIZES.audio.sampleRate, hz = 180): Buffer {
  const samples = new Float32Array(Math.round(seconds * sampleRate));
  for (let i = 0; i < samples.length; i++) {
    const t = i / sampleRate;
    const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * 3 * t);
    samples[i] = 0.45 * envelope * Math.sin(2 * Math.PI * hz * t);
  }
  return encodeWav(samples, sampleRate);
}

function box(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.write(type, 4, 'ascii');
  return Buffer.concat([head, body]);
}

/** An MP4 container of `bytes` total: ftyp (isom), free, mdat of random bytes. */
export function mp4(bytes: number): Buffer {
  const ftyp = box('ftyp', Buffer.concat([Buffer.from('isom', 'ascii'), Buffer.from([0, 0, 2, 0]), Buffer.from('isomiso2avc1mp41', 'ascii')]));
  const free = box('free', Buffer.alloc(0));
  const mdatBody = Math.max(0, bytes - ftyp.length - free.length - 8);
  return Buffer.concat([ftyp, free, box('mdat', randomBytes(mdatBody))]);
}

const WORDS = 'hello what time is it please tell me a short story about the weather today and the news in my city thanks can you help with this question'.split(' ');

export function sentence(random: () => number): string {
  const target = PAYLOAD_SIZES.text.minChars + Math.floor(random() * (PAYLOAD_SIZES.text.maxChars - PAYLOAD_SIZES.text.minChars));
  let s = '';
  while (s.length < target) s += (s ? ' ' : '') + WORDS[Math.floor(random() * WORDS.length)];
  return s.slice(0, PAYLOAD_SIZES.text.maxChars);
}

/** Prebuilt media variants; `message()` picks one per send. */
export class Payloads {
  private readonly audio: Buffer[];
  private readonly video: Buffer[];

  constructor(private readonly random: () => number = Math.random, variants = 6) {
    const a = PAYLOAD_SIZES.audio, v = PAYLOAD_SIZES.video;
    this.audio = Array.from({ length: variants }, (_, i) => wav(a.minSeconds + ((a.maxSeconds - a.minSeconds) * i) / Math.max(1, variants - 1)));
    this.video = Array.from({ length: variants }, (_, i) => mp4(Math.round(v.minBytes + ((v.maxBytes - v.minBytes) * i) / Math.max(1, variants - 1))));
  }

  /** A random kind, uniformly (as the reference: "text, audio or video chosen at random"). */
  kind(): Kind {
    return KINDS[Math.floor(this.random() * KINDS.length)]!;
  }

  content(kind: Kind): UserMessage['content'] {
    switch (kind) {
      case 'text':
        return { $case: 'text', text: sentence(this.random) };
      case 'audio': {
        const data = this.pick(this.audio);
        return { $case: 'audio', audio: { mimeType: 'audio/wav', data, url: '', sizeBytes: data.length, durationMs: 0 } };
      }
      case 'video': {
        const data = this.pick(this.video);
        return { $case: 'video', video: { mimeType: 'video/mp4', data, url: '', sizeBytes: data.length, durationMs: 0 } };
      }
      default: {
        const never: never = kind;
        throw new Error(`unknown kind ${String(never)}`);
      }
    }
  }

  private pick(xs: Buffer[]): Buffer {
    return xs[Math.floor(this.random() * xs.length)]!;
  }
}
