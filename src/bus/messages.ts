import { ReplyUpdate } from '../gen/chatflow/bus/v1/replies';
import type { LoggedEvent } from '../eventlog/port';
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
 * What the client's gateway is told of an outcome at its place in the log
 * (ResponseProduced: ready; ProcessingFailed: failed); undefined for any other
 * event. Whoever appended the outcome tells it: the worker, or the event loop
 * for a worker in a thread (src/threads/remote-log.ts, `tell`).
 */
export function outcomeUpdate(logged: LoggedEvent): ReplyOutcome | undefined {
  const p = logged.event.payload;
  if (p?.$case === 'responseProduced') {
    const { messageId: responseId, inReplyTo, text, voice, image, processingMs } = p.responseProduced;
    return { inReplyTo, update: { $case: 'ready', ready: { responseId, seq: logged.seq, time: logged.event.time, text, voice, image, processingMs } } };
  }
  if (p?.$case === 'processingFailed') {
    const { inReplyTo, code, message, retryAfterMs } = p.processingFailed;
    return { inReplyTo, update: { $case: 'failed', failed: { seq: logged.seq, code, message, retryAfterMs } } };
  }
  return undefined;
}
