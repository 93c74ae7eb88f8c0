/** A 16-bit mono PCM WAV around raw little-endian samples (a synthesizer's output); an odd last byte is dropped. */
export function wavFromPcm16(pcm: Buffer, sampleRate: number): Buffer {
  const b = wavHeader(pcm.length & ~1, sampleRate);
  pcm.copy(b, 44, 0, pcm.length & ~1);
  return b;
}

/** 16-bit mono PCM WAV from samples in [-1, 1] (played at 80 % to leave headroom). */
export function encodeWav(samples: Float32Array, sampleRate: number): Buffer {
  const pcm = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) pcm.writeInt16LE(Math.round(Math.max(-1, Math.min(1, samples[i]! * 0.8)) * 32767), i * 2);
  return wavFromPcm16(pcm, sampleRate);
}

/** A buffer for a 16-bit mono WAV of `dataLength` bytes, its 44-byte header written. */
function wavHeader(dataLength: number, sampleRate: number): Buffer {
  const b = Buffer.alloc(44 + dataLength);
  b.write('RIFF', 0, 'ascii');
  b.writeUInt32LE(36 + dataLength, 4);
  b.write('WAVE', 8, 'ascii');
  b.write('fmt ', 12, 'ascii');
  b.writeUInt32LE(16, 16); // fmt chunk size
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(1, 22); // mono
  b.writeUInt32LE(sampleRate, 24);
  b.writeUInt32LE(sampleRate * 2, 28); // byte rate
  b.writeUInt16LE(2, 32); // block align
  b.writeUInt16LE(16, 34); // bits per sample
  b.write('data', 36, 'ascii');
  b.writeUInt32LE(dataLength, 40);
  return b;
}
