import { MediaKind } from '../gen/chatflow/v1/events';

/** The one mapping between the event enum and the names used everywhere else. */
export type MediaKindName = 'audio' | 'video' | 'image' | 'voice';

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
