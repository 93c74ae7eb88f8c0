import { detectContainer, normalizeMimeType, parseWavHeader, validateMedia } from './media-validation';
import type { UploadKind } from './media-kind';

const MiB = 1024 * 1024;
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
const bytes = (...parts: Array<number[] | string>) => Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? ascii(p) : p)));
const u32 = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
const u16 = (n: number) => [n & 255, (n >>> 8) & 255];

/** A minimal PCM WAV: 44-byte header plus `dataBytes` of silence. */
function wav(opts: { sampleRate?: number; channels?: number; bits?: number; dataBytes?: number; declaredData?: number } = {}) {
  const { sampleRate = 8000, channels = 1, bits = 16, dataBytes = 16000 } = opts;
  const blockAlign = (channels * bits) / 8;
  return bytes(
    'RIFF', u32(36 + dataBytes), 'WAVE',
    'fmt ', u32(16), u16(1), u16(channels), u32(sampleRate), u32(sampleRate * blockAlign), u16(blockAlign), u16(bits),
    'data', u32(opts.declaredData ?? dataBytes), new Array(dataBytes).fill(0),
  );
}

const SAMPLES: Record<string, Uint8Array> = {
  wav: wav(),
  mp3id3: bytes('ID3', [4, 0, 0, 0, 0, 0, 0]),
  mp3sync: bytes([0xff, 0xfb, 0x90, 0x64]),
  ogg: bytes('OggS', [0, 2, 0, 0]),
  flac: bytes('fLaC', [0, 0, 0, 34]),
  webm: bytes([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x82, 0x84], 'webm'),
  mkv: bytes([0x1a, 0x45, 0xdf, 0xa3, 0xa3, 0x42, 0x82, 0x88], 'matroska'),
  mp4: bytes(u32(0x18).reverse(), 'ftypisom', [0, 0, 2, 0]),
  m4a: bytes(u32(0x18).reverse(), 'ftypM4A ', [0, 0, 0, 0]),
  mov: bytes(u32(0x14).reverse(), 'ftypqt  ', [0, 0, 0, 0]),
  aac: bytes([0xff, 0xf1, 0x50, 0x80, 0x01, 0x7f, 0xfc]),
  avi: bytes('RIFF', u32(4), 'AVI LIST'),
  png: bytes([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13], 'IHDR'),
  jpeg: bytes([0xff, 0xd8, 0xff, 0xe0, 0, 16], 'JFIF'),
  gif: bytes('GIF89a', [1, 0, 1, 0]),
  webp: bytes('RIFF', u32(4), 'WEBPVP8 '),
};

const ok = (kind: UploadKind, mimeType: string, data: Uint8Array, maxBytes = 8 * MiB) => validateMedia({ kind, mimeType, data, maxBytes });

describe('detectContainer', () => {
  it.each([
    ['wav', 'wav'], ['mp3id3', 'mp3'], ['mp3sync', 'mp3'], ['ogg', 'ogg'], ['flac', 'flac'], ['webm', 'webm'],
    ['mkv', 'matroska'], ['mp4', 'mp4'], ['m4a', 'mp4'], ['mov', 'mov'], ['aac', 'aac'], ['avi', 'avi'],
    ['png', 'png'], ['jpeg', 'jpeg'], ['gif', 'gif'], ['webp', 'webp'],
  ])('%s → %s', (sample, container) => {
    expect(detectContainer(SAMPLES[sample]!)).toBe(container);
  });

  it('recognises nothing in text, short input, other RIFF types or reserved MPEG headers', () => {
    expect(detectContainer(bytes('hello world'))).toBeNull();
    expect(detectContainer(bytes([0xff]))).toBeNull();
    expect(detectContainer(bytes('RIFF', u32(4), 'CDXA'))).toBeNull();
    expect(detectContainer(bytes([0xff, 0xeb, 0x90, 0x64]))).toBeNull(); // MPEG version "01" is reserved
    expect(detectContainer(bytes([0xff, 0xe1, 0x50, 0x80]))).toBeNull(); // layer 00 without a full ADTS sync
  });
});

describe('validateMedia: accepted uploads', () => {
  it.each([
    ['audio', 'audio/wav', 'wav'], ['audio', 'audio/x-wav', 'wav'], ['audio', 'audio/wave', 'wav'],
    ['audio', 'audio/mpeg', 'mp3id3'], ['audio', 'audio/mpeg', 'mp3sync'], ['audio', 'audio/ogg', 'ogg'],
    ['audio', 'audio/flac', 'flac'], ['audio', 'audio/webm', 'webm'], ['audio', 'audio/mp4', 'm4a'], ['audio', 'audio/aac', 'aac'],
    ['video', 'video/mp4', 'mp4'], ['video', 'video/webm', 'webm'], ['video', 'video/x-matroska', 'mkv'],
    ['video', 'video/webm', 'mkv'], ['video', 'video/quicktime', 'mov'], ['video', 'video/mp4', 'mov'],
    ['video', 'video/ogg', 'ogg'], ['video', 'video/x-msvideo', 'avi'],
    ['image', 'image/png', 'png'], ['image', 'image/jpeg', 'jpeg'], ['image', 'image/gif', 'gif'], ['image', 'image/webp', 'webp'],
  ] as Array<[UploadKind, string, string]>)('%s %s with %s bytes', (kind, mime, sample) => {
    const r = ok(kind, mime, SAMPLES[sample]!);
    expect(r).toMatchObject({ ok: true, mimeType: mime });
  });

  it('normalises the declared mime type', () => {
    expect(normalizeMimeType(' Audio/WebM; codecs=opus ')).toBe('audio/webm');
    expect(ok('audio', 'Audio/WebM;codecs="opus"', SAMPLES.webm!)).toEqual({ ok: true, mimeType: 'audio/webm', container: 'webm' });
  });

  it('computes the duration of a WAV from its header', () => {
    expect(ok('audio', 'audio/wav', wav({ sampleRate: 8000, dataBytes: 16000 }))).toEqual({
      ok: true, mimeType: 'audio/wav', container: 'wav', durationMs: 1000,
    });
    expect(ok('audio', 'audio/wav', wav({ sampleRate: 16000, channels: 2, dataBytes: 6400 }))).toMatchObject({ durationMs: 100 });
  });

  it('accepts exactly maxBytes', () => {
    expect(ok('image', 'image/png', SAMPLES.png!, SAMPLES.png!.length).ok).toBe(true);
  });
});

describe('validateMedia: refused uploads', () => {
  it('refuses empty data', () => {
    expect(ok('audio', 'audio/wav', new Uint8Array())).toEqual({ ok: false, code: 'INVALID_ARGUMENT', message: 'audio is empty' });
  });

  it('refuses oversized data with a readable message', () => {
    const data = new Uint8Array(Math.round(9.1 * MiB));
    data.set(SAMPLES.wav!.subarray(0, 44));
    expect(ok('audio', 'audio/wav', data)).toEqual({
      ok: false, code: 'RESOURCE_EXHAUSTED', message: 'audio is 9.1 MiB; the limit is 8 MiB',
    });
    expect(ok('video', 'video/mp4', new Uint8Array(8 * MiB + 1))).toMatchObject({
      code: 'RESOURCE_EXHAUSTED', message: 'video is 8388609 bytes; the limit is 8 MiB',
    });
  });

  it('refuses a missing or unknown mime type, or one of another kind', () => {
    expect(ok('audio', '', SAMPLES.wav!)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^audio has no mime type; send one of audio\/wav/) });
    expect(ok('audio', 'audio/x-unknown', SAMPLES.wav!)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^audio\/x-unknown is not an accepted audio type/) });
    expect(ok('audio', 'image/png', SAMPLES.png!)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^image\/png is not an accepted audio type/) });
    expect(ok('image', 'video/mp4', SAMPLES.mp4!)).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses bytes that contradict the declared type', () => {
    expect(ok('audio', 'audio/wav', SAMPLES.png!)).toEqual({
      ok: false, code: 'INVALID_ARGUMENT', message: 'declared audio/wav but the bytes are a PNG image',
    });
    expect(ok('video', 'video/mp4', SAMPLES.avi!)).toMatchObject({ message: 'declared video/mp4 but the bytes are an AVI video' });
    expect(ok('image', 'image/webp', SAMPLES.wav!)).toMatchObject({ message: 'declared image/webp but the bytes are a WAV audio file' });
    expect(ok('audio', 'audio/aac', SAMPLES.mp3sync!)).toMatchObject({ message: 'declared audio/aac but the bytes are an MP3 audio file' });
  });

  it('refuses bytes in no known format', () => {
    expect(ok('image', 'image/png', bytes('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toEqual({
      ok: false, code: 'INVALID_ARGUMENT', message: 'declared image/png but the bytes are not a recognised media format',
    });
  });

  it('refuses a WAV without usable fmt and data chunks', () => {
    expect(ok('audio', 'audio/wav', bytes('RIFF', u32(4), 'WAVE'))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/malformed WAV/) });
    expect(ok('audio', 'audio/wav', bytes('RIFF', u32(12), 'WAVE', 'data', u32(0)))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const zeroRate = wav();
    zeroRate.set(u32(0), 24);
    expect(ok('audio', 'audio/wav', zeroRate)).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('parseWavHeader', () => {
  it('skips unknown chunks (with odd-size padding) before fmt and data', () => {
    const base = wav({ dataBytes: 800 });
    const withList = bytes([...base.subarray(0, 12)], 'LIST', u32(3), [1, 2, 3, 0], [...base.subarray(12)]);
    expect(parseWavHeader(withList)).toMatchObject({ sampleRate: 8000, channels: 1, bitsPerSample: 16, durationMs: 50, dataOffset: 56, dataLength: 800 });
  });

  it('trusts the bytes present over a streamed (0 / 0xFFFFFFFF) or truncated data size', () => {
    expect(parseWavHeader(wav({ dataBytes: 1600, declaredData: 0xffffffff }))).toMatchObject({ dataLength: 1600, durationMs: 100 });
    expect(parseWavHeader(wav({ dataBytes: 1600, declaredData: 0 }))).toMatchObject({ dataLength: 1600 });
    expect(parseWavHeader(wav({ dataBytes: 1600, declaredData: 16000 }))).toMatchObject({ dataLength: 1600 });
  });

  it('returns null for non-WAV input', () => {
    expect(parseWavHeader(SAMPLES.avi!)).toBeNull();
    expect(parseWavHeader(bytes('RIFF'))).toBeNull();
  });

  it('works on a view into a larger buffer', () => {
    const big = new Uint8Array(100 + SAMPLES.wav!.length);
    big.set(SAMPLES.wav!, 100);
    expect(parseWavHeader(big.subarray(100))).toMatchObject({ durationMs: 1000 });
  });
});
