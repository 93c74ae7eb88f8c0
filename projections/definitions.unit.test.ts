import { DisconnectReason, MediaKind, type Event } from '../src/gen/chatflow/v1/events';
import type { LoggedEvent } from '../src/eventlog/port';
import { topicOf } from '../src/eventlog/port';
import { MemoryReadStore } from '../src/readstore/memory';
import { ProjectionRunner } from './runner';
import { COLLECTIONS, type ConversationDoc, type MessageDoc, type SessionDoc } from './models';
import type { EventLog } from '../src/eventlog/port';
import { contentHash, storedContentHash } from '../src/domain/message-content';

let offset = 0;
const at = (payload: Event['payload'], over: Partial<Event> = {}): LoggedEvent => {
  const event: Event = { eventId: `e${offset}`, time: new Date(1_000 + offset), clientId: 'alice', conversationId: 'c1', sessionId: 's1', payload, ...over };
  const o = offset++;
  return { event, topic: topicOf(event), partition: 0, offset: o, seq: o + 1 };
};
const connectedE = () => at({ $case: 'clientConnected', clientConnected: { gatewayId: 'g1', timeZone: 'Europe/Paris', newConversation: true } });
const received = (id: string, text = 'hi') => at({ $case: 'messageReceived', messageReceived: { messageId: id, clientMessageId: `k-${id}`, gatewayId: 'g1', timeZone: 'Europe/Paris', content: { $case: 'text', text } } });
const produced = (inReplyTo: string, transcript = '') =>
  at({ $case: 'responseProduced', responseProduced: { messageId: `r_${inReplyTo}`, inReplyTo, text: 'answer', processingMs: 12, workerId: 'w', model: 'sim', transcript,
    voice: { kind: MediaKind.MEDIA_KIND_VOICE, key: 'v.wav', mimeType: 'audio/wav', sizeBytes: 10, sha256: '', durationMs: 900 } } });
const failed = (inReplyTo: string, transcript = '') => at({ $case: 'processingFailed', processingFailed: { inReplyTo, code: 'UNAVAILABLE', message: 'model down', workerId: 'w', transcript, retryAfterMs: 0 } });
const disconnected = () => at({ $case: 'clientDisconnected', clientDisconnected: { reason: DisconnectReason.DISCONNECT_REASON_DEADLINE, gatewayId: 'g1', detail: '' } });

async function project(events: LoggedEvent[], replays = 1) {
  const store = new MemoryReadStore({ checkPurity: true });
  const runner = new ProjectionRunner({} as EventLog, store, { fromBeginning: true });
  for (let r = 0; r < replays; r++) for (const e of events) await runner.apply(e);
  return {
    conversation: (id: string) => store.collection<ConversationDoc>(COLLECTIONS.conversations).get(id),
    message: (id: string) => store.collection<MessageDoc>(COLLECTIONS.messages).get(id),
    messages: () => store.collection<MessageDoc>(COLLECTIONS.messages).find({ sort: { field: 'seq', direction: 1 } }),
    session: (id: string) => store.collection<SessionDoc>(COLLECTIONS.sessions).get(id),
  };
}

describe('projections', () => {
  beforeEach(() => (offset = 0));

  it('given the messages projected before the connection (two topics, no order between them), then the same conversation as in log order', async () => {
    const connect = connectedE();
    const events = [received('m1', 'first'), produced('m1'), received('m2', 'second')];
    const inOrder = await (await project([connect, ...events])).conversation('c1');
    const reversed = await (await project([...events, connect])).conversation('c1');
    expect(reversed).toEqual(inOrder);
    expect(inOrder).toMatchObject({ clientId: 'alice', createdSeq: 1, timeZone: 'Europe/Paris', started: true, preview: 'first' });
  });

  it('given a connection, then the conversation and an open session exist', async () => {
    const p = await project([connectedE()]);
    expect(await p.conversation('c1')).toMatchObject({ clientId: 'alice', timeZone: 'Europe/Paris', createdSeq: 1, lastSeq: 1 });
    expect(await p.session('s1')).toMatchObject({ open: true, gatewayId: 'g1', clientId: 'alice' });
  });

  it('given only connections, then the conversation is not started (history lists it only once it has a message)', async () => {
    const p = await project([connectedE(), disconnected(), connectedE()]);
    const c = await p.conversation('c1');
    expect(c?.started).toBeUndefined();
    expect(c?.preview).toBeUndefined();
  });

  it('given messages, then the conversation is started and previews its first message', async () => {
    const long = `${'a very long first question '.repeat(6)}end`;
    const p = await project([connectedE(), received('m1', long), received('m2', 'second')]);
    const c = await p.conversation('c1');
    expect(c?.started).toBe(true);
    expect(c?.preview).toBe(`${long.slice(0, 79)}…`);
    const media = at({ $case: 'messageReceived', messageReceived: { messageId: 'm9', clientMessageId: 'k9', gatewayId: 'g1', timeZone: 'UTC', content: { $case: 'media', media: { kind: MediaKind.MEDIA_KIND_AUDIO, key: 'a', mimeType: 'audio/wav', sizeBytes: 2048, sha256: '', durationMs: 0 } } } }, { conversationId: 'c2' });
    const p2 = await project([at({ $case: 'clientConnected', clientConnected: { gatewayId: 'g1', timeZone: 'UTC', newConversation: true } }, { conversationId: 'c2' }), media]);
    expect((await p2.conversation('c2'))?.preview).toBe('[audio]');
  });

  it('given a message and its reply, then the client entry is answered and the bot entry follows it', async () => {
    const p = await project([connectedE(), received('m1'), produced('m1')]);
    expect(await p.message('m1')).toMatchObject({ author: 'client', status: 'answered', text: 'hi', seq: 2 });
    expect(await p.message('r_m1')).toMatchObject({ author: 'bot', inReplyTo: 'm1', seq: 3, processingMs: 12, voice: { kind: 'voice', durationMs: 900 } });
    expect((await p.conversation('c1'))?.lastSeq).toBe(3);
  });

  it('given a voice message answered or failed with a transcript, then the transcript is on the client entry', async () => {
    const p = await project([connectedE(), received('m1'), produced('m1', 'what time is it in tokyo'), received('m2'), failed('m2', 'hello there'), received('m3'), produced('m3')]);
    expect(await p.message('m1')).toMatchObject({ status: 'answered', transcript: 'what time is it in tokyo' });
    expect(await p.message('m2')).toMatchObject({ status: 'failed', transcript: 'hello there' });
    expect((await p.message('m3'))?.transcript).toBeUndefined();
    expect((await p.message('r_m1'))?.transcript).toBeUndefined();
  });

  it('given a text and an audio message, then each entry gives the content hash a resend is checked against', async () => {
    const audio = at({ $case: 'messageReceived', messageReceived: { messageId: 'm2', clientMessageId: 'k-m2', gatewayId: 'g1', timeZone: 'Europe/Paris',
      content: { $case: 'media', media: { kind: MediaKind.MEDIA_KIND_AUDIO, key: 'a.wav', mimeType: 'audio/wav', sizeBytes: 10, sha256: 'ab', durationMs: 900 } } } });
    const p = await project([connectedE(), received('m1', 'some text'), produced('m1'), audio]);
    expect(storedContentHash((await p.message('m1'))!)).toBe(contentHash({ text: 'some text' }));
    expect(storedContentHash((await p.message('m2'))!)).toBe(contentHash({ mediaKind: 'audio', sha256: 'ab' }));
  });

  it('given a failure, then the client entry is failed and a bot entry carries the error', async () => {
    const p = await project([connectedE(), received('m1'), failed('m1')]);
    expect((await p.message('m1'))?.status).toBe('failed');
    expect(await p.message('f_m1')).toMatchObject({ author: 'bot', inReplyTo: 'm1', error: { code: 'UNAVAILABLE', message: 'model down' } });
  });

  it('given the same message appended twice, then the first one is kept', async () => {
    const p = await project([connectedE(), received('m1', 'first'), received('m1', 'again')]);
    expect(await p.message('m1')).toMatchObject({ text: 'first', seq: 2 });
    expect(await p.messages()).toHaveLength(1);
  });

  it('given two replies to one message, then one bot entry', async () => {
    const p = await project([connectedE(), received('m1'), produced('m1'), produced('m1')]);
    expect((await p.messages()).filter((m) => m.author === 'bot')).toHaveLength(1);
    expect((await p.message('r_m1'))?.seq).toBe(3);
  });

  it('given a disconnect, then the session is closed with its reason', async () => {
    const p = await project([connectedE(), disconnected()]);
    expect(await p.session('s1')).toMatchObject({ open: false, reason: 'deadline' });
  });

  it('given the whole log applied twice, then every read model is the same as once', async () => {
    const events = [connectedE(), received('m1'), produced('m1'), received('m2'), failed('m2'), disconnected()];
    const once = await project(events);
    const twice = await project(events, 2);
    expect(await twice.messages()).toEqual(await once.messages());
    expect(await twice.conversation('c1')).toEqual(await once.conversation('c1'));
    expect(await twice.session('s1')).toEqual(await once.session('s1'));
  });
});
