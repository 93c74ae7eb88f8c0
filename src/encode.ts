import { BinaryWriter } from '@bufbuild/protobuf/wire';

/**
 * Protobuf encoding with one writer for the whole process. The generated
 * `X.encode(m)` makes a new BinaryWriter each time, which starts at 128 bytes
 * and doubles (a fresh, zeroed buffer per step) up to the message's size:
 * under load that was ~5 % of the event loop's CPU plus the garbage. This
 * writer keeps its grown buffer; `finish()` hands out a copy of the bytes and
 * rewinds. Encoding is synchronous, so calls cannot interleave.
 */
let shared = new BinaryWriter();
/** A message larger than this (media frames) leaves a fresh writer behind, so one big frame does not pin its buffer for good. */
const KEEP_BYTES = 1 << 20;

export interface Encodes<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

/** The message's bytes (a new array the caller owns). */
export function encode<T>(codec: Encodes<T>, message: T): Uint8Array {
  try {
    const bytes = codec.encode(message, shared).finish();
    if (bytes.length > KEEP_BYTES) shared = new BinaryWriter();
    return bytes;
  } catch (err) {
    shared = new BinaryWriter(); // a half-written message must not prefix the next one
    throw err;
  }
}

/** The same as a Buffer over those bytes (no second copy), for grpc-js serializers. */
export function encodeToBuffer<T>(codec: Encodes<T>, message: T): Buffer {
  return asBuffer(encode(codec, message));
}

/** A Buffer over the same memory as `bytes` (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
