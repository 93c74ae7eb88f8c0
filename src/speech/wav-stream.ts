import type { PcmChunk } from './port';

/**
 * Reads a WAV as it arrives: the header (whose sizes a streaming server leaves
 * unknown), then 16-bit mono PCM handed out in whole samples as bytes come in.
 */
export class WavStreamReader {
  private head = Buffer.alloc(0);
  private sampleRate = 0;
  private odd: Buffer = Buffer.alloc(0);

  /** The PCM that the bytes complete, or undefined while the header is not whole yet. */
  push(bytes: Buffer): PcmChunk | undefined {
    if (!this.sampleRate) {
      this.head = Buffer.concat([this.head, bytes]);
      const parsed = parseHeader(this.head);
      if (!parsed) {
        if (this.head.length > 64 * 1024) throw new Error('the synthesizer did not send a WAV');
        return undefined;
      }
      this.sampleRate = parsed.sampleRate;
      bytes = this.head.subarray(parsed.dataStart);
      this.head = Buffer.alloc(0);
    }
    const all = this.odd.length ? Buffer.concat([this.odd, bytes]) : bytes;
    const even = all.length & ~1;
    this.odd = Buffer.from(all.subarray(even));
    return even > 0 ? { pcm: Buffer.from(all.subarray(0, even)), sampleRate: this.sampleRate } : undefined;
  }

  /** At the end of the stream: throws when not even a header came. */
  finish(): void {
    if (!this.sampleRate) throw new Error('the synthesizer sent no audio');
  }
}

/** The WAV's format and where its samples start, once the bytes hold the `data` chunk header. */
function parseHeader(b: Buffer): { sampleRate: number; dataStart: number } | undefined {
  if (b.length < 12) return undefined;
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error('the synthesizer did not send a WAV');
  let at = 12;
  let sampleRate = 0;
  while (at + 8 <= b.length) {
    const id = b.toString('ascii', at, at + 4);
    const size = b.readUInt32LE(at + 4);
    if (id === 'data') {
      if (!sampleRate) throw new Error('WAV without a fmt chunk');
      return { sampleRate, dataStart: at + 8 };
    }
    if (at + 8 + size > b.length) return undefined;
    if (id === 'fmt ') {
      const format = b.readUInt16LE(at + 8);
      const channels = b.readUInt16LE(at + 10);
      const bits = b.readUInt16LE(at + 22);
      if (format !== 1 || channels !== 1 || bits !== 16) throw new Error(`the synthesizer sent ${bits}-bit, ${channels}-channel audio (format ${format}); 16-bit mono PCM expected`);
      sampleRate = b.readUInt32LE(at + 12);
    }
    at += 8 + size + (size & 1);
  }
  return undefined;
}
