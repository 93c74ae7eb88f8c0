import type { Content } from './session';

export type MediaKind = 'audio' | 'video' | 'image';

const BY_EXTENSION: Record<string, string> = {
  wav: 'audio/wav', mp3: 'audio/mpeg', ogg: 'audio/ogg', oga: 'audio/ogg', opus: 'audio/opus', flac: 'audio/flac', m4a: 'audio/mp4', aac: 'audio/aac', weba: 'audio/webm',
  mp4: 'video/mp4', m4v: 'video/mp4', mov: 'video/quicktime', webm: 'video/webm', mkv: 'video/x-matroska', ogv: 'video/ogg', avi: 'video/x-msvideo',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
};

/** The declared type of a file: what the browser says, else guessed from the extension. Parameters dropped. */
export function mimeTypeOf(file: { name: string; type: string }): string {
  const declared = file.type.split(';')[0]!.trim().toLowerCase();
  if (declared) return declared;
  return BY_EXTENSION[file.name.split('.').pop()?.toLowerCase() ?? ''] ?? '';
}

export function kindOf(mimeType: string): MediaKind | undefined {
  const top = mimeType.split('/')[0];
  return top === 'audio' || top === 'video' || top === 'image' ? top : undefined;
}

export async function mediaContent(kind: MediaKind, mimeType: string, blob: Blob): Promise<Content> {
  const data = new Uint8Array(await blob.arrayBuffer());
  return { case: kind, value: { mimeType, data, sizeBytes: BigInt(data.length) } };
}

/**
 * Records a voice message with MediaRecorder (WebM/Opus where the browser has
 * it, which the server accepts as audio/webm).
 */
export class VoiceRecorder {
  private recorder?: MediaRecorder;
  private stream?: MediaStream;

  static supported(): boolean {
    return typeof MediaRecorder !== 'undefined' && !!navigator.mediaDevices?.getUserMedia;
  }

  get recording(): boolean {
    return this.recorder?.state === 'recording';
  }

  async start(): Promise<void> {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const type = ['audio/webm;codecs=opus', 'audio/webm', 'audio/ogg;codecs=opus', 'audio/mp4'].find((t) => MediaRecorder.isTypeSupported(t));
    this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : undefined);
    this.recorder.start();
  }

  /** Stops and returns the recording with its base mime type. */
  stop(): Promise<{ blob: Blob; mimeType: string }> {
    const recorder = this.recorder;
    if (!recorder) return Promise.reject(new Error('not recording'));
    return new Promise((resolve) => {
      const chunks: Blob[] = [];
      recorder.addEventListener('dataavailable', (e) => chunks.push(e.data));
      recorder.addEventListener('stop', () => {
        for (const t of this.stream?.getTracks() ?? []) t.stop();
        this.recorder = undefined;
        const mimeType = (recorder.mimeType || 'audio/webm').split(';')[0]!;
        resolve({ blob: new Blob(chunks, { type: mimeType }), mimeType });
      }, { once: true });
      recorder.stop();
    });
  }
}
