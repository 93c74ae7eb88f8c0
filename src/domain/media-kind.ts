import { MediaKind } from '../gen/chatflow/v1/events';

/**
 * The one kind type: what a piece of media is, by the names used everywhere
 * but on the wire (the event enum `MediaKind` maps to it here, and back).
 */
export type MediaKindName = 'audio' | 'video' | 'image' | 'voice';

/** What a client may upload (`voice` is only ever the server's spoken reply). */
export type UploadKind = Exclude<MediaKindName, 'voice'>;

/** What a message is to the model: its text, or the kind of media it carries. */
export type InputKind = 'text' | UploadKind;

const BY_ENUM: Partial<Record<MediaKind, MediaKindName>> = {
  [MediaKind.MEDIA_KIND_AUDIO]: 'audio',
  [MediaKind.MEDIA_KIND_VIDEO]: 'video',
  [MediaKind.MEDIA_KIND_IMAGE]: 'image',
  [MediaKind.MEDIA_KIND_VOICE]: 'voice',
};

const BY_NAME: Record<MediaKindName, MediaKind> = {
  audio: MediaKind.MEDIA_KIND_AUDIO,
  video: MediaKind.MEDIA_KIND_VIDEO,
  image: MediaKind.MEDIA_KIND_IMAGE,
  voice: MediaKind.MEDIA_KIND_VOICE,
};

export function mediaKindName(kind: MediaKind): MediaKindName | undefined {
  return BY_ENUM[kind];
}

export function mediaKindOf(name: MediaKindName): MediaKind {
  return BY_NAME[name];
}
