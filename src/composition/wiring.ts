import type { Bus } from '../bus/port';
import type { MediaStore } from '../media/port';
import type { Collection, ReadStore } from '../readstore/port';
import { FrameFactory } from '../gateway/frames';
import type { ConversationDoc, MessageDoc, SessionDoc } from '../../projections/models';
import { collectionOf, conversationsProjection, messagesProjection, sessionsProjection } from '../../projections/definitions';

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
    conversations: collectionOf(store, conversationsProjection),
    messages: collectionOf(store, messagesProjection),
    sessions: collectionOf(store, sessionsProjection),
  };
}
