import { DisconnectReason, type MediaRef, type MessageReceived } from '../src/gen/chatflow/v1/events';
import { mediaKindName } from '../src/domain/media-kind';
import { contentHash } from '../src/domain/message-content';
import type { EventCase, LoggedEvent } from '../src/eventlog/port';
import type { Collection, Doc, ReadStore } from '../src/readstore/port';
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
  /** The field queries on those indexes sort by (ReadStore.collection). */
  readonly orderedBy?: keyof D & string;
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
  orderedBy: 'createdSeq',
  canHandle: ['clientConnected', 'messageReceived', 'responseProduced', 'processingFailed'],
  documentIds: (e) => [e.event.conversationId],
  // Commutative across topics: a rebuild may apply a conversation's messages (conversations topic)
  // before the connection that opened it (sessions topic), and must end with the same document.
  evolve(doc, e) {
    const p = e.event.payload!;
    const time = timeOf(e);
    if (p.$case === 'clientConnected') {
      // The connection that opened the conversation says when and in which zone it started.
      if (doc && !p.clientConnected.newConversation) return doc;
      const opened = { createdAt: time, createdSeq: e.seq, timeZone: p.clientConnected.timeZone };
      if (!doc) return { _id: e.event.conversationId, clientId: e.event.clientId, updatedAt: time, lastSeq: e.seq, ...opened };
      return { ...doc, ...opened, updatedAt: Math.max(doc.updatedAt, time), lastSeq: Math.max(doc.lastSeq, e.seq) };
    }
    let base = doc;
    if (!base && p.$case === 'messageReceived') {
      // Seen before its opening connection (a rebuild reading the topics at different speeds): that connection fills these in.
      base = { _id: e.event.conversationId, clientId: e.event.clientId, createdAt: time, updatedAt: time, createdSeq: e.seq, lastSeq: e.seq, timeZone: p.messageReceived.timeZone };
    }
    if (!base) return null;
    const next: ConversationDoc = { ...base, updatedAt: Math.max(base.updatedAt, time), lastSeq: Math.max(base.lastSeq, e.seq) };
    // The preview is the earliest message's, whatever order they are applied in.
    if (p.$case === 'messageReceived' && (base.previewSeq === undefined || e.seq < base.previewSeq)) {
      next.started = true;
      next.preview = previewOf(p.messageReceived.content);
      next.previewSeq = e.seq;
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
  orderedBy: 'seq',
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
          // A text's hash is computed from its text when a resend needs it (storedContentHash).
          ...(content?.$case === 'media' ? { contentHash: contentHash({ mediaKind: mediaKindName(content.media.kind) ?? 'unknown', sha256: content.media.sha256 }) } : {}),
          timeZone: m.timeZone,
          status: 'pending',
          ...(content?.$case === 'text' ? { text: content.text } : {}),
          ...(content?.$case === 'media' ? { media: mediaDoc(content.media) } : {}),
        };
      }
      case 'responseProduced': {
        const r = p.responseProduced;
        if (id === r.inReplyTo) return doc && doc.status === 'pending' ? { ...doc, status: 'answered', ...transcriptOf(r) } : doc;
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
        if (id === f.inReplyTo) return doc && doc.status === 'pending' ? { ...doc, status: 'failed', ...transcriptOf(f) } : doc;
        if (doc) return doc;
        return { _id: id, ...base, author: 'bot', inReplyTo: f.inReplyTo, error: { code: f.code, message: f.message, ...(f.retryAfterMs > 0 ? { retryAfterMs: f.retryAfterMs } : {}) } };
      }
      default:
        return doc;
    }
  },
};

/** The transcript an outcome carries goes on the client message it answers. */
function transcriptOf(outcome: { transcript: string }): { transcript?: string } {
  return outcome.transcript ? { transcript: outcome.transcript } : {};
}

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
    case DisconnectReason.DISCONNECT_REASON_SILENT:
      return 'silent';
    case DisconnectReason.DISCONNECT_REASON_REPLACED:
      return 'replaced';
    default:
      return 'unspecified';
  }
}

// Each projection keeps its own document type; the runner only needs the common shape.
/**
 * The collection a projection writes, as its writer (the runner) and its readers (gateway, worker) must all take it:
 * its indexes and its order. A store makes a collection once, with the options of whoever asked first.
 */
export function collectionOf<D extends Doc>(store: ReadStore, p: Projection<D>): Collection<D> {
  return store.collection<D>(p.collection, p.indexes, p.orderedBy);
}

export const ALL_PROJECTIONS = [conversationsProjection, messagesProjection, sessionsProjection] as unknown as readonly Projection<Doc>[];
