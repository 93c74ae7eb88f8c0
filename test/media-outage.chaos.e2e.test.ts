import { existsSync } from 'node:fs';
import { connected, startTestApp, unary, metadataFor, type ChatStream, type TestApp } from './harness';
import { openRetrying } from './idempotency.cases';
import { describeWhen } from './engines';
import { MINIO_BIN, PrivateMinio } from './private-engines';
import { SimulatedLlm } from '../src/llm/simulated';
import type { LlmProvider } from '../src/llm/port';
import { synthesizeVoice } from './voice-signal';

/*
 * Issue 10's MinIO fault, reproduced on one in-process server (embedded log)
 * whose media go to a private MinIO this test kills, freezes and restarts.
 * Before the fix: a reply whose image could not be stored failed for good
 * (ChatError INTERNAL "the reply could not be produced"), a frozen upload
 * left its client with neither Accepted nor an error, and the session's
 * text messages waited behind it. Asserted here: an object store back
 * within the deadline costs nothing but time; one that stays away fails the
 * message as UNAVAILABLE with retry_after_ms; a client waiting for Accepted
 * gets it or UNAVAILABLE within CHATFLOW_APPEND_TIMEOUT_MS; text is not held
 * back by a stuck upload; and an upload that lands after its timeout is
 * answered once, to the resend.
 */
const APPEND_TIMEOUT_MS = 1_500;
const ENGINE_DEADLINE_MS = 12_000; // above a MinIO restart on a loaded machine (3–6 s here)
const RETRY_AFTER_MS = 700;
const fakeMp4 = () => Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.alloc(12), Buffer.alloc(2048, 7)]);

/** The simulated model, except that video replies wait until the test opens the gate. */
class GatedLlm implements LlmProvider {
  readonly name = 'gated';
  readonly usesHistory = false;
  private readonly inner = new SimulatedLlm({ delayScale: 0 });
  private gate = opened();
  readonly waiting: string[] = [];
  generate: LlmProvider['generate'] = async (request, options) => {
    if (request.kind === 'video') {
      this.waiting.push(request.messageId);
      await this.gate.promise;
    }
    return this.inner.generate(request, options);
  };
  open(): void {
    this.gate.resolve();
  }
  close(): void {
    this.gate = opened();
  }
}

function opened(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const errorFor = (s: ChatStream, id: string) => s.of('error').find((e) => e.error.inReplyTo === id)?.error;
const video = () => {
  const mp4 = fakeMp4();
  return { content: { $case: 'video' as const, video: { mimeType: 'video/mp4', data: mp4, url: '', sizeBytes: mp4.length, durationMs: 0 } } };
};
const audio = () => {
  const wav = synthesizeVoice('a voice note sent while the object store is frozen').bytes;
  return { content: { $case: 'audio' as const, audio: { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs: 0 } } };
};

describeWhen(existsSync(MINIO_BIN), 'Media outage: the object store killed or frozen under a session', `needs MinIO at ${MINIO_BIN} (npm run stack:install)`, () => {
  jest.setTimeout(90_000);
  let minio: PrivateMinio;
  let t: TestApp;
  const llm = new GatedLlm();

  beforeAll(async () => {
    minio = await PrivateMinio.create();
    await minio.start();
    t = await startTestApp(
      { ...minio.env(), CHATFLOW_APPEND_TIMEOUT_MS: String(APPEND_TIMEOUT_MS), CHATFLOW_ENGINE_RETRY_DEADLINE_MS: String(ENGINE_DEADLINE_MS), CHATFLOW_RETRY_AFTER_MS: String(RETRY_AFTER_MS) },
      { llm },
    );
  });
  beforeEach(async () => {
    // Each case starts with the store up, whatever the one before left.
    minio.thaw();
    const p = minio.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) await minio.start();
  });
  afterAll(async () => {
    llm.open();
    minio?.thaw();
    await t?.close();
    await minio?.remove();
  });

  /** Sends a video, waits until its reply is being produced, then stops MinIO under it (SIGKILL). */
  async function videoInProcessing(s: ChatStream): Promise<string> {
    llm.close();
    const cm = s.send(video());
    await s.until(() => s.messageIdOf(cm) !== undefined, 10_000, 'Accepted of the video');
    const id = s.messageIdOf(cm)!;
    for (const end = Date.now() + 10_000; !llm.waiting.includes(id) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    await minio.kill();
    llm.open();
    return cm;
  }

  it('a reply whose image cannot be stored for a while waits for the store instead of failing', async () => {
    const s = await connected(t, 'media-back-soon');
    const cm = await videoInProcessing(s);
    // Down from the kill until the restarted MinIO serves again (its start-up): the reply is made, its image cannot be stored.
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 500));
    await minio.start();
    const outageMs = Date.now() - downAt;
    const id = s.messageIdOf(cm)!;
    await s.until(() => s.responseTo(cm) !== undefined || errorFor(s, id) !== undefined, ENGINE_DEADLINE_MS + 10_000, 'the outcome of the video');
    expect({ outageMs, error: errorFor(s, id) }).toEqual({ outageMs, error: undefined });
    expect(s.responseTo(cm)!.image?.url).toBeTruthy();
    s.end();
  });

  it('a store still down when the deadline passes fails the message as UNAVAILABLE with retry_after_ms, never INTERNAL', async () => {
    const s = await connected(t, 'media-gone');
    const cm = await videoInProcessing(s);
    const id = s.messageIdOf(cm)!;
    const started = Date.now();
    await s.until(() => errorFor(s, id) !== undefined, ENGINE_DEADLINE_MS + 10_000, 'the failure of the video');
    const err = errorFor(s, id)!;
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.retryAfterMs).toBe(RETRY_AFTER_MS);
    expect(Date.now() - started).toBeGreaterThanOrEqual(ENGINE_DEADLINE_MS - 3_000);
    expect(s.responseTo(cm)).toBeUndefined();
    const conversationId = s.welcome()!.conversationId;
    s.end();
    await s.status;
    // Replayed from the history (a resume after a reconnect), the failure says the same, retry_after_ms included.
    const back = await openRetrying(() => connected(t, 'media-gone', { 'x-conversation-id': conversationId, 'x-resume-after': '0' }));
    await back.until(() => errorFor(back, id) !== undefined, 10_000, 'the replayed failure of the video');
    expect(errorFor(back, id)).toEqual(err);
    back.end();
  });

  it('a frozen store: the upload gets UNAVAILABLE within the append timeout, text goes on, and the late upload is answered once, to the resend', async () => {
    const s = await connected(t, 'media-frozen');
    const voice = audio();
    minio.freeze();
    const sentAt = Date.now();
    const cmAudio = s.send(voice);
    const texts = [s.text('first text after the voice note'), s.text('second text after the voice note')];
    // Text is not held back by the upload: accepted in the client's order while the store is frozen, and answered.
    await s.until(() => texts.every((cm) => s.messageIdOf(cm) !== undefined), APPEND_TIMEOUT_MS, 'Accepted of the texts');
    expect(errorFor(s, cmAudio)).toBeUndefined(); // the upload is still stuck: the texts did not wait for it
    const textSeqs = texts.map((cm) => s.of('accepted').find((a) => a.accepted.clientMessageId === cm)!.accepted.seq);
    expect(textSeqs[0]).toBeLessThan(textSeqs[1]);
    for (const cm of texts) await s.reply(cm, 5_000);
    // The upload: neither Accepted nor silence, but UNAVAILABLE with a hint, within the append timeout.
    await s.until(() => errorFor(s, cmAudio) !== undefined, APPEND_TIMEOUT_MS + 1_500, 'UNAVAILABLE for the stuck upload');
    expect(Date.now() - sentAt).toBeLessThan(APPEND_TIMEOUT_MS + 1_000);
    expect(errorFor(s, cmAudio)).toMatchObject({ code: 'UNAVAILABLE', retryAfterMs: RETRY_AFTER_MS });
    expect(s.messageIdOf(cmAudio)).toBeUndefined();

    // The store comes back: the upload finishes and its message is appended (late) and answered, quietly.
    minio.thaw();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(s.of('accepted').filter((a) => a.accepted.clientMessageId === cmAudio)).toHaveLength(0);
    // The client sends it again as told: it is recognised, not processed twice, and gets its reply once.
    s.send({ clientMessageId: cmAudio, ...voice });
    await s.until(() => s.messageIdOf(cmAudio) !== undefined, 10_000, 'Accepted of the resend');
    const accepted = s.of('accepted').filter((a) => a.accepted.clientMessageId === cmAudio);
    expect(accepted).toHaveLength(1);
    expect(accepted[0].accepted.duplicate).toBe(true);
    const id = accepted[0].accepted.messageId;
    await s.until(() => s.of('response').some((r) => r.response.inReplyTo === id), 10_000, 'the reply to the voice note');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(s.of('response').filter((r) => r.response.inReplyTo === id)).toHaveLength(1);
    expect(s.of('error').filter((e) => e.error.inReplyTo === id)).toHaveLength(0);

    // The log holds the voice note once, with one reply.
    const history = await unary(t.history.listMessages.bind(t.history), { conversationId: s.welcome()!.conversationId, pageSize: 100, pageToken: '', afterSeq: 0 }, await metadataFor(t, 'media-frozen'));
    expect(history.messages.filter((m) => m.messageId === id)).toHaveLength(1);
    expect(history.messages.filter((m) => m.inReplyTo === id)).toHaveLength(1);
    s.end();
  });
});
