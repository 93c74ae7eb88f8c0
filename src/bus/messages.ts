import { ReplyUpdate } from '../gen/chatflow/bus/v1/replies';
import type { Event } from '../gen/chatflow/v1/events';
import { encode } from '../encode';

export type { ReplyDelta, ReplyFailed, ReplyReady, ReplyTranscript, ReplyVoiceChunk } from '../gen/chatflow/bus/v1/replies';
export { ReplyUpdate };

/**
 * What a worker publishes on a client's subject (`clientSubject`) while it
 * answers one message: transcript, deltas, voice chunks, then exactly one of
 * ready / failed. Domain terms only (ids, seq, text, media keys): the
 * gateway alone turns them into client frames.
 */
export type ReplyOutcome = ReplyUpdate & { update: Extract<ReplyUpdate['update'], { $case: 'ready' | 'failed' }> };

/** With the process's one writer (src/encode.ts): a fresh one grew 128 → 512 bytes per reply, ~3 % of the worker thread. */
export function encodeReplyUpdate(update: ReplyUpdate): Uint8Array {
  return encode(ReplyUpdate, update);
}

/** Throws on bytes that are not a ReplyUpdate. */
export function decodeReplyUpdate(payload: Uint8Array): ReplyUpdate {
  return ReplyUpdate.decode(payload);
}

/**
 * What the client's gateway is told of an outcome event (ResponseProduced:
 * ready; ProcessingFailed: failed), all but its `seq`, which only the log
 * gives (withSeq); undefined for any other event.
 */
export function outcomeUpdate(outcome: Event): ReplyOutcome | undefined {
  const p = outcome.payload;
  if (p?.$case === 'responseProduced') {
    const { messageId: responseId, inReplyTo, text, voice, image, processingMs } = p.responseProduced;
    return { inReplyTo, update: { $case: 'ready', ready: { responseId, time: outcome.time, text, voice, image, processingMs } } };
  }
  if (p?.$case === 'processingFailed') {
    const { inReplyTo, code, message, retryAfterMs } = p.processingFailed;
    return { inReplyTo, update: { $case: 'failed', failed: { code, message, retryAfterMs } } };
  }
  return undefined;
}

/**
 * An encoded update with its `seq` set (ReplyUpdate.seq): the field appended
 * to the bytes, which protobuf reads as the field's value (the last one
 * wins). What lets a worker in a thread encode a reply's update before the
 * event loop appends the reply and learns its seq.
 */
export function withSeq(encoded: Uint8Array, seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`a log seq is a whole number from 0: ${seq}`);
  // The varint by hand, into one array: a BinaryWriter per reply was ~1 µs of
  // the event loop's ~90 per message at saturation (its CPU profile); the
  // property test checks these bytes against the library's encoding.
  let size = 1;
  for (let v = seq; v >= 0x80; v = Math.floor(v / 0x80)) size++;
  const out = new Uint8Array(encoded.length + 1 + size);
  out.set(encoded);
  let i = encoded.length;
  out[i++] = SEQ_TAG;
  let v = seq;
  for (; v >= 0x80; v = Math.floor(v / 0x80)) out[i++] = (v % 0x80) | 0x80;
  out[i] = v;
  return out;
}

/** ReplyUpdate.seq: field 8, wire type 0 (varint). */
const SEQ_TAG = (8 << 3) | 0;
