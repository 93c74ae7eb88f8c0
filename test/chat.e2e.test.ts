import { inflateSync } from 'node:zlib';
import { Metadata } from '@grpc/grpc-js';
import { Worker } from '../src/worker/worker';
import { ChatStream, connected, codeName, longConversation, metadataFor, metric, openChat, startTestApp, unary, type TestApp } from './harness';
import { PAGE_BYTES } from '../src/gateway/history-service';
import { synthesizeVoice } from './voice-signal';
import { renderImage } from '../src/media/png';
import { SimulatedLlm } from '../src/llm/simulated';
import { Author, MessageStatus } from '../src/gen/chatflow/v1/history';
import type { ServerFrame } from '../src/gen/chatflow/v1/chat';

/** A minimal MP4 header: the server checks magic bytes, not the file's playability. */
const fakeMp4 = () => Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.alloc(12), Buffer.alloc(2048, 7)]);

async function download(url: string): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type'), bytes: Buffer.from(await res.arrayBuffer()) };
}

/** Decodes a PNG fully enough to prove it is one: chunks, IHDR, inflated pixel rows. */
function decodePng(bytes: Buffer): { width: number; height: number } {
  expect(bytes.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
  let off = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  while (off < bytes.length) {
    const len = bytes.readUInt32BE(off);
    const type = bytes.toString('ascii', off + 4, off + 8);
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
    }
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  expect(raw.length).toBe(height * (1 + width * 3));
  return { width, height };
}

describe('chat loop', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_MAX_MEDIA_BYTES: String(256 * 1024) });
  });
  afterAll(async () => t.close());

  it('welcomes with the session, the conversation and the client\'s local time', async () => {
    const s = await connected(t, 'welcomed', { 'x-timezone': 'Asia/Kolkata' });
    const w = s.welcome()!;
    expect(w.clientId).toBe('welcomed');
    expect(w.sessionId).toMatch(/[0-9a-f-]{36}/);
    expect(w.conversationId).toMatch(/[0-9a-f-]{36}/);
    expect(w.localTime).toMatch(/\+05:30$/);
    expect(w.maxMediaBytes).toBe(256 * 1024);
    s.cancel();
  });

  it('answers text with text only, after an Accepted with a seq; an answer the model gave at once comes whole, with no delta before it', async () => {
    const s = await connected(t, 'texter');
    const cm = s.text('What time is it?');
    const r = await s.reply(cm);
    const accepted = s.of('accepted')[0].accepted;
    expect(accepted.clientMessageId).toBe(cm);
    expect(accepted.seq).toBeGreaterThan(0);
    expect(r.inReplyTo).toBe(accepted.messageId);
    expect(r.seq).toBeGreaterThan(accepted.seq);
    expect(r.text.length).toBeGreaterThan(0);
    expect(r.voice).toBeUndefined();
    expect(r.image).toBeUndefined();
    // This model answers in no time (delay scale 0): the reply carries the words, a delta would repeat them.
    // Token-by-token streaming is proven with a paced provider in provider.e2e.test.ts and grpc-web.e2e.test.ts.
    expect(s.of('delta').filter((d) => d.delta.inReplyTo === accepted.messageId)).toEqual([]);
    // Accepted comes before anything about the message.
    const kinds = s.frames.map((f) => f.frame?.$case);
    expect(kinds.indexOf('accepted')).toBeLessThan(kinds.indexOf('response'));
    s.end();
  });

  it('its worker (in its thread) begins on a text and a voice message while they are stored, and answers each once', async () => {
    const adopted = () => metric(t, 'chatflow_early_starts_total{outcome="adopted"}').then((n) => (Number.isNaN(n) ? 0 : n));
    const before = await adopted();
    const s = await connected(t, 'early');
    const wav = synthesizeVoice('hello there').bytes;
    // Messages are begun early only while the loop was less than half busy over its last 250 ms (LoopRoom): this
    // process has just compiled and started the app, which on a slower machine is more than that.
    await new Promise((r) => setTimeout(r, 600));
    const ids = [s.text('hello'), s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs: 0 } } })];
    for (const cm of ids) await s.reply(cm);
    await new Promise((r) => setTimeout(r, 100)); // anything more would come now
    expect(s.of('response')).toHaveLength(2);
    expect(await adopted()).toBe(before + 2);
    s.end();
  });

  it('answers audio with text that says it cannot listen, and no voice, when no speech engine is set up (never tones)', async () => {
    const s = await connected(t, 'speaker');
    const wav = synthesizeVoice('hello there, this is a test recording').bytes;
    const cm = s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs: 0 } } });
    const r = await s.reply(cm);
    expect(r.text).toMatch(/voice message \(audio\/wav, .*\), but I cannot listen to it: no speech recognizer is set up/);
    expect(r.image).toBeUndefined();
    expect(r.voice).toBeUndefined();
    expect(s.frames.some((f) => f.frame?.$case === 'voiceChunk' || f.frame?.$case === 'transcript')).toBe(false);
    s.end();
  });

  it('answers video with text and an image that decodes as PNG (real voice and keyframe: test/speech.e2e.test.ts)', async () => {
    const s = await connected(t, 'filmer');
    const mp4 = fakeMp4();
    const cm = s.send({ content: { $case: 'video', video: { mimeType: 'video/mp4', data: mp4, url: '', sizeBytes: mp4.length, durationMs: 0 } } });
    const r = await s.reply(cm);
    expect(r.voice).toBeUndefined();
    const img = await download(r.image!.url);
    expect(img.type).toBe('image/png');
    const { width, height } = decodePng(img.bytes);
    expect(width * height).toBeGreaterThan(100);
    s.end();
  });

  it('answers an image with text', async () => {
    const s = await connected(t, 'painter');
    const png = renderImage({ title: 'hi', seed: 'x' }).bytes;
    const cm = s.send({ content: { $case: 'image', image: { mimeType: 'image/png', data: png, url: '', sizeBytes: png.length, durationMs: 0 } } });
    const r = await s.reply(cm);
    expect(r.text).toMatch(/image/i);
    s.end();
  });

  it('refuses bad messages with a per-message ChatError and keeps the stream open', async () => {
    const s = await connected(t, 'clumsy');
    const png = renderImage({ title: 'not audio', seed: 'y' }).bytes;
    const big = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVE'), Buffer.alloc(300 * 1024)]);
    const cases: [string, () => string, string, RegExp][] = [
      ['mismatched magic', () => s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: png, url: '', sizeBytes: png.length, durationMs: 0 } } }), 'INVALID_ARGUMENT', /PNG/],
      ['too big', () => s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: big, url: '', sizeBytes: big.length, durationMs: 0 } } }), 'RESOURCE_EXHAUSTED', /limit/],
      ['empty text', () => s.text(''), 'INVALID_ARGUMENT', /empty/],
      ['no content', () => s.send({ content: undefined }), 'INVALID_ARGUMENT', /no content/],
      ['no id', () => s.send({ clientMessageId: '', content: { $case: 'text', text: 'x' } }), 'INVALID_ARGUMENT', /client_message_id/],
      ['unknown type', () => s.send({ content: { $case: 'image', image: { mimeType: 'image/bmp', data: png, url: '', sizeBytes: 1, durationMs: 0 } } }), 'INVALID_ARGUMENT', /image\/bmp/],
    ];
    for (const [name, send, code, message] of cases) {
      const before = s.of('error').length;
      const cm = send();
      await s.until((f) => f.filter((x) => x.frame?.$case === 'error').length > before, 5000, `error for ${name}`);
      const e = s.of('error')[before].error;
      expect({ name, code: e.code }).toEqual({ name, code });
      expect(e.message).toMatch(message);
      if (cm) expect(e.inReplyTo).toBe(cm);
    }
    // Still open and working.
    await s.reply(s.text('and now a good one'));
    expect(s.of('accepted')).toHaveLength(1);
    expect(await metric(t, 'chatflow_messages_rejected_total{code="INVALID_ARGUMENT"}')).toBeGreaterThanOrEqual(5);
    s.end();
  });

  it('serves a stream whose client set a deadline weeks away (past the longest delay a Node timer takes), and still ends one whose deadline passed', async () => {
    // 30 days = 2,592,000,000 ms: more than 2^31 - 1, which a timer cannot wait. grpc-js armed its deadline timer
    // with it as is (wrapped to a negative int32), so the stream ended DEADLINE_EXCEEDED at once.
    const far = new ChatStream(t.chat.chat(await metadataFor(t, 'patient'), { deadline: Date.now() + 30 * 86_400_000 }));
    await far.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 10_000, 'welcome');
    await far.reply(far.text('are you still there next month?'));
    await new Promise((r) => setTimeout(r, 200));
    expect(far.isDone()).toBe(false);
    far.end();
    expect(codeName((await far.status).code)).toBe('OK');

    const near = new ChatStream(t.chat.chat(await metadataFor(t, 'hurried'), { deadline: Date.now() + 1_500 }));
    await near.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 10_000, 'welcome');
    expect(codeName((await near.status).code)).toBe('DEADLINE_EXCEEDED');
  });

  it('processes a resent client_message_id once, acknowledges it with the same id and seq and gives its reply again', async () => {
    const s = await connected(t, 'resender');
    s.text('only once', 'same-key');
    await s.reply('same-key');
    s.text('only once', 'same-key');
    await s.until((f) => f.filter((x) => x.frame?.$case === 'accepted').length === 2, 5000, 'second accepted');
    const [a1, a2] = s.of('accepted').map((a) => a.accepted);
    expect(a2).toEqual({ ...a1, duplicate: true });
    await s.until((f) => f.filter((x) => x.frame?.$case === 'response').length === 2, 5000, 'the reply again');
    await new Promise((r) => setTimeout(r, 200));
    // One reply, delivered once per send: the same message id and seq twice.
    const [r1, r2] = s.of('response').map((r) => r.response);
    expect(s.of('response')).toHaveLength(2);
    expect(r2).toEqual(r1);
    s.end();
    await s.status;
    // Across connections too: the read model knows the message.
    const again = await connected(t, 'resender', { 'x-conversation-id': s.welcome()!.conversationId });
    again.text('only once', 'same-key');
    await again.until((f) => f.some((x) => x.frame?.$case === 'accepted'), 5000, 'accepted');
    expect(again.of('accepted')[0].accepted).toEqual({ ...a1, duplicate: true });
    again.end();
  });

  it('replays what a reconnecting client missed after x-resume-after', async () => {
    const slow = await startTestApp({ CHATFLOW_SIM_DELAY_SCALE: '0.3' });
    try {
      const s = await connected(slow, 'flaky');
      const conversationId = s.welcome()!.conversationId;
      const first = s.text('first');
      await s.reply(first);
      const seenSeq = s.responseTo(first)!.seq;
      const cm = s.text('answer me while I am away');
      await s.until(() => s.messageIdOf(cm) !== undefined, 5000, 'accepted');
      s.cancel();
      await s.status;
      await new Promise((r) => setTimeout(r, 600));
      const back = await connected(slow, 'flaky', { 'x-conversation-id': conversationId, 'x-resume-after': String(seenSeq) });
      await back.until((f) => f.some((x) => x.frame?.$case === 'response'), 5000, 'replayed response');
      const replayed = back.of('response').map((r) => r.response);
      expect(replayed).toHaveLength(1);
      expect(replayed[0].inReplyTo).toBe(s.messageIdOf(cm));
      expect(replayed[0].seq).toBeGreaterThan(seenSeq);
      back.end();
    } finally {
      await slow.close();
    }
  });

  it('serves Connect + Send (the gRPC-Web pair) under the same rules', async () => {
    const md = await metadataFor(t, 'browser');
    const call = t.chat.connect({}, md);
    const frames: ServerFrame[] = [];
    call.on('data', (f: ServerFrame) => frames.push(f));
    call.on('error', () => undefined);
    await until(() => frames.length > 0);
    const w = frames[0].frame;
    if (w?.$case !== 'welcome') throw new Error('no welcome');
    const ack = await unary(t.chat.send.bind(t.chat), { sessionId: w.welcome.sessionId, message: { clientMessageId: 'b1', content: { $case: 'text', text: 'hi from a browser' } } }, md);
    expect(ack.seq).toBeGreaterThan(0);
    await until(() => frames.some((f) => f.frame?.$case === 'response'));
    // Bad input on Send is a status, not a dropped message.
    const bad = unary(t.chat.send.bind(t.chat), { sessionId: w.welcome.sessionId, message: { clientMessageId: 'b2', content: { $case: 'text', text: ' ' } } }, md);
    await expect(bad).rejects.toMatchObject({ code: 3 });
    const otherMd = await metadataFor(t, 'intruder');
    await expect(unary(t.chat.send.bind(t.chat), { sessionId: w.welcome.sessionId, message: { clientMessageId: 'x', content: { $case: 'text', text: 'x' } } }, otherMd)).rejects.toMatchObject({ code: 7 });
    await expect(unary(t.chat.send.bind(t.chat), { sessionId: 'nope', message: { clientMessageId: 'x', content: { $case: 'text', text: 'x' } } }, md)).rejects.toMatchObject({ code: 5 });
    call.cancel();
  });

  it('serves the caller\'s own history, oldest first, in pages', async () => {
    const s = await connected(t, 'historian');
    const conversationId = s.welcome()!.conversationId;
    for (let i = 0; i < 3; i++) await s.reply(s.text(`message ${i}`));
    s.end();
    await s.status;
    const md = await metadataFor(t, 'historian');
    const list = await unary(t.history.listConversations.bind(t.history), { pageSize: 10, pageToken: '' }, md);
    expect(list.conversations.map((c) => c.conversationId)).toContain(conversationId);
    expect(list.conversations.find((c) => c.conversationId === conversationId)!.messageCount).toBe(6);
    const page1 = await unary(t.history.listMessages.bind(t.history), { conversationId, pageSize: 4, pageToken: '', afterSeq: 0 }, md);
    expect(page1.messages).toHaveLength(4);
    expect(page1.nextPageToken).not.toBe('');
    const page2 = await unary(t.history.listMessages.bind(t.history), { conversationId, pageSize: 4, pageToken: page1.nextPageToken, afterSeq: 0 }, md);
    expect(page2.messages).toHaveLength(2);
    expect(page2.nextPageToken).toBe('');
    const all = [...page1.messages, ...page2.messages];
    expect(all.map((m) => m.seq)).toEqual([...all.map((m) => m.seq)].sort((a, b) => a - b));
    expect(all.map((m) => m.author)).toEqual([1, 2, 1, 2, 1, 2].map((a) => (a === 1 ? Author.AUTHOR_CLIENT : Author.AUTHOR_BOT)));
    expect(all.filter((m) => m.author === Author.AUTHOR_CLIENT).every((m) => m.status === MessageStatus.MESSAGE_STATUS_ANSWERED)).toBe(true);
    const conv = await unary(t.history.getConversation.bind(t.history), { conversationId }, md);
    expect(conv.conversation?.timeZone).toBe('Europe/Paris');
    const other = await metadataFor(t, 'snoop');
    await expect(unary(t.history.listMessages.bind(t.history), { conversationId, pageSize: 0, pageToken: '', afterSeq: 0 }, other)).rejects.toMatchObject({ code: 7 });
    await expect(unary(t.history.getConversation.bind(t.history), { conversationId: 'nope' }, md)).rejects.toMatchObject({ code: 5 });
    await expect(unary(t.history.listMessages.bind(t.history), { conversationId, pageSize: 5000, pageToken: '', afterSeq: 0 }, md)).rejects.toMatchObject({ code: 3 });
    await expect(unary(t.history.listConversations.bind(t.history), { pageSize: 1, pageToken: 'garbage' }, md)).rejects.toMatchObject({ code: 3 });
    await expect(unary(t.history.listConversations.bind(t.history), { pageSize: 1, pageToken: '' }, new Metadata())).rejects.toMatchObject({ code: 16 });
  });

  it('refuses a history request that is not protobuf, or whose strings are not UTF-8, with INVALID_ARGUMENT in words, not INTERNAL', async () => {
    const md = await metadataFor(t, 'historian');
    const raw = (method: string, bytes: Buffer) =>
      new Promise<{ code: string; details: string }>((resolve) =>
        t.history.makeUnaryRequest(`/chatflow.v1.HistoryService/${method}`, (b: Buffer) => b, (b: Buffer) => b, bytes, md, (err) =>
          resolve({ code: codeName(err?.code ?? 0), details: err?.details ?? '' }),
        ),
      );
    // A length-delimited field 1 that claims 127 bytes and has 2: "Error deserializing request", INTERNAL, before.
    expect(await raw('ListMessages', Buffer.from([0x0a, 0x7f, 0x61, 0x62]))).toEqual({ code: 'INVALID_ARGUMENT', details: expect.stringMatching(/not a valid protobuf message/) });
    // conversation_id = "ab" followed by bytes that are not UTF-8: taken as "ab\uFFFD\uFFFD" before (NOT_FOUND).
    expect(await raw('GetConversation', Buffer.from([0x0a, 0x04, 0x61, 0x62, 0xff, 0xfe]))).toEqual({ code: 'INVALID_ARGUMENT', details: expect.stringMatching(/not valid UTF-8/) });
    // A well-formed one still answers.
    expect(await raw('ListConversations', Buffer.alloc(0))).toEqual({ code: 'OK', details: '' });
  });

  it('cuts a page of long messages at about 1 MiB, so that a client with gRPC\'s default 4 MiB receive limit reads them all', async () => {
    // 70 texts of 64,000 bytes: 4.5 MB with their replies, in one page of 1,000 before.
    const conversationId = await longConversation(t, 'novelist', 70);
    const md = await metadataFor(t, 'novelist');
    const seqs: number[] = [];
    let pages = 0;
    for (let pageToken = ''; ; pages++) {
      const page = await unary(t.history.listMessages.bind(t.history), { conversationId, pageSize: 1000, pageToken, afterSeq: 0 }, md);
      expect(page.messages.reduce((n, m) => n + Buffer.byteLength(m.text), 0)).toBeLessThanOrEqual(PAGE_BYTES);
      seqs.push(...page.messages.map((m) => m.seq));
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }
    expect(seqs).toHaveLength(140);
    expect(new Set(seqs).size).toBe(140);
    expect(pages).toBeGreaterThanOrEqual(4);
  }, 120_000);

  it('exposes health and Prometheus metrics', async () => {
    const h = await fetch(`${t.app.httpUrl}/healthz`);
    expect(h.status).toBe(200);
    const body = await (await fetch(`${t.app.httpUrl}/metrics`)).text();
    for (const name of ['chatflow_clients_connected', 'chatflow_admissions_refused_total', 'chatflow_messages_processing', 'chatflow_messages_waiting', 'chatflow_reply_latency_seconds_bucket', 'chatflow_processing_seconds_bucket']) {
      expect(body).toContain(name);
    }
    // Engine waits (the earlier tests sent text and audio): appends by topic, uploads and reply media by kind.
    const count = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN);
    expect(count('chatflow_log_append_seconds_count{topic="conversations"}')).toBeGreaterThan(0);
    expect(count('chatflow_log_append_seconds_count{topic="sessions"}')).toBeGreaterThan(0);
    expect(count('chatflow_media_put_seconds_count{kind="upload"}')).toBeGreaterThan(0);
    expect(count('chatflow_media_put_seconds_count{kind="reply"}')).toBeGreaterThan(0);
    // The worker answers in its own thread (the default): its counts are in the process's /metrics, the
    // process-wide ones once, and what the event loop reads of it is its own.
    expect(t.app.worker).not.toBeInstanceOf(Worker);
    expect(count('chatflow_responses_total{outcome="answered"}')).toBeGreaterThan(0);
    expect(count('chatflow_messages_processing_peak')).toBeGreaterThan(0);
    expect(body.match(/^chatflow_process_cpu_seconds_total /gm)).toHaveLength(1);
    // The thread stores its counts where the event loop reads them as they change: no wait.
    expect(t.app.worker!.peak).toBe(count('chatflow_messages_processing_peak'));
  });
});

describe('processing budget', () => {
  it('keeps at most 500 messages in processing while 600 are in flight, and answers all 600', async () => {
    // Every text takes ~3 s: all 600 are in the log long before the first 500 finish, however busy the machine.
    const t = await startTestApp({}, { llm: new SimulatedLlm({ delayScale: 3, random: () => 0.99 }) });
    try {
      const streams = await Promise.all(Array.from({ length: 10 }, (_, i) => connected(t, `burst-${i}`)));
      const sent = streams.map((s) => Array.from({ length: 60 }, (_, j) => s.text(`burst ${j}`)));
      let maxWaiting = 0;
      let maxProcessing = 0;
      const probe = setInterval(() => {
        maxWaiting = Math.max(maxWaiting, t.app.worker!.stats().waiting);
        maxProcessing = Math.max(maxProcessing, t.app.worker!.processing);
      }, 20);
      await Promise.all(streams.map((s, i) => s.until((f) => f.filter((x) => x.frame?.$case === 'response').length === 60, 60_000, `60 replies on stream ${i}`)));
      clearInterval(probe);
      expect(t.app.worker!.peak).toBe(500);
      expect(await metric(t, 'chatflow_messages_processing_peak')).toBe(500);
      expect(maxWaiting).toBeGreaterThan(0); // the extra 100 waited in the log
      // What the event loop reads of the thread's count (/healthz, the drain) is the thread's: 500 at most, 0 once all are done.
      expect(maxProcessing).toBe(500);
      await until(() => t.app.worker!.processing === 0);
      for (const [i, s] of streams.entries()) for (const cm of sent[i]) expect(s.responseTo(cm)).toBeDefined();
      for (const s of streams) s.end();
    } finally {
      await t.close();
    }
  }, 90_000);
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export { codeName, openChat };
