import { Author, MessageStatus, type Conversation, type HistoryMessage } from '../gen/chatflow/v1/history';
import type { BotResponse, ChatError, Media, ServerFrame } from '../gen/chatflow/v1/chat';
import type { MediaRef } from '../gen/chatflow/v1/events';
import type { ReplyFailed, ReplyOutcome, ReplyReady, ReplyUpdate } from '../bus/messages';
import { mediaKindOf } from '../domain/media-kind';
import type { MediaStore } from '../media/port';
import type { ConversationDoc, MediaDoc, MessageDoc } from '../../projections/models';

/**
 * The only place client frames of replies are made: from what the worker
 * published (live) and from read-model documents (resume, history,
 * duplicate client_message_id), through the same `replyFrame`. Media keys
 * become download URLs here.
 */
export class FrameFactory {
  constructor(
    private readonly media: MediaStore,
    private readonly urlTtlMs: number,
  ) {}

  private async mediaFor(ref: { key: string; mimeType: string; sizeBytes: number; durationMs?: number } | undefined): Promise<Media | undefined> {
    if (!ref) return undefined;
    return {
      mimeType: ref.mimeType,
      data: Buffer.alloc(0),
      url: await this.media.url(ref.key, this.urlTtlMs),
      sizeBytes: ref.sizeBytes,
      durationMs: ref.durationMs ?? 0,
    };
  }

  /** One update of a reply as the frame the client gets (undefined: an update this gateway does not know). */
  replyFrame(u: ReplyOutcome): Promise<ServerFrame>;
  replyFrame(u: ReplyUpdate): Promise<ServerFrame | undefined>;
  async replyFrame(u: ReplyUpdate): Promise<ServerFrame | undefined> {
    const inReplyTo = u.inReplyTo;
    const update = u.update;
    switch (update?.$case) {
      case 'transcript':
        return { frame: { $case: 'transcript', transcript: { messageId: inReplyTo, ...update.transcript } } };
      case 'delta':
        return { frame: { $case: 'delta', delta: { inReplyTo, textDelta: update.delta.text } } };
      case 'voiceChunk': {
        const { index, wav, durationMs, last } = update.voiceChunk;
        const audio = last ? undefined : { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs };
        return { frame: { $case: 'voiceChunk', voiceChunk: { inReplyTo, index, audio, last } } };
      }
      case 'ready':
        return { frame: { $case: 'response', response: await this.botResponse(inReplyTo, u.seq ?? 0, update.ready) } };
      case 'failed':
        return { frame: { $case: 'error', error: chatError(inReplyTo, u.seq ?? 0, update.failed) } };
      default:
        return undefined;
    }
  }

  private async botResponse(inReplyTo: string, seq: number, r: ReplyReady): Promise<BotResponse> {
    return {
      messageId: r.responseId,
      inReplyTo,
      seq,
      text: r.text,
      voice: await this.mediaFor(r.voice),
      image: await this.mediaFor(r.image),
      processingMs: r.processingMs,
      time: r.time,
    };
  }

  async historyMessage(doc: MessageDoc): Promise<HistoryMessage> {
    const kind = doc.media?.kind;
    return {
      seq: doc.seq,
      messageId: doc._id,
      author: doc.author === 'bot' ? Author.AUTHOR_BOT : Author.AUTHOR_CLIENT,
      time: new Date(doc.time),
      clientMessageId: doc.clientMessageId ?? '',
      inReplyTo: doc.inReplyTo ?? '',
      text: doc.text ?? '',
      audio: kind === 'audio' ? await this.mediaFor(doc.media) : undefined,
      video: kind === 'video' ? await this.mediaFor(doc.media) : undefined,
      image: kind === 'image' ? await this.mediaFor(doc.media) : await this.mediaFor(doc.image),
      voice: await this.mediaFor(doc.voice),
      processingMs: doc.processingMs ?? 0,
      status: statusOf(doc),
      error: doc.error ? chatError(doc.inReplyTo ?? '', doc.seq, failedOf(doc)) : undefined,
      transcript: doc.transcript ?? '',
    };
  }
}

/** A bot entry of the read model as the outcome the worker published for it. */
export function outcomeOf(doc: MessageDoc): ReplyOutcome {
  const inReplyTo = doc.inReplyTo ?? '';
  if (doc.error) return { inReplyTo, update: { $case: 'failed', failed: failedOf(doc) }, seq: doc.seq };
  return {
    inReplyTo,
    seq: doc.seq,
    update: {
      $case: 'ready',
      ready: { responseId: doc._id, time: new Date(doc.time), text: doc.text ?? '', voice: mediaRef(doc.voice), image: mediaRef(doc.image), processingMs: doc.processingMs ?? 0 },
    },
  };
}

function failedOf(doc: MessageDoc): ReplyFailed {
  return { code: doc.error?.code ?? 'INTERNAL', message: doc.error?.message ?? '', retryAfterMs: doc.error?.retryAfterMs ?? 0 };
}

function chatError(inReplyTo: string, seq: number, f: ReplyFailed): ChatError {
  return { inReplyTo, code: f.code, message: f.message, seq, retryAfterMs: f.retryAfterMs };
}

function mediaRef(doc: MediaDoc | undefined): MediaRef | undefined {
  return doc && { kind: mediaKindOf(doc.kind), key: doc.key, mimeType: doc.mimeType, sizeBytes: doc.sizeBytes, sha256: '', durationMs: doc.durationMs ?? 0 };
}

function statusOf(doc: MessageDoc): MessageStatus {
  switch (doc.status) {
    case 'pending':
      return MessageStatus.MESSAGE_STATUS_PENDING;
    case 'answered':
      return MessageStatus.MESSAGE_STATUS_ANSWERED;
    case 'failed':
      return MessageStatus.MESSAGE_STATUS_FAILED;
    default:
      return MessageStatus.MESSAGE_STATUS_UNSPECIFIED;
  }
}

export function conversationMessage(doc: ConversationDoc, messageCount: number): Conversation {
  return {
    conversationId: doc._id,
    clientId: doc.clientId,
    createdAt: new Date(doc.createdAt),
    updatedAt: new Date(doc.updatedAt),
    messageCount,
    lastSeq: doc.lastSeq,
    timeZone: doc.timeZone,
    preview: doc.preview ?? '',
  };
}
