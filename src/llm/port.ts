import type { InputKind } from '../domain/media-kind';

export interface LlmRequest {
  messageId: string;
  kind: InputKind;
  /** The text of a text message. */
  text?: string;
  /** Size and type of a media message (the model sees a description, not bytes). */
  media?: { mimeType: string; sizeBytes: number; durationMs?: number };
  /**
   * What a voice or video message said: the recognizer's text ('' when it
   * heard no words), or undefined when it could not listen (see `hearingNote`).
   */
  transcript?: string;
  /** Why there is no transcript, or what of the recording the transcript leaves out, in words a person understands. */
  hearingNote?: string;
  /** A video's keyframe, for models that accept images (LLM_VISION). */
  image?: { mimeType: string; data: Buffer };
  /** IANA zone of the client: replies speak its local time. */
  timeZone: string;
  now: Date;
  /** Earlier turns of the conversation, oldest first. */
  history: readonly { author: 'client' | 'bot'; text: string }[];
}

export interface LlmReply {
  text: string;
  model: string;
}

export interface LlmCallOptions {
  signal: AbortSignal;
  /** Called with each streamed piece of the reply, in order. */
  onDelta(text: string): void;
}

export interface LlmProvider {
  readonly name: string;
  /** Whether the provider reads earlier turns (the worker only loads them then). */
  readonly usesHistory: boolean;
  /** Rejects with LlmError on provider failure (never hangs past its timeout). */
  generate(request: LlmRequest, options: LlmCallOptions): Promise<LlmReply>;
}

export class LlmError extends Error {
  constructor(
    message: string,
    /** gRPC status code name reported to the client in ChatError.code. */
    readonly code: 'UNAVAILABLE' | 'DEADLINE_EXCEEDED' | 'INTERNAL' | 'RESOURCE_EXHAUSTED' | 'INVALID_ARGUMENT',
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'LlmError';
  }
}
