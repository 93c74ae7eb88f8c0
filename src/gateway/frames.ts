import { Author, MessageStatus, type Conversation, type HistoryMessage } from '../gen/chatflow/v1/history';
import type { BotResponse, ChatError, Media, ServerFrame } from '../gen/chatflow/v1/chat';
import type { MediaStore } from '../media/port';
import type { ConversationDoc, MediaDoc, MessageDoc } from '../../projections/models';

/** Read-model documents → wire messages. Media become download URLs. */
export class FrameFactory {
  constructor(
    private readonly media: MediaStore,
    private readonly urlTtlMs: number,
  ) {}

  async mediaFor(doc: MediaDoc | undefined): Promise<Media | undefined> {
    if (!doc) return undefined;
    return {
      mimeType: doc.mimeType,
      data: Buffer.alloc(0),
      url: await this.media.url(doc.key, this.urlTtlMs),
      sizeBytes: doc.sizeBytes,
      durationMs: doc.durationMs ?? 0,
    };
  }

  async botResponse(doc: MessageDoc): Promise<BotResponse> {
    return {
      messageId: doc._id,
      inReplyTo: doc.inReplyTo ?? '',
      seq: doc.seq,
      text: doc.text ?? '',
      voice: await this.mediaFor(doc.voice),
      image: await this.mediaFor(doc.image),
      processingMs: doc.processingMs ?? 0,
      time: new Date(doc.time),
    };
  }

  chatError(doc: MessageDoc): ChatError {
    return { inReplyTo: doc.inReplyTo ?? '', code: doc.error?.code ?? 'INTERNAL', message: doc.error?.message ?? '', seq: doc.seq, retryAfterMs: 0 };
  }

  /** A bot entry of the history as the frame a live client would have received. */
  async replayFrame(doc: MessageDoc): Promise<ServerFrame> {
    return doc.error
      ? { frame: { $case: 'error', error: this.chatError(doc) } }
      : { frame: { $case: 'response', response: await this.botResponse(doc) } };
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
      error: doc.error ? this.chatError(doc) : undefined,
    };
  }
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
