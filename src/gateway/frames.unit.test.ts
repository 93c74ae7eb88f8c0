import { MediaKind, type Event, type MediaRef } from '../gen/chatflow/v1/events';
import type { LoggedEvent } from '../eventlog/port';
import type { MediaStore } from '../media/port';
import { decodeReplyUpdate, encodeReplyUpdate, type ReplyUpdate } from '../bus/messages';
import { messagesProjection } from '../../projections/definitions';
import { FrameFactory, outcomeOf } from './frames';

const media: MediaStore = {
  put: async () => undefined,
  get: async () => null,
  url: async (key, ttlMs) => `https://media.test/${key}?ttl=${ttlMs}`,
  close: async () => undefined,
};
const frames = new FrameFactory(media, 60_000);
const time = new Date('2026-11-22T10:00:00Z');
const voice: MediaRef = { kind: MediaKind.MEDIA_KIND_VOICE, key: 'replies/c1/r1.wav', mimeType: 'audio/wav', sizeBytes: 4410, sha256: '', durationMs: 1200 };
const image: MediaRef = { kind: MediaKind.MEDIA_KIND_IMAGE, key: 'replies/c1/r1.png', mimeType: 'image/png', sizeBytes: 999, sha256: '', durationMs: 0 };

/** What the worker appends, at `seq`, and what the projector makes of it. */
function recorded(payload: Event['payload'], seq: number) {
  const logged = { seq, topic: 'conversations', partition: 0, offset: seq, event: { eventId: `e${seq}`, time, clientId: 'alice', conversationId: 'c1', sessionId: 's1', payload } } as LoggedEvent;
  const id = messagesProjection.documentIds(logged).find((d) => d !== 'm1')!;
  return messagesProjection.evolve(null, logged, id)!;
}

/** Through the bus and back, as the gateway receives it. */
const overTheBus = (u: ReplyUpdate) => decodeReplyUpdate(encodeReplyUpdate(u));

describe('FrameFactory.replyFrame: one way from a reply to client frames', () => {
  it('given a reply published live and the same reply read back from the read model (resume, duplicate key), then both become the same BotResponse, media as URLs', async () => {
    const live = overTheBus({ inReplyTo: 'm1', seq: 7, update: { $case: 'ready', ready: { responseId: 'r1', time, text: 'Hello', voice, image, processingMs: 321 } } });
    const doc = recorded({ $case: 'responseProduced', responseProduced: { messageId: 'r1', inReplyTo: 'm1', text: 'Hello', voice, image, processingMs: 321, workerId: 'w', model: 'm', transcript: '' } }, 7);
    const fromLive = await frames.replyFrame(live);
    expect(await frames.replyFrame(outcomeOf(doc))).toEqual(fromLive);
    expect(fromLive).toEqual({
      frame: {
        $case: 'response',
        response: {
          messageId: 'r1', inReplyTo: 'm1', seq: 7, text: 'Hello', processingMs: 321, time,
          voice: { mimeType: 'audio/wav', data: Buffer.alloc(0), url: 'https://media.test/replies/c1/r1.wav?ttl=60000', sizeBytes: 4410, durationMs: 1200 },
          image: { mimeType: 'image/png', data: Buffer.alloc(0), url: 'https://media.test/replies/c1/r1.png?ttl=60000', sizeBytes: 999, durationMs: 0 },
        },
      },
    });
  });

  it('given a failure published live and read back (resume, a resend of its key), then both become the same ChatError with the seq and retry_after_ms of the failure', async () => {
    for (const retryAfterMs of [0, 700]) {
      const live = overTheBus({ inReplyTo: 'm1', seq: 8, update: { $case: 'failed', failed: { code: 'UNAVAILABLE', message: 'the model could not answer: down', retryAfterMs } } });
      const doc = recorded({ $case: 'processingFailed', processingFailed: { inReplyTo: 'm1', code: 'UNAVAILABLE', message: 'the model could not answer: down', workerId: 'w', transcript: '', retryAfterMs } }, 8);
      const fromLive = await frames.replyFrame(live);
      expect(await frames.replyFrame(outcomeOf(doc))).toEqual(fromLive);
      expect(fromLive).toEqual({ frame: { $case: 'error', error: { inReplyTo: 'm1', code: 'UNAVAILABLE', message: 'the model could not answer: down', seq: 8, retryAfterMs } } });
    }
  });

  it('given live-only updates, then the transcript, deltas and voice chunks (bytes inline, the closing one empty) reach the client as frames', async () => {
    const wav = Buffer.from('RIFF....WAVE');
    expect(await frames.replyFrame(overTheBus({ inReplyTo: 'm1', update: { $case: 'delta', delta: { text: 'Hel' } } }))).toEqual({ frame: { $case: 'delta', delta: { inReplyTo: 'm1', textDelta: 'Hel' } } });
    expect(await frames.replyFrame(overTheBus({ inReplyTo: 'm1', update: { $case: 'transcript', transcript: { text: 'hi there', engine: 'pocketsphinx', words: [{ word: 'hi', startMs: 0, endMs: 200 }] } } }))).toEqual({
      frame: { $case: 'transcript', transcript: { messageId: 'm1', text: 'hi there', engine: 'pocketsphinx', words: [{ word: 'hi', startMs: 0, endMs: 200 }] } },
    });
    expect(await frames.replyFrame(overTheBus({ inReplyTo: 'm1', update: { $case: 'voiceChunk', voiceChunk: { index: 0, wav, durationMs: 300, last: false } } }))).toEqual({
      frame: { $case: 'voiceChunk', voiceChunk: { inReplyTo: 'm1', index: 0, last: false, audio: { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs: 300 } } },
    });
    expect(await frames.replyFrame(overTheBus({ inReplyTo: 'm1', update: { $case: 'voiceChunk', voiceChunk: { index: 1, wav: Buffer.alloc(0), durationMs: 0, last: true } } }))).toEqual({
      frame: { $case: 'voiceChunk', voiceChunk: { inReplyTo: 'm1', index: 1, last: true, audio: undefined } },
    });
  });

  it('given an update of a kind this gateway does not know (a newer worker), then no frame is made', async () => {
    expect(await frames.replyFrame({ inReplyTo: 'm1', update: undefined })).toBeUndefined();
  });
});
