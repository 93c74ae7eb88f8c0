import type { Bus } from '../bus/port';
import type { MediaStore } from '../media/port';
import type { Collection, ReadStore } from '../readstore/port';
import { FrameFactory } from '../gateway/frames';
import { COLLECTIONS, type ConversationDoc, type MessageDoc, type SessionDoc } from '../../projections/models';
import { conversationsProjection, messagesProjection, sessionsProjection } from '../../projections/definitions';

/** What gateways and workers share: the bus between them and the media both read and write. */
export interface Messaging {
  bus: Bus;
  media: MediaStore;
  frames: FrameFactory;
}

export function messaging(bus: Bus, media: MediaStore, mediaUrlTtlMs: number): Messaging {
  return { bus, media, frames: new FrameFactory(media, mediaUrlTtlMs) };
}

/** The read models the gateway and the worker query (the projector writes them). */
export interface ReadModels {
  conversations: Collection<ConversationDoc>;
  messages: Collection<MessageDoc>;
  sessions: Collection<SessionDoc>;
}

export function readModels(store: ReadStore): ReadModels {
  return {
    conversations: store.collection<ConversationDoc>(COLLECTIONS.conversations, conversationsProjection.indexes, conversationsProjection.orderedBy),
    messages: store.collection<MessageDoc>(COLLECTIONS.messages, messagesProjection.indexes, messagesProjection.orderedBy),
    sessions: store.collection<SessionDoc>(COLLECTIONS.sessions, sessionsProjection.indexes),
  };
}
