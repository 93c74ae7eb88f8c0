import type { VoiceChunk } from './gen/chatflow/v1/chat_pb';

/**
 * Plays a voice reply as it is synthesized: each VoiceChunk is a small WAV,
 * played in order as soon as the one before ends. The whole voice still comes
 * with the reply, in its own player.
 */
export class VoiceStream {
  private readonly queue: HTMLAudioElement[] = [];
  private playing = false;

  push(chunk: VoiceChunk): void {
    const data = chunk.audio?.data;
    if (!data || data.length === 0) return;
    const url = URL.createObjectURL(new Blob([data as BlobPart], { type: chunk.audio!.mimeType || 'audio/wav' }));
    const audio = new Audio(url);
    audio.onended = audio.onerror = () => {
      URL.revokeObjectURL(url);
      this.playing = false;
      this.next();
    };
    this.queue.push(audio);
    this.next();
  }

  private next(): void {
    if (this.playing) return;
    const audio = this.queue.shift();
    if (!audio) return;
    this.playing = true;
    // A browser that refuses to play without a gesture: skip to the next (the whole voice has a player).
    audio.play().catch(() => audio.onended?.(new Event('ended')));
  }
}
