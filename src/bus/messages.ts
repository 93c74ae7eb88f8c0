import { ReplyUpdate } from '../gen/chatflow/bus/v1/replies';
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
