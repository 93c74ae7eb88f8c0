import { DisconnectReason, type MediaRef, type MessageReceived } from '../src/gen/chatflow/v1/events';
import { mediaKindName } from '../src/domain/media-kind';
import { contentHash } from '../src/domain/message-content';
import type { EventCase, LoggedEvent } from '../src/eventlog/port';
import type { Doc } from '../src/readstore/port';
import { COLLECTIONS, type ConversationDoc, type MediaDoc, type MessageDoc, type SessionDoc } from './models';

/**
 * Projections as data (emmett style): which events they handle, which
 * documents an event touches, and a pure evolve. One generic runner applies
 * them to any ReadStore, idempotently.
 */
export interface Projection<D extends Doc> {
  readonly name: string;
  readonly collection: string;
  readonly indexes: readonly (keyof D & string)[];
  readonly canHandle: readonly EventCase[];
  documentIds(e: LoggedEvent): string[];
  evolve(doc: D | null, e: LoggedEvent, id: string): D | null;
}

const timeOf = (e: LoggedEvent) => e.event.time?.getTime() ?? 0;

export function mediaDoc(ref: MediaRef | undefined): MediaDoc | undefined {
  if (!ref) return undefined;
  const kind = mediaKindName(ref.kind);
  if (!kind) return undefined;
  return { kind, key: ref.key, mimeType: ref.mimeType, sizeBytes: ref.sizeBytes, ...(ref.durationMs ? { durationMs: ref.durationMs } : {}) };
}

export const conversationsProjection: Projection<ConversationDoc> = {
  name: 'conversations',
  collection: COLLECTIONS.conversations,
  indexes: ['clientId'],
  canHandle: ['clientConnected', 'messageReceived', 'responseProduced', 'processingFailed'],
  documentIds: (e) => [e.event.conversationId],
  /*
   * The connection (sessions topic) and the messages (conversations topic)
   * come from two topics with no order between them: a rebuild, or a batch,
   * may apply a conversation's messages before the connection that created
   * it. Evolve is therefore order-independent: messages first make a
   * provisional document, which the creating connection completes; the
   * result is the same document as in log order.
   */
  evolve(doc, e) {
    const p = e.event.payload!;
    if (p.$case === 'clientConnected') {
      if (doc && !doc.provisional) return doc;
      const created: ConversationDoc = {
        _id: e.event.conversationId,
        clientId: e.event.clientId,
        createdAt: timeOf(e),
        updatedAt: timeOf(e),
        createdSeq: e.seq,
        lastSeq: e.seq,
        timeZone: p.clientConnected.timeZone,
      };
      if (!doc) return created;
      const { provisional: _, ...seen } = doc;
      return { ...seen, ...created, createdAt: Math.min(doc.createdAt, created.createdAt), updatedAt: Math.max(doc.updatedAt, created.updatedAt), lastSeq: Math.max(doc.lastSeq, created.lastSeq) };
    }
    const base: ConversationDoc = doc ?? { _id: e.event.conversationId, clientId: e.event.clientId, createdAt: timeOf(e), updatedAt: timeOf(e), createdSeq: 0, lastSeq: 0, timeZone: '', provisional: true };
    const next: ConversationDoc = { ...base, updatedAt: Math.max(base.updatedAt, timeOf(e)), lastSeq: Math.max(base.lastSeq, e.seq) };
    if (p.$case === 'messageReceived' && !base.started) {
      next.started = true;
      next.preview = previewOf(p.messageReceived.content);
    }
    return next;
  },
};

const PREVIEW_CHARS = 80;

function previewOf(content: MessageReceived['content']): string {
  if (content?.$case === 'text') {
    const one = content.text.replace(/\s+/g, ' ').trim();
    return one.length > PREVIEW_CHARS ? `${one.slice(0, PREVIEW_CHARS - 1)}…` : one;
  }
  return `[${(content && mediaKindName(content.media.kind)) || 'media'}]`;
}

export const messagesProjection: Projection<MessageDoc> = {
  name: 'messages',
  collection: COLLECTIONS.messages,
  indexes: ['conversationId'],
  canHandle: ['messageReceived', 'responseProduced', 'processingFailed'],
  documentIds(e) {
    const p = e.event.payload!;
    switch (p.$case) {
      case 'messageReceived':
        return [p.messageReceived.messageId];
      case 'responseProduced':
        return [p.responseProduced.inReplyTo, p.responseProduced.messageId];
      case 'processingFailed':
        return [p.processingFailed.inReplyTo, failureIdFor(p.processingFailed.inReplyTo)];
      default:
        return [];
    }
  },
  evolve(doc, e, id) {
    const base = { conversationId: e.event.conversationId, clientId: e.event.clientId, seq: e.seq, time: timeOf(e) };
    const p = e.event.payload!;
    switch (p.$case) {
      case 'messageReceived': {
        if (doc) return doc; // a resend that reached the log: the first one counts
        const m = p.messageReceived;
        const content = m.content;
        return {
          _id: id,
          ...base,
          author: 'client',
          clientMessageId: m.clientMessageId,
          ...(content ? { contentHash: contentHash(content.$case === 'text' ? { text: content.text } : { mediaKind: mediaKindName(content.media.kind) ?? 'unknown', sha256: content.media.sha256 }) } : {}),
          timeZone: m.timeZone,
          status: 'pending',
          ...(content?.$case === 'text' ? { text: content.text } : {}),
          ...(content?.$case === 'media' ? { media: mediaDoc(content.media) } : {}),
        };
      }
      case 'responseProduced': {
        const r = p.responseProduced;
        if (id === r.inReplyTo) return doc && doc.status === 'pending' ? { ...doc, status: 'answered' } : doc;
        if (doc) return doc; // a second reply to the same message is not recorded twice
        return {
          _id: id,
          ...base,
          author: 'bot',
          inReplyTo: r.inReplyTo,
          text: r.text,
          processingMs: r.processingMs,
          ...(r.voice ? { voice: mediaDoc(r.voice) } : {}),
          ...(r.image ? { image: mediaDoc(r.image) } : {}),
        };
      }
      case 'processingFailed': {
        const f = p.processingFailed;
        if (id === f.inReplyTo) return doc && doc.status === 'pending' ? { ...doc, status: 'failed' } : doc;
        if (doc) return doc;
        return { _id: id, ...base, author: 'bot', inReplyTo: f.inReplyTo, error: { code: f.code, message: f.message } };
      }
      default:
        return doc;
    }
  },
};

export const sessionsProjection: Projection<SessionDoc> = {
  name: 'sessions',
  collection: COLLECTIONS.sessions,
  indexes: ['clientId'],
  canHandle: ['clientConnected', 'clientDisconnected'],
  documentIds: (e) => [e.event.sessionId],
  evolve(doc, e, id) {
    const p = e.event.payload!;
    if (p.$case === 'clientConnected') {
      if (doc) return doc;
      return {
        _id: id,
        clientId: e.event.clientId,
        conversationId: e.event.conversationId,
        gatewayId: p.clientConnected.gatewayId,
        timeZone: p.clientConnected.timeZone,
        connectedAt: timeOf(e),
        open: true,
      };
    }
    if (p.$case === 'clientDisconnected') {
      if (!doc || !doc.open) return doc;
      return { ...doc, open: false, disconnectedAt: timeOf(e), reason: disconnectReasonName(p.clientDisconnected.reason) };
    }
    return doc;
  },
};

export function failureIdFor(messageId: string): string {
  return `f_${messageId.replace(/^m_/, '')}`;
}

export function disconnectReasonName(r: DisconnectReason): string {
  switch (r) {
    case DisconnectReason.DISCONNECT_REASON_CLIENT:
      return 'client';
    case DisconnectReason.DISCONNECT_REASON_DEADLINE:
      return 'deadline';
    case DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED:
      return 'lease-expired';
    case DisconnectReason.DISCONNECT_REASON_SHUTDOWN:
      return 'shutdown';
    case DisconnectReason.DISCONNECT_REASON_ERROR:
      return 'error';
    default:
      return 'unspecified';
  }
}

// Each projection keeps its own document type; the runner only needs the common shape.
export const ALL_PROJECTIONS = [conversationsProjection, messagesProjection, sessionsProjection] as unknown as readonly Projection<Doc>[];
