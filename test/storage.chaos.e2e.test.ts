/**
 * Chaos tier, storage: the embedded log on a disk that fills up under load,
 * and a log damaged before its tail. Each case is the reproduction of issue 9
 * ("a full disk wedges the log until restart", "corruption up to 16 MiB from
 * the end is cut silently") kept as a test.
 */
import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, open, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { credentials, loadPackageDefinition, status, type GrpcObject, type ServiceClientConstructor, type StatusObject } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { Event } from '../src/gen/chatflow/v1/events';
import type { ServerFrame } from '../src/gen/chatflow/v1/chat';
import { Author } from '../src/gen/chatflow/v1/history';
import { EmbeddedEventLog } from '../src/eventlog/embedded';
import { synthesizeVoice } from './voice-signal';
import { connectedEvent } from '../src/eventlog/eventlog.contract';
import { allMessages, ChatStream, connected, metadataFor, metric, openChat, startTestApp, type TestApp } from './harness';
import { describeWhen, withoutEngines } from './engines';
import { SimulatedLlm } from '../src/llm/simulated';
import type { LlmProvider } from '../src/llm/port';
import { mountSmallFs, smallFsSupport, type SmallFs } from './small-fs';
import { enospc as diskFull, fileHandlePrototype, interceptFileWrites } from './disk-writes';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitUntil<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number, everyMs = 10): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Fills the filesystem with `file` and keeps it full, as a runaway neighbour
 * would: space the server frees (a half-written batch it cuts away) is taken
 * again at once. `release()` deletes the file: space returns.
 */
async function fillDisk(file: string): Promise<{ bytes(): number; release(): Promise<void> }> {
  const fh = await open(file, 'w');
  let bytes = 0;
  let full = true;
  const top = async () => {
    for (const chunk of [1024 * 1024, 4096]) {
      const buf = Buffer.alloc(chunk, 0x5a);
      for (;;) {
        try {
          bytes += (await fh.write(buf, 0, chunk, bytes)).bytesWritten;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  };
  await top();
  const keeping = (async () => {
    while (full) {
      await top();
      await sleep(2);
    }
  })();
  return {
    bytes: () => bytes,
    release: async () => {
      full = false;
      await keeping;
      await fh.close();
      await unlink(file);
    },
  };
}


const fs = smallFsSupport();

describeWhen(fs.ok, 'chaos: the disk fills up under load', fs.reason, () => {
  let small: SmallFs | undefined;
  let t: TestApp | undefined;
  let loading = false;
  let streams: ChatStream[] = [];
  const fillers: { release(): Promise<void> }[] = [];
  afterEach(async () => {
    loading = false;
    for (const s of streams) s.cancel();
    for (const f of fillers.splice(0)) await f.release().catch(() => undefined);
    await t?.close({ keepData: true });
    await small?.unmount();
  }, 30_000);

  it('answers 503 with the reason and UNAVAILABLE + retry-after-ms, then heals without a restart and answers every accepted message once', async () => {
    small = await mountSmallFs(24);
    // Replies take 0–300 ms, so some are in processing when the disk fills: their appends must be retried.
    t = await startTestApp({ CHATFLOW_SIM_DELAY_SCALE: '0.3' }, {}, small.dir);
    const app = t;
    const health = async () => {
      const r = await fetch(`${app.app.httpUrl}/healthz`);
      return { code: r.status, body: (await r.json()) as { status: string; unavailable?: Record<string, string> } };
    };
    const pkg = loadPackageDefinition(loadSync(healthProto, { enums: String })) as GrpcObject;
    const grpcHealth = new ((((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject).Health as ServiceClientConstructor)(app.app.grpcAddress, credentials.createInsecure());
    const grpcStatus = () => new Promise<string>((res, rej) => grpcHealth.Check({ service: 'chatflow.v1.ChatService' }, (err: Error | null, r: { status: string }) => (err ? rej(err) : res(r.status))));
    expect((await health()).code).toBe(200);

    streams = await Promise.all(Array.from({ length: 8 }, (_, i) => connected(app, `filler-${i}`)));
    const arrivals = new Map<ServerFrame, number>();
    for (const s of streams) s.call.on('data', (f: ServerFrame) => arrivals.set(f, Date.now()));
    loading = true;
    const sent: string[][] = streams.map(() => []);
    const load = Promise.all(
      streams.map(async (s, i) => {
        for (let n = 0; loading; n++) {
          sent[i].push(s.text(`client ${i} message ${n}`));
          await sleep(20);
        }
      }),
    );
    await sleep(500);

    const filler = join(small.dir, 'filler');
    const filled = await fillDisk(filler);
    fillers.push(filled);
    const sick = await waitUntil('/healthz to answer 503', async () => {
      const h = await health();
      return h.code === 503 ? h : undefined;
    }, 10_000);
    expect(sick.body.status).toBe('unavailable');
    expect(Object.values(sick.body.unavailable ?? {}).join(' ')).toMatch(/event log.*(no space left|ENOSPC)/i);
    expect(await grpcStatus()).toBe('NOT_SERVING');

    // While full: messages are refused with UNAVAILABLE and a retry hint, and so is a new connection.
    const refusedMessages = () => streams.flatMap((s) => s.of('error').map((e) => e.error)).filter((e) => e.code === 'UNAVAILABLE');
    await waitUntil('messages refused while the disk is full', async () => (refusedMessages().length >= 20 ? true : undefined), 20_000, 50);
    const refused = await openChat(app, 'newcomer');
    const end: StatusObject = await refused.status;
    expect(status[end.code]).toBe('UNAVAILABLE');
    expect(end.details).toMatch(/no space left|disk/i);
    expect(Number(end.metadata.get('retry-after-ms')[0])).toBeGreaterThan(0);
    expect(refusedMessages()[0].message).toMatch(/no space left on device.*retry in \d+ ms/);
    expect(refusedMessages()[0].retryAfterMs).toBeGreaterThan(0);
    // An upload meets the same full disk (media are stored beside the log): UNAVAILABLE too, not INTERNAL.
    const wav = synthesizeVoice('a voice message while the disk is full').bytes;
    const voice = streams[0].send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs: 0 } } });
    await streams[0].until((f) => f.some((x) => x.frame?.$case === 'error' && x.frame.error.inReplyTo === voice), 10_000, 'the upload refused');
    expect(streams[0].of('error').find((e) => e.error.inReplyTo === voice)!.error).toEqual(expect.objectContaining({ code: 'UNAVAILABLE', message: expect.stringMatching(/no space left on device.*retry in \d+ ms/) }));

    // Space returns: the log resumes by itself.
    await filled.release();
    fillers.length = 0;
    const freedAt = Date.now();
    await waitUntil('/healthz to answer 200 again', async () => ((await health()).code === 200 ? true : undefined), 15_000);
    const healthyAfterMs = Date.now() - freedAt;
    expect(await grpcStatus()).toBe('SERVING');
    grpcHealth.close();
    const firstAccepted = await waitUntil('a message accepted after space returned', async () => {
      const times = [...arrivals].filter(([f, at]) => f.frame?.$case === 'accepted' && at >= freedAt).map(([, at]) => at);
      return times.length > 0 ? Math.min(...times) : undefined;
    }, 15_000);
    await sleep(500);
    loading = false;
    await load;
    // Every message sent is either accepted or refused before the count is taken.
    await Promise.all(streams.map((s, i) => s.until((f) => sent[i].every((cm) => f.some((x) => (x.frame?.$case === 'accepted' && x.frame.accepted.clientMessageId === cm) || (x.frame?.$case === 'error' && x.frame.error.inReplyTo === cm))), 15_000, `an answer to each message of client ${i}`)));

    // Every accepted message gets exactly one reply (or one ChatError), none INTERNAL.
    const acceptedIds = streams.map((s) => s.of('accepted').map((a) => a.accepted.messageId));
    await Promise.all(
      streams.map((s, i) =>
        s.until((f) => acceptedIds[i].every((id) => f.some((x) => (x.frame?.$case === 'response' && x.frame.response.inReplyTo === id) || (x.frame?.$case === 'error' && x.frame.error.inReplyTo === id))), 30_000, `replies of client ${i}`),
      ),
    );
    let accepted = 0;
    for (const [i, s] of streams.entries()) {
      expect(s.of('error').filter((e) => e.error.code === 'INTERNAL')).toEqual([]);
      for (const id of acceptedIds[i]) {
        const replies = s.frames.filter((x) => (x.frame?.$case === 'response' && x.frame.response.inReplyTo === id) || (x.frame?.$case === 'error' && x.frame.error.inReplyTo === id));
        expect(replies).toHaveLength(1);
        accepted++;
      }
      // The history (a projection, a moment behind the stream) holds the same replies, once each.
      const md = await metadataFor(app, `filler-${i}`);
      const answered = s.of('response').map((r) => r.response.inReplyTo).sort();
      // Nothing reaches a client about a message that was refused: the worker begins on a message while it is
      // stored, and a store or append that fails calls that work off before any of it leaves the worker.
      expect(s.frames.map(replyPartOf).filter((id) => id !== undefined && !acceptedIds[i].includes(id))).toEqual([]);
      const inHistory = async () => (await allMessages(app.history, md, s.welcome()!.conversationId)).filter((m) => m.author === Author.AUTHOR_BOT).map((m) => m.inReplyTo).sort();
      await waitUntil('the history to hold every reply', async () => ((await inHistory()).length >= answered.length ? true : undefined), 10_000, 50);
      expect(await inHistory()).toEqual(answered);
      s.end();
    }
    // Replies made while the disk was full waited in the worker (counted once each) and landed after it healed.
    const waited = await metric(app, 'chatflow_storage_waits_total');
    expect(waited).toBeGreaterThan(0);
    const errorCodes = streams.flatMap((s, i) => s.of('error').filter((e) => acceptedIds[i].includes(e.error.inReplyTo)).map((e) => e.error.code));
    expect(errorCodes).toEqual([]); // the simulated model does not fail: every accepted message gets its reply
    process.stdout.write(
      `disk full (${small.kind}, ${filled.bytes()} bytes of filler): ${accepted} accepted, all answered once; ${refusedMessages().length} refused with UNAVAILABLE; ` +
        `${waited} replies waited for the disk; healthy ${healthyAfterMs} ms and first Accepted ${firstAccepted - freedAt} ms after space returned\n`,
    );

    // The file holds no half record: it reopens clean.
    await Promise.all(streams.map((s) => s.status));
    await app.app.stop();
    const warnings: string[] = [];
    const log = await EmbeddedEventLog.open({ dir: join(small.dir, 'log'), fsync: false, logger: { warn: (_o, m) => void warnings.push(m), info: () => {} } });
    await log.close();
    expect(warnings).toEqual([]);
    t = undefined;
  }, 120_000);
});

/** A model that answers (as the simulated one) only once the test opens its gate: replies held in processing. */
class GatedLlm implements LlmProvider {
  readonly name = 'gated';
  readonly usesHistory = false;
  private readonly inner = new SimulatedLlm({ delayScale: 0 });
  private readonly gate: { promise: Promise<void>; resolve: () => void };
  readonly waiting: string[] = [];
  constructor() {
    let resolve!: () => void;
    this.gate = { promise: new Promise<void>((r) => (resolve = r)), resolve };
  }
  generate: LlmProvider['generate'] = async (request, options) => {
    this.waiting.push(request.messageId);
    await this.gate.promise;
    return this.inner.generate(request, options);
  };
  open(): void {
    this.gate.resolve();
  }
}

const fakeMp4 = () => Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.alloc(12), Buffer.alloc(2048, 7)]);
const videoContent = () => {
  const mp4 = fakeMp4();
  return { content: { $case: 'video' as const, video: { mimeType: 'video/mp4', data: mp4, url: '', sizeBytes: mp4.length, durationMs: 0 } } };
};

/** The outcomes (ResponseProduced, ProcessingFailed) the log holds, by the message they answer. */
async function outcomesInLog(dir: string): Promise<Map<string, string[]>> {
  const log = await EmbeddedEventLog.open({ dir: join(dir, 'log'), fsync: false, logger: { warn: () => {}, info: () => {} } });
  const byMessage = new Map<string, string[]>();
  const c = await log.consume({
    group: `read-back-${Date.now()}`, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 1,
    handle: async ({ event }) => {
      const p = event.payload;
      const id = p?.$case === 'responseProduced' ? p.responseProduced.inReplyTo : p?.$case === 'processingFailed' ? p.processingFailed.inReplyTo : undefined;
      if (id !== undefined) byMessage.set(id, [...(byMessage.get(id) ?? []), p!.$case]);
    },
  });
  await c.caughtUp();
  await c.stop();
  await log.close();
  return byMessage;
}

/**
 * A disk that refuses every write from now on (ENOSPC), as the int tests of
 * the log do it: every write of this process to a file (the log's fs.write, its
 * consumer offsets, the media store) fails until `release()`. A really full
 * filesystem still takes a small append into the free end of the log's last
 * block, so it cannot hold back one reply for sure.
 */
async function refuseWrites(calls: readonly ('write' | 'writeFile' | 'writev')[] = ['write', 'writeFile', 'writev']): Promise<{ refused(): number; release(): Promise<void> }> {
  const proto = await fileHandlePrototype();
  let refused = 0;
  const enospc = () => {
    refused++;
    return Promise.reject(diskFull());
  };
  const spies = calls.map((name) => jest.spyOn(proto, name).mockImplementation(enospc));
  // The log writes its records with fs.write on its fd (test/disk-writes.ts).
  const records = calls.includes('write')
    ? interceptFileWrites(() => {
        refused++;
        return { error: diskFull() };
      })
    : undefined;
  return {
    refused: () => refused,
    release: async () => {
      for (const spy of spies) spy.mockRestore();
      records?.restore();
    },
  };
}

/*
 * Issue 10's promise for a disk that fills while a worker answers (embedded
 * log, local media): messages accepted before, whose reply (its event, and
 * for a video its image) then meets ENOSPC. The reply waits in the worker and
 * is stored once the disk takes it; an image still refused at
 * CHATFLOW_ENGINE_RETRY_DEADLINE_MS fails the message as UNAVAILABLE +
 * retry_after_ms, and that failure waits for the disk the same way. Either
 * way: one outcome each, in the log and on the stream, and the message stays
 * answerable (a resend gets the same outcome, a new message its own). A
 * reply stored while the worker's offsets could not be (the disk refused
 * them) is not answered again after a restart, whether the disk healed before
 * the stop or after it.
 */

/** The message a part of a reply is about (a response, delta, transcript or voice chunk); undefined for any other frame. */
function replyPartOf(f: ServerFrame): string | undefined {
  const x = f.frame;
  switch (x?.$case) {
    case 'response': return x.response.inReplyTo;
    case 'delta': return x.delta.inReplyTo;
    case 'transcript': return x.transcript.messageId;
    case 'voiceChunk': return x.voiceChunk.inReplyTo;
    default: return undefined;
  }
}
describe('chaos: the disk fills while a worker answers', () => {
  let t: TestApp | undefined;
  let llm: GatedLlm;
  const fillers: { release(): Promise<void> }[] = [];
  const streams: ChatStream[] = [];
  afterEach(async () => {
    llm?.open();
    for (const f of fillers.splice(0)) await f.release().catch(() => undefined);
    for (const s of streams.splice(0)) s.cancel();
    await t?.close().catch(() => undefined);
    t = undefined;
  }, 30_000);

  const outcomesOf = (s: ChatStream, id: string) => s.frames.filter((x) => (x.frame?.$case === 'response' && x.frame.response.inReplyTo === id) || (x.frame?.$case === 'error' && x.frame.error.inReplyTo === id));
  const health = async (app: TestApp) => {
    const r = await fetch(`${app.app.httpUrl}/healthz`);
    return { code: r.status, body: (await r.json()) as { status: string; unavailable?: Record<string, string> } };
  };

  /** A server (embedded log, local media), one client, its messages accepted and held in the model; then the disk is filled. */
  async function acceptedThenFull(env: Record<string, string>, send: (s: ChatStream) => string[]) {
    llm = new GatedLlm();
    t = await startTestApp(env, { llm });
    const app = t;
    const s = await connected(app, 'answered-on-a-full-disk');
    streams.push(s);
    const sent = send(s);
    await s.until(() => sent.every((cm) => s.messageIdOf(cm) !== undefined), 10_000, 'Accepted of every message');
    const ids = sent.map((cm) => s.messageIdOf(cm)!);
    await waitUntil('the messages in processing', async () => (ids.every((id) => llm.waiting.includes(id)) ? true : undefined), 10_000);
    const filled = await refuseWrites();
    fillers.push(filled);
    return { app, s, sent, ids, filled };
  }

  it('a reply (its event and its image) refused by a full disk waits in the worker and is delivered once when space returns', async () => {
    const { app, s, sent, ids, filled } = await acceptedThenFull({}, (st) => [st.text('a text accepted before the disk filled'), st.send(videoContent())]);
    const [textId, videoId] = ids;
    const waitsBefore = await metric(app, 'chatflow_storage_waits_total');
    llm.open();
    // The replies are made; their stores fail: they wait (counted), the log reports itself down.
    await waitUntil('a reply waiting for the disk', async () => ((await metric(app, 'chatflow_storage_waits_total')) > (waitsBefore || 0) ? true : undefined), 15_000, 50);
    const sick = await waitUntil('/healthz to answer 503', async () => {
      const h = await health(app);
      return h.code === 503 ? h : undefined;
    }, 10_000, 50);
    expect(Object.values(sick.body.unavailable ?? {}).join(' ')).toMatch(/event log.*(no space left|ENOSPC)/i);
    await sleep(1_500);
    expect(ids.flatMap((id) => outcomesOf(s, id))).toEqual([]); // nothing delivered that is not stored
    expect(filled.refused()).toBeGreaterThan(0);

    await filled.release();
    fillers.length = 0;
    await s.until(() => ids.every((id) => outcomesOf(s, id).length > 0), 20_000, 'the outcome of each message');
    await sleep(1_000); // time for a second outcome, if one were coming
    for (const id of ids) expect(outcomesOf(s, id).map((f) => f.frame?.$case)).toEqual(['response']);
    expect(s.responseTo(sent[1])!.image?.mimeType).toBe('image/png');
    expect((await health(app)).code).toBe(200);

    // Still answerable: a resend gets the same reply again (Accepted{duplicate}), a new message its own.
    s.text('a text accepted before the disk filled', sent[0]);
    await s.until(() => outcomesOf(s, textId).length === 2, 10_000, 'the reply to the resend');
    expect(s.of('accepted').filter((a) => a.accepted.messageId === textId).map((a) => a.accepted.duplicate)).toEqual([false, true]);
    const later = s.text('after the disk healed');
    await s.reply(later, 10_000);
    s.end();
    await s.status;
    // The worker's offsets went on being committed once the disk healed: a restart answers nothing again.
    await app.restart();
    await sleep(2_000);
    await app.app.stop();
    t = undefined;
    // Nothing left behind by the refused writes (temp files of the media and the committed offsets).
    // (Temp files, not the media's temp folder `.tmp` itself.)
    expect((await readdir(app.dataDir, { recursive: true })).filter((f) => /[^/]\.tmp/.test(f))).toEqual([]);
    const inLog = await outcomesInLog(app.dataDir);
    expect(inLog.get(textId)).toEqual(['responseProduced']);
    expect(inLog.get(videoId)).toEqual(['responseProduced']);
    await rm(app.dataDir, { recursive: true, force: true });
  }, 90_000);

  it('a reply appended just before the disk filled is not answered again after a restart (the worker\'s refused offset commit is retried)', async () => {
    llm = new GatedLlm();
    t = await startTestApp({}, { llm });
    const app = t;
    const s = await connected(app, 'answered-before-the-disk-filled');
    streams.push(s);
    const cm = s.text('answered just before the disk filled');
    await s.until(() => s.messageIdOf(cm) !== undefined, 10_000, 'Accepted');
    // A disk with room left only at the end of the log's last block (as a really full one has): the reply's
    // append goes in, the new file the worker's offsets are written to a moment later does not.
    const full = await refuseWrites(['writeFile']);
    fillers.push(full);
    llm.open();
    await s.reply(cm, 10_000);
    await waitUntil('the offset commit refused', async () => (full.refused() > 0 ? true : undefined), 5_000);
    await sleep(300);
    await full.release();
    fillers.length = 0;
    // Space is back; nothing else happens before the operator restarts the server.
    await app.restart();
    await sleep(2_000);
    await app.app.stop();
    t = undefined;
    expect((await outcomesInLog(app.dataDir)).get(s.messageIdOf(cm)!)).toEqual(['responseProduced']);
    await rm(app.dataDir, { recursive: true, force: true });
  }, 60_000);

  it('a server stopped while the disk is still full does not answer its replies again when it restarts on a healed disk', async () => {
    llm = new GatedLlm();
    t = await startTestApp({}, { llm });
    const app = t;
    const s = await connected(app, 'stopped-on-a-full-disk');
    streams.push(s);
    const cm = s.text('answered while the disk filled');
    await s.until(() => s.messageIdOf(cm) !== undefined, 10_000, 'Accepted');
    const full = await refuseWrites(['writeFile']); // the log's last block still takes the reply
    fillers.push(full);
    llm.open();
    await s.reply(cm, 10_000);
    await waitUntil('the offset commit refused', async () => (full.refused() > 0 ? true : undefined), 5_000);
    // Stopped (SIGTERM) while the disk is still full: the worker's offsets cannot be written on the way out either.
    s.cancel();
    await app.app.stop();
    t = undefined;
    await full.release();
    fillers.length = 0;
    t = await startTestApp({}, { llm }, app.dataDir);
    await sleep(2_000);
    await t.app.stop();
    t = undefined;
    expect((await outcomesInLog(app.dataDir)).get(s.messageIdOf(cm)!)).toEqual(['responseProduced']);
    await rm(app.dataDir, { recursive: true, force: true });
  }, 60_000);

  it('an image still refused at the engine deadline fails the message once as UNAVAILABLE + retry_after_ms, stored when space returns', async () => {
    const deadlineMs = 1_500;
    const { app, s, sent, ids, filled } = await acceptedThenFull(
      { CHATFLOW_ENGINE_RETRY_DEADLINE_MS: String(deadlineMs), CHATFLOW_RETRY_AFTER_MS: '700' },
      (st) => [st.send(videoContent())],
    );
    const [videoId] = ids;
    llm.open();
    await sleep(deadlineMs + 2_000); // past the deadline, the disk still full: the failure cannot be stored either
    expect(outcomesOf(s, videoId)).toEqual([]);
    expect(filled.refused()).toBeGreaterThan(0);

    await filled.release();
    fillers.length = 0;
    await s.until(() => outcomesOf(s, videoId).length > 0, 20_000, 'the outcome of the video');
    await sleep(1_000);
    const outcomes = outcomesOf(s, videoId);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0].frame).toMatchObject({ $case: 'error', error: { code: 'UNAVAILABLE', retryAfterMs: 700 } });

    // The resend gets that failure again, not a second processing; a new message is answered.
    s.send({ ...videoContent(), clientMessageId: sent[0] });
    await s.until(() => outcomesOf(s, videoId).length === 2, 10_000, 'the outcome to the resend');
    expect(outcomesOf(s, videoId).map((f) => f.frame?.$case)).toEqual(['error', 'error']);
    const later = s.text('after the disk healed');
    await s.reply(later, 10_000);
    s.end();
    await s.status;
    await app.app.stop();
    t = undefined;
    fillers.length = 0;
    expect((await outcomesInLog(app.dataDir)).get(videoId)).toEqual(['processingFailed']);
    await rm(app.dataDir, { recursive: true, force: true });
  }, 90_000);
});

describe('chaos: a damaged event log', () => {
  const root = resolve(__dirname, '..');
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'chatflow-damaged-'));
  });
  afterEach(async () => rm(dataDir, { recursive: true, force: true }));

  /** Runs a ChatFlow command (server or CLI) to its end, or until `ready` is printed (then stops it). */
  const runNode = (script: string, args: string[], untilReady = false) =>
    new Promise<{ code: number | null; output: string; ready: boolean }>((res, rej) => {
      const proc = spawn(process.execPath, ['--require', 'tsx/cjs', script, ...args], {
        cwd: root,
        env: { ...withoutEngines(process.env), CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: dataDir, LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      let ready = false;
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        rej(new Error(`${script} ${args.join(' ')} did not finish: ${output}`));
      }, 60_000);
      for (const stream of [proc.stdout!, proc.stderr!]) {
        createInterface({ input: stream }).on('line', (line) => {
          output += line + '\n';
          if (untilReady && line.includes('ChatFlow ready')) {
            ready = true;
            proc.kill('SIGTERM');
          }
        });
      }
      proc.on('exit', (code) => {
        clearTimeout(timer);
        setTimeout(() => res({ code, output, ready }), 50);
      });
    });

  it('refuses to start on damage before the tail, names the repair command, and the repair keeps the cut bytes aside', async () => {
    const logDir = join(dataDir, 'log');
    const file = join(logDir, 'events.log');
    const log = await EmbeddedEventLog.open({ dir: logDir, fsync: false, logger: { warn: () => {}, info: () => {} } });
    const events: Event[] = [];
    // One session, many events: about 6 MiB, replayed quickly at start.
    for (let i = 0; log.stats().bytes < 6 * 1024 * 1024; i++) {
      const batch = Array.from({ length: 500 }, () => connectedEvent('damaged'));
      events.push(...batch);
      await Promise.all(batch.map((e) => log.append(e)));
    }
    await log.close();
    const bytes = await readFile(file);
    // A flipped byte 5 MiB before the end, in the payload of a record (a bit rot, not a torn write).
    let at = 8;
    let record = 0;
    while (at < bytes.length - 5 * 1024 * 1024) {
      at += 8 + bytes.readUInt32LE(at);
      record++;
    }
    bytes[at + 8 + 10] ^= 0x01;
    await writeFile(file, bytes);
    const after = bytes.length - at;

    const refused = await runNode('src/main.ts', [], true);
    expect(refused.ready).toBe(false);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toContain(file);
    expect(refused.output).toContain(`byte ${at}`);
    expect(refused.output).toContain(`record ${record}`);
    expect(refused.output).toContain(`${after} bytes`);
    expect(refused.output).toContain(`${events.length - record - 1} valid records`);
    expect(refused.output).toContain(`npm run client -- log repair --data-dir ${dataDir}`);
    expect((await stat(file)).size).toBe(bytes.length); // untouched

    const repaired = await runNode('src/cli/main.ts', ['log', 'repair', '--data-dir', dataDir]);
    expect(repaired.code).toBe(0);
    const aside = (await readdir(logDir)).filter((f) => f.startsWith('events.log.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(repaired.output).toContain(join(logDir, aside[0]));
    expect(repaired.output).toContain(`${after} bytes`);
    expect((await readFile(join(logDir, aside[0]))).equals(bytes.subarray(at))).toBe(true); // toEqual on 5 MiB takes a minute
    expect((await stat(file)).size).toBe(at);

    // A torn tail (a crash in the middle of the last write) is still cut automatically.
    await appendFile(file, Buffer.concat([bytes.subarray(8, 8 + 8 + 40)]));
    const started = await runNode('src/main.ts', [], true);
    expect(started.ready).toBe(true);
    expect(started.output).toMatch(/torn tail/);
    expect((await readdir(logDir)).filter((f) => f.startsWith('events.log.corrupt-'))).toHaveLength(2);
  }, 180_000);
});
