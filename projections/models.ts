import type { Doc } from '../src/readstore/port';
import type { MediaKindName } from '../src/domain/media-kind';

/** Read-model documents. Field names are what MongoDB stores. */

export interface MediaDoc {
  kind: MediaKindName;
  key: string;
  mimeType: string;
  sizeBytes: number;
  durationMs?: number;
}

export interface ErrorDoc {
  code: string;
  message: string;
  /** When the client may send the message again (absent: 0, not to retry, or recorded before it was kept). */
  retryAfterMs?: number;
}

export interface ConversationDoc extends Doc {
  clientId: string;
  createdAt: number;
  updatedAt: number;
  /** seq of the event that created the conversation: the listing order. */
  createdSeq: number;
  lastSeq: number;
  timeZone: string;
  /**
   * Set by its first message: a conversation that was only connected to (a
   * page opened, a CLI that sent nothing) is not listed in the history.
   */
  started?: true;
  /** The first message, shortened: its text, or its kind (`[audio]`). */
  preview?: string;
  /** seq of the message the preview is taken from (the earliest seen). */
  previewSeq?: number;
}

export interface MessageDoc extends Doc {
  conversationId: string;
  clientId: string;
  seq: number;
  author: 'client' | 'bot';
  time: number;
  clientMessageId?: string;
  /** Client media entries: hash of what the message says, to tell a resend from a conflicting reuse of its key (a text's comes from its text: storedContentHash). */
  contentHash?: string;
  /** Bot entries: the message_id of the client message answered. */
  inReplyTo?: string;
  text?: string;
  media?: MediaDoc;
  voice?: MediaDoc;
  image?: MediaDoc;
  processingMs?: number;
  timeZone?: string;
  /** Client voice and video messages: what the recognizer heard. */
  transcript?: string;
  /** Client entries only. */
  status?: 'pending' | 'answered' | 'failed';
  /** Bot entries for a processing failure. */
  error?: ErrorDoc;
}

export interface SessionDoc extends Doc {
  clientId: string;
  conversationId: string;
  gatewayId: string;
  timeZone: string;
  connectedAt: number;
  open: boolean;
  disconnectedAt?: number;
  reason?: string;
}

export const COLLECTIONS = {
  conversations: 'conversations',
  messages: 'messages',
  sessions: 'sessions',
} as const;
