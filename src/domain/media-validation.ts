/**
 * Media upload validation (pure). The declared mime type must be one we accept
 * for the message kind, and the bytes must really be that kind of file: we look
 * at the magic bytes, never trust the label alone.
 */
import { formatBytes } from './format-bytes';
import type { UploadKind } from './media-kind';

export type Container =
  | 'wav' | 'mp3' | 'ogg' | 'flac' | 'webm' | 'matroska' | 'mp4' | 'mov' | 'aac' | 'avi'
  | 'png' | 'jpeg' | 'gif' | 'webp';

export interface MediaInput {
  kind: UploadKind;
  mimeType: string;
  data: Uint8Array;
  maxBytes: number;
}

export type MediaValidation =
  | { ok: true; mimeType: string; container: Container; durationMs?: number }
  | { ok: false; code: 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED'; message: string };

/** Accepted mime types per kind, and the containers each may hold. */
export const ACCEPTED_MIME_TYPES: Record<UploadKind, Record<string, readonly Container[]>> = {
  audio: {
    'audio/wav': ['wav'], 'audio/x-wav': ['wav'], 'audio/wave': ['wav'], 'audio/vnd.wave': ['wav'],
    'audio/mpeg': ['mp3'], 'audio/mp3': ['mp3'],
    'audio/ogg': ['ogg'], 'audio/opus': ['ogg'],
    'audio/flac': ['flac'], 'audio/x-flac': ['flac'],
    'audio/webm': ['webm', 'matroska'],
    'audio/mp4': ['mp4', 'mov'], 'audio/x-m4a': ['mp4', 'mov'], 'audio/m4a': ['mp4', 'mov'],
    'audio/aac': ['aac'], 'audio/x-aac': ['aac'],
  },
  video: {
    'video/mp4': ['mp4', 'mov'],
    'video/quicktime': ['mov', 'mp4'],
    'video/webm': ['webm', 'matroska'],
    'video/x-matroska': ['matroska', 'webm'],
    'video/ogg': ['ogg'],
    'video/x-msvideo': ['avi'], 'video/avi': ['avi'], 'video/msvideo': ['avi'],
  },
  image: {
    'image/png': ['png'],
    'image/jpeg': ['jpeg'], 'image/jpg': ['jpeg'], 'image/pjpeg': ['jpeg'],
    'image/gif': ['gif'],
    'image/webp': ['webp'],
  },
};

const DESCRIPTION: Record<Container, string> = {
  wav: 'a WAV audio file', mp3: 'an MP3 audio file', ogg: 'an Ogg file', flac: 'a FLAC audio file',
  webm: 'a WebM file', matroska: 'a Matroska file', mp4: 'an MP4 file', mov: 'a QuickTime movie',
  aac: 'an AAC (ADTS) audio stream', avi: 'an AVI video', png: 'a PNG image', jpeg: 'a JPEG image',
  gif: 'a GIF image', webp: 'a WebP image',
};

/** Lowercase, trimmed, parameters (`;codecs=opus`) removed. */
export function normalizeMimeType(mimeType: string): string {
  return mimeType.split(';')[0]!.trim().toLowerCase();
}

export function validateMedia(input: MediaInput): MediaValidation {
  const { kind, data, maxBytes } = input;
  const mimeType = normalizeMimeType(input.mimeType ?? '');
  const fail = (code: 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED', message: string): MediaValidation => ({ ok: false, code, message });

  if (data.length === 0) return fail('INVALID_ARGUMENT', `${kind} is empty`);
  if (data.length > maxBytes) {
    return fail('RESOURCE_EXHAUSTED', `${kind} is ${formatBytes(data.length, maxBytes)}; the limit is ${formatBytes(maxBytes)}`);
  }
  const accepted = ACCEPTED_MIME_TYPES[kind];
  if (!mimeType) return fail('INVALID_ARGUMENT', `${kind} has no mime type; send one of ${Object.keys(accepted).join(', ')}`);
  const allowed = accepted[mimeType];
  if (!allowed) {
    return fail('INVALID_ARGUMENT', `${mimeType} is not an accepted ${kind} type; send one of ${Object.keys(accepted).join(', ')}`);
  }
  const container = detectContainer(data);
  if (!container) return fail('INVALID_ARGUMENT', `declared ${mimeType} but the bytes are not a recognised media format`);
  if (!allowed.includes(container)) {
    return fail('INVALID_ARGUMENT', `declared ${mimeType} but the bytes are ${DESCRIPTION[container]}`);
  }
  if (container === 'wav') {
    const wav = parseWavHeader(data);
    if (!wav) return fail('INVALID_ARGUMENT', `${kind} is a malformed WAV file (no valid fmt/data chunks)`);
    return { ok: true, mimeType, container, durationMs: wav.durationMs };
  }
  return { ok: true, mimeType, container };
}

/** Identify the container from its magic bytes; null when none matches. */
export function detectContainer(b: Uint8Array): Container | null {
  const ascii = (at: number, s: string) => b.length >= at + s.length && [...s].every((c, i) => b[at + i] === c.charCodeAt(0));
  const bytes = (at: number, ...xs: number[]) => b.length >= at + xs.length && xs.every((x, i) => b[at + i] === x);

  if (ascii(0, 'RIFF')) {
    if (ascii(8, 'WAVE')) return 'wav';
    if (ascii(8, 'AVI ')) return 'avi';
    if (ascii(8, 'WEBP')) return 'webp';
    return null;
  }
  if (bytes(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (bytes(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'OggS')) return 'ogg';
  if (ascii(0, 'fLaC')) return 'flac';
  if (bytes(0, 0x1a, 0x45, 0xdf, 0xa3)) {
    // The EBML header names its DocType near the start: "webm" or "matroska".
    const head = String.fromCharCode(...b.subarray(0, 64));
    return head.includes('webm') ? 'webm' : 'matroska';
  }
  if (ascii(4, 'ftyp')) return ascii(8, 'qt  ') ? 'mov' : 'mp4';
  if (ascii(0, 'ID3')) return 'mp3';
  if (b.length >= 2 && b[0] === 0xff && (b[1]! & 0xe0) === 0xe0) {
    const version = (b[1]! >> 3) & 3; // 01 is reserved
    const layer = (b[1]! >> 1) & 3; // 00: ADTS (AAC); otherwise MPEG audio layer III/II/I
    if (layer === 0) return (b[1]! & 0xf0) === 0xf0 ? 'aac' : null;
    if (version !== 1) return 'mp3';
  }
  return null;
}

export interface WavHeader {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  durationMs: number;
  /** Offset and length of the PCM data actually present in the bytes. */
  dataOffset: number;
  dataLength: number;
}

/** Parse a RIFF/WAVE header (fmt + data chunks); null when it is not a usable WAV. */
export function parseWavHeader(b: Uint8Array): WavHeader | null {
  if (b.length < 12) return null;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const tag = (at: number) => String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return null;
  let fmt: { channels: number; sampleRate: number; byteRate: number; bitsPerSample: number } | null = null;
  let at = 12;
  while (at + 8 <= b.length) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'fmt ' && size >= 16 && body + 16 <= b.length) {
      fmt = {
        channels: view.getUint16(body + 2, true),
        sampleRate: view.getUint32(body + 4, true),
        byteRate: view.getUint32(body + 8, true),
        bitsPerSample: view.getUint16(body + 14, true),
      };
      if (!fmt.channels || !fmt.sampleRate || !fmt.bitsPerSample) return null;
      if (!fmt.byteRate) fmt.byteRate = (fmt.sampleRate * fmt.channels * fmt.bitsPerSample) / 8;
    } else if (id === 'data') {
      if (!fmt) return null;
      // Streamed WAVs may carry 0 or 0xFFFFFFFF as size: trust the bytes we have.
      const dataLength = Math.min(size === 0 ? Infinity : size, b.length - body);
      return {
        sampleRate: fmt.sampleRate,
        channels: fmt.channels,
        bitsPerSample: fmt.bitsPerSample,
        durationMs: Math.round((dataLength * 1000) / fmt.byteRate),
        dataOffset: body,
        dataLength,
      };
    }
    at = body + size + (size & 1); // chunks are word-aligned
  }
  return null;
}

