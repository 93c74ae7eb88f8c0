import http2 from 'node:http2';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, credentials, Metadata, type ClientDuplexStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { ClientFrame, ServerFrame } from '../src/gen/chatflow/v1/chat';
import { SimulatedLlm } from '../src/llm/simulated';
import type { LlmProvider } from '../src/llm/port';
import { codeName, connected, metadataFor, metric, openChat, startTestApp, unary, type ChatStream, type TestApp } from './harness';
import { idempotencyCases, openRetrying, resendWhileProcessingCase } from './idempotency.cases';

/*
 * Hostile and careless clients, one test per case of issue 9: idempotency
 * keys, identity claims, flow control, read-your-writes, UTF-8 and limits.
 * The fuzz test lives in fuzz.chaos.e2e.test.ts.
 */
jest.setTimeout(120_000);

/** The simulated model, held back while armed: a message stays in processing until released. */
class HeldLlm implements LlmProvider {
  readonly name = 'held';
  readonly usesHistory = false;
  private readonly inner = new SimulatedLlm({ delayScale: 0 });
  private armed = false;
  private waiting: (() => void)[] = [];
  reset(): void {
    this.armed = true;
  }
  release(): void {
    this.armed = false;
    for (const w of this.waiting.splice(0)) w();
  }
  async generate(...args: Parameters<LlmProvider['generate']>) {
    if (this.armed) await new Promise<void>((r) => this.waiting.push(r));
    return this.inner.generate(...args);
  }
}

let t: TestApp;
const llm = new HeldLlm();
let n = 0;
beforeAll(async () => {
  t = await startTestApp({ CHATFLOW_MAX_CLIENTS: '200', CHATFLOW_LOG_FSYNC: 'false' }, { llm });
});
afterAll(async () => t.close());

describe('idempotency keys scoped to the conversation', () => {
  const target = () => ({
    open: (clientId: string, extra: Record<string, string> = {}) => openRetrying(() => connected(t, clientId, extra)),
    fresh: (prefix: string) => `${prefix}-${++n}`,
    replyWithinMs: 10_000,
  });
  idempotencyCases(target);
  resendWhileProcessingCase(target, () => llm);
});

describe('identity claims', () => {
  it('refuses a token whose sub is an array, a number or a boolean, or that has no exp, with UNAUTHENTICATED; the server still serves', async () => {
    const secret = new TextEncoder().encode((await readFile(join(t.dataDir, 'secret'), 'utf8')).trim());
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    const tokens = {
      'array sub': await sign({ sub: ['alice'], exp: now + 600 }),
      'array sub of two': await sign({ sub: ['a', 'b'], exp: now + 600 }),
      'number sub': await sign({ sub: 12345, exp: now + 600 }),
      'boolean sub': await sign({ sub: true, exp: now + 600 }),
      'no exp': await sign({ sub: 'no-exp' }),
    };
    for (const [what, token] of Object.entries(tokens)) {
      const s = await openChat(t, 'ignored', { authorization: `Bearer ${token}` });
      s.text('hello');
      const st = await s.status;
      expect([what, codeName(st.code)]).toEqual([what, 'UNAUTHENTICATED']);
    }
    const ok = await connected(t, `after-bad-tokens-${++n}`);
    await ok.reply(ok.text('still serving'));
    ok.end();
  });
});

/*
 * grpc-js reads a request's message whole (up to 2 × media + 1 MiB) before a handler sees it: 200 calls of 16 MiB
 * without a token took an embedded server from ~150 MB to 3.4 GB of RSS, each refused UNAUTHENTICATED only once read.
 */
describe('what a request can make the server read', () => {
  /**
   * A gRPC call made by hand: its metadata, then `sent` bytes of a message framed as `claimed` bytes long, and
   * nothing more (the end of the request when that is the whole message). Resolves with the status the server
   * answered within `ms`, or 'no answer' (it waits for the rest).
   */
  async function partialCall(path: string, md: Record<string, string>, claimed: number, sent: number, ms = 3_000): Promise<string> {
    const session = http2.connect(`http://${t.app.grpcAddress}`);
    session.on('error', () => undefined);
    try {
      const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...md });
      req.on('error', () => undefined);
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(claimed, 1);
      req.write(Buffer.concat([prefix, Buffer.alloc(sent, 0x41)]));
      // A whole message: the request ends there (a unary call is handled once its stream ends).
      if (sent === claimed) req.end();
      return await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('no answer'), ms);
        const seen = (h: http2.IncomingHttpHeaders) => {
          const code = h['grpc-status'];
          if (code === undefined) return;
          clearTimeout(timer);
          // A refusal that says when to try again says so too.
          const retry = h['retry-after-ms'];
          resolve(codeName(Number(code)) + (retry === undefined ? '' : ` retry-after-ms=${String(retry)}`));
        };
        req.on('response', seen);
        req.on('trailers', seen);
      });
    } finally {
      session.destroy();
    }
  }
  const MiB = 1024 * 1024;
  /** A client's connection metadata as plain headers, for partialCall. */
  const headersOf = async (clientId: string) => Object.fromEntries(Object.entries((await metadataFor(t, clientId)).getMap()).map(([k, v]) => [k, String(v)]));

  it.each(['/chatflow.v1.ChatService/Chat', '/chatflow.v1.ChatService/Connect', '/chatflow.v1.ChatService/Send', '/chatflow.v1.HistoryService/ListConversations'])(
    'refuses a caller without a token on %s at once, before reading its message (16 MiB announced, 1 MiB sent, the rest never)',
    async (path) => {
      expect(await partialCall(path, {}, 16 * MiB, MiB)).toBe('UNAUTHENTICATED');
      expect(await partialCall(path, { authorization: 'Bearer not-a-token' }, 16 * MiB, MiB)).toBe('UNAUTHENTICATED');
    },
  );

  it('reads a client\'s Sends two at a time and everyone\'s sixteen at a time: a Send beyond waits unread, and after 5 s is refused RESOURCE_EXHAUSTED + retry-after-ms', async () => {
    const send = '/chatflow.v1.ChatService/Send';
    const trickler = await headersOf(`trickler-${++n}`);
    const busy = async () => (await metric(t, 'chatflow_sends_busy_total{transport="grpc"}')) || 0;
    const busyBefore = await busy();
    // Two Sends that announce 16 MiB, send 1 MiB and never the rest: each holds the client's place while it is read.
    const held = [partialCall(send, trickler, 16 * MiB, MiB, 9_000), partialCall(send, trickler, 16 * MiB, MiB, 9_000)];
    await new Promise((r) => setTimeout(r, 500));
    const third = partialCall(send, trickler, 16 * MiB, MiB, 8_000);
    // Another client's Send is read and answered meanwhile (these 8 bytes are no SendRequest).
    expect(await partialCall(send, await headersOf(`other-${n}`), 8, 8, 3_000)).toBe('INVALID_ARGUMENT');
    expect(await third).toMatch(/^RESOURCE_EXHAUSTED retry-after-ms=\d+$/);
    expect(await Promise.all(held)).toEqual(['no answer', 'no answer']);

    // Sixteen clients' Sends being read: a seventeenth client waits, and is refused.
    const sixteen = await Promise.all(Array.from({ length: 16 }, (_, i) => headersOf(`filler-${n}-${i}`)));
    const filling = sixteen.map((h) => partialCall(send, h, 16 * MiB, MiB, 9_000));
    await new Promise((r) => setTimeout(r, 500));
    expect(await partialCall(send, await headersOf(`late-${n}`), 8, 8, 8_000)).toMatch(/^RESOURCE_EXHAUSTED retry-after-ms=\d+$/);
    await Promise.all(filling);
    expect((await busy()) - busyBefore).toBe(2);
    // Their places given back once they went: a Send is read again at once.
    expect(await partialCall(send, await headersOf(`after-${n}`), 8, 8, 3_000)).toBe('INVALID_ARGUMENT');
  }, 40_000);

  it('reads a Send that declares it carries no upload (x-no-upload: true: a text message, a ping) at once while uploads hold every place, and refuses one over 64 KiB', async () => {
    const send = '/chatflow.v1.ChatService/Send';
    // Sixteen clients' uploads being read (16 MiB announced, 1 MiB sent, the rest never): every Send place is held.
    const sixteen = await Promise.all(Array.from({ length: 16 }, (_, i) => headersOf(`uploader-${++n}-${i}`)));
    const uploads = sixteen.map((h) => partialCall(send, h, 16 * MiB, MiB, 6_000));
    await new Promise((r) => setTimeout(r, 500));
    const texter = { ...(await headersOf(`texter-${n}`)), 'x-no-upload': 'true' };
    // Read and answered at once (these 8 bytes are no SendRequest), instead of waiting behind the uploads.
    expect(await partialCall(send, texter, 8, 8, 3_000)).toBe('INVALID_ARGUMENT');
    // A declared small request is held to it, at its length prefix (not a wait for an upload's place).
    expect(await partialCall(send, texter, 128 * 1024, 1024, 3_000)).toBe('RESOURCE_EXHAUSTED');
    expect(await Promise.all(uploads)).toEqual(Array(16).fill('no answer'));
    // A Chat stream is not a single request: the header holds none of its frames to 64 KiB (they may carry uploads).
    const s = await connected(t, `chat-no-upload-${n}`, { 'x-no-upload': 'true' });
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(200 * 1024)]);
    s.send({ clientMessageId: 'a-picture', content: { $case: 'image', image: { mimeType: 'image/png', data: png, url: '', sizeBytes: 0, durationMs: 0 } } });
    await s.until((f) => f.some((x) => (x.frame?.$case === 'accepted' && x.frame.accepted.clientMessageId === 'a-picture') || x.frame?.$case === 'error'), 10_000, 'the picture read');
    await s.reply(s.text('still open'));
    s.end();
  }, 30_000);

  it('ends an upload that stops arriving (its connection alive) DEADLINE_EXCEEDED at CHATFLOW_UPLOAD_TIMEOUT_MS, and gives its place back', async () => {
    // Its own server, with a 2 s limit: a stalled Send otherwise held one of its client's two places, and one of
    // everyone's sixteen, for as long as its connection lived (a peer that answers pings: for good).
    const quick = await startTestApp({ CHATFLOW_UPLOAD_TIMEOUT_MS: '2000', CHATFLOW_LOG_FSYNC: 'false' }, { llm });
    const main = t;
    t = quick;
    try {
      const md = await headersOf(`staller-${++n}`);
      const send = '/chatflow.v1.ChatService/Send';
      const started = Date.now();
      const stalled = [0, 1].map(() => partialCall(send, md, 16 * MiB, MiB, 6_000));
      expect(await Promise.all(stalled)).toEqual(['DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED']);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
      // Both places given back: the client's next Send is read at once.
      expect(await partialCall(send, md, 8, 8, 3_000)).toBe('INVALID_ARGUMENT');
      // Counted apart from calls whose small request was late.
      expect(await metric(t, 'chatflow_calls_refused_total{reason="upload_late"}')).toBe(2);
    } finally {
      t = main;
      await quick.close();
    }
  }, 30_000);

  it('gives a Send\'s place back when its caller leaves while it waits for one', async () => {
    const md = await headersOf(`leaver-of-places-${++n}`);
    const send = '/chatflow.v1.ChatService/Send';
    // Two Sends being read (16 MiB announced, 1 MiB sent) whose callers leave after 2 s; two waiting, whose callers leave first.
    const held = [0, 1].map(() => partialCall(send, md, 16 * MiB, MiB, 2_000));
    await new Promise((r) => setTimeout(r, 300));
    const waiting = [0, 1].map(() => partialCall(send, md, 16 * MiB, MiB, 700));
    expect(await Promise.all([...held, ...waiting])).toEqual(['no answer', 'no answer', 'no answer', 'no answer']);
    // The client's places are free again: its next Send is read at once.
    expect(await partialCall(send, md, 8, 8, 3_000)).toBe('INVALID_ARGUMENT');
  }, 20_000);

  it('answers bytes that are no message of their type INVALID_ARGUMENT: Connect (not admitted), Send and history alike (history answered INTERNAL, as gRPC does, before)', async () => {
    const md = await headersOf(`garbage-${++n}`);
    // 0x41 starts a 64-bit field, and 7 bytes follow: a truncated message.
    expect(await partialCall('/chatflow.v1.ChatService/Connect', md, 8, 8)).toBe('INVALID_ARGUMENT');
    expect(await partialCall('/chatflow.v1.ChatService/Send', md, 8, 8)).toBe('INVALID_ARGUMENT');
    expect(await partialCall('/chatflow.v1.HistoryService/ListMessages', md, 8, 8)).toBe('INVALID_ARGUMENT');
  });

  it('refuses a request over 64 KiB to a method that carries no media (history, health, reflection) with RESOURCE_EXHAUSTED as soon as its length is read', async () => {
    const md = await metadataFor(t, `big-request-${++n}`);
    const headers = Object.fromEntries(Object.entries(md.getMap()).map(([k, v]) => [k, String(v)]));
    expect(await partialCall('/chatflow.v1.HistoryService/ListMessages', headers, 16 * MiB, 1024)).toBe('RESOURCE_EXHAUSTED');
    expect(await partialCall('/grpc.health.v1.Health/Check', {}, 16 * MiB, 1024)).toBe('RESOURCE_EXHAUSTED');
    expect(await partialCall('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', {}, 16 * MiB, 1024)).toBe('RESOURCE_EXHAUSTED');
    // A whole one, through the typed client: refused with words that say why; a normal request still served.
    const err = await new Promise<{ code: number; details: string }>((resolve) =>
      t.history.listConversations({ pageSize: 10, pageToken: 'x'.repeat(100 * 1024) }, md, (e) => resolve(e as never)),
    );
    expect(codeName(err.code)).toBe('RESOURCE_EXHAUSTED');
    expect(err.details).toMatch(/larger than max \(\d+ vs 65536\)/);
    const ok = await new Promise<unknown>((resolve, reject) => t.history.listConversations({ pageSize: 10, pageToken: '' }, md, (e, r) => (e ? reject(e) : resolve(r))));
    expect(ok).toBeDefined();
  });
});

/** Counts frames of one kind as they arrive (scanning every frame on each arrival would be quadratic). */
function counter(s: ChatStream, kind: NonNullable<ServerFrame['frame']>['$case']): () => number {
  let n = s.frames.filter((f) => f.frame?.$case === kind).length;
  s.call.on('data', (f: ServerFrame) => f.frame?.$case === kind && n++);
  return () => n;
}

/**
 * A client that reads, but more slowly than the server writes (a phone on a
 * slow network): it takes `every` frames, then looks away for `pauseMs`.
 */
function slowReader(s: ChatStream, every = 200, pauseMs = 20): void {
  let n = 0;
  s.call.on('data', () => {
    if (++n % every !== 0) return;
    s.call.pause();
    setTimeout(() => s.call.resume(), pauseMs);
  });
}

describe('flow control instead of disconnection', () => {
  // Replies streamed word by word (0–1 s each, ~20 deltas): far more frames than messages.
  let streaming: TestApp;
  beforeAll(async () => {
    streaming = await startTestApp({ CHATFLOW_SIM_DELAY_SCALE: '1', CHATFLOW_LOG_FSYNC: 'false' });
  });
  afterAll(async () => streaming.close());

  it('resumes 12,000 missed replies completely with x-resume-after', async () => {
    const id = `resumer-${++n}`;
    const s = await connected(t, id);
    const conversationId = s.welcome()!.conversationId;
    const total = 12_000;
    const window = 500;
    const replies = counter(s, 'response');
    let sent = 0;
    while (sent < total) {
      const upTo = Math.min(total, sent + window);
      for (; sent < upTo; sent++) s.text(`m${sent}`, `r${sent}`);
      await s.until(() => replies() >= sent - window, 60_000, `replies up to ${sent - window}`);
    }
    await s.until(() => replies() === total, 60_000, 'every reply');
    s.end();
    await s.status;
    const started = Date.now();
    const back = await openRetrying(() => connected(t, id, { 'x-conversation-id': conversationId, 'x-resume-after': '0' }));
    slowReader(back);
    const replayed = counter(back, 'response');
    await back.until(() => replayed() === total, 90_000, `${total} replayed replies`);
    const ms = Date.now() - started;
    const seqs = back.of('response').map((r) => r.response.seq);
    expect(new Set(seqs).size).toBe(total);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    console.log(`resume of ${total} replies took ${ms} ms`);
    back.end();
    expect(codeName((await back.status).code)).toBe('OK');
  });

  it('accepts and answers 2,000 messages pipelined by a client that reads', async () => {
    const s = await connected(streaming, `pipeliner-${++n}`);
    slowReader(s);
    const total = 2_000;
    const replies = counter(s, 'response');
    const started = Date.now();
    for (let i = 0; i < total; i++) s.text(`burst ${i}`, `p${i}`);
    await s.until(() => replies() === total, 90_000, `${total} replies`);
    const ms = Date.now() - started;
    expect(s.of('accepted')).toHaveLength(total);
    expect(s.of('error')).toHaveLength(0);
    console.log(`${total} pipelined messages answered in ${ms} ms (${Math.round((total * 1000) / ms)} msg/s)`);
    s.end();
    expect(codeName((await s.status).code)).toBe('OK');
  });

  it('pongs 20,000 pings', async () => {
    const s = await connected(streaming, `pinger-${++n}`);
    await s.reply(s.text('a message first: pings alone do not meet the first-message deadline'));
    // The client looks away for 3 s (well within the stall timeout) while its pings go out, then reads.
    s.call.pause();
    setTimeout(() => s.call.resume(), 3_000);
    const pongs = counter(s, 'pong');
    const total = 20_000;
    const started = Date.now();
    for (let i = 1; i <= total; i++) s.call.write({ frame: { $case: 'ping', ping: { nonce: i } } });
    await s.until(() => pongs() === total, 60_000, `${total} pongs`);
    console.log(`${total} pings ponged in ${Date.now() - started} ms`);
    expect(s.of('pong').map((p) => p.pong.nonce)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    s.end();
    expect(codeName((await s.status).code)).toBe('OK');
  });
});

describe("one client's unanswered messages", () => {
  /** Resolves once `pred` holds, polled every 50 ms; throws after `ms`. */
  async function eventually(pred: () => Promise<boolean>, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!(await pred())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const processing = () => metric(t, 'chatflow_messages_processing');
  /** CHATFLOW_UNANSWERED_PER_CLIENT as the server under test has it (its default). */
  let BOUND: number;
  beforeAll(() => (BOUND = t.app.config.unansweredPerClient));
  afterEach(() => llm.release());

  it('reads at most 50 unanswered messages of a Chat stream: a flood waits unread (nothing refused), and another client\'s message goes to processing at once', async () => {
    llm.reset();
    const flooder = await connected(t, `flooder-${++n}`);
    // More than the 500 the workers process at once: without a bound per client, the bystander's message would wait behind 200 of these.
    const total = 700;
    for (let i = 0; i < total; i++) flooder.text(`flood ${i}`, `f${i}`);
    await eventually(async () => (await processing()) >= BOUND, 10_000, `${BOUND} messages in processing`);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(flooder.of('accepted')).toHaveLength(BOUND);
    expect(await processing()).toBe(BOUND);

    const bystander = await connected(t, `bystander-${n}`);
    bystander.text('my turn?', 'b1');
    await bystander.until((f) => f.some((x) => x.frame?.$case === 'accepted'), 10_000, 'Accepted');
    await eventually(async () => (await processing()) === BOUND + 1, 10_000, "the bystander's message in processing");

    llm.release();
    await bystander.reply('b1');
    await flooder.until(() => flooder.of('response').length === total, 60_000, `${total} replies`);
    expect(flooder.of('accepted')).toHaveLength(total);
    expect(flooder.of('error')).toHaveLength(0);
    expect(new Set(flooder.of('response').map((r) => r.response.inReplyTo)).size).toBe(total);
    flooder.end();
    bystander.end();
    expect(codeName((await flooder.status).code)).toBe('OK');
  }, 90_000);

  it('counts what a client\'s closed stream left unanswered on its next stream: reconnecting does not start it over', async () => {
    llm.reset();
    const id = `reconnecter-${++n}`;
    const first = await connected(t, id);
    for (let i = 0; i < BOUND; i++) first.text(`flood ${i}`, `r${i}`);
    await first.until(() => first.of('accepted').length === BOUND, 10_000, `${BOUND} Accepted`);
    first.cancel();
    await first.status;
    // A new conversation, as a client starting over would open.
    const second = await openRetrying(() => connected(t, id));
    second.text('one more', 'x1');
    await new Promise((r) => setTimeout(r, 1_500));
    expect(second.of('accepted')).toHaveLength(0);
    expect(await processing()).toBe(BOUND);
    llm.release();
    // Read once the first stream's messages are answered.
    await second.reply('x1', 30_000);
    expect(second.of('error')).toHaveLength(0);
    second.end();
  }, 60_000);

  it('refuses a Send beyond 50 unanswered messages of its session with RESOURCE_EXHAUSTED + retry-after-ms, not stored: the same Send is taken once an answer came', async () => {
    llm.reset();
    const md = await metadataFor(t, `browser-flooder-${++n}`);
    const call = t.chat.connect({}, md);
    const frames: ServerFrame[] = [];
    call.on('data', (f: ServerFrame) => frames.push(f));
    call.on('error', () => undefined);
    await eventually(async () => frames.length > 0, 10_000, 'Welcome');
    const w = frames[0].frame;
    if (w?.$case !== 'welcome') throw new Error('no welcome');
    const sessionId = w.welcome.sessionId;
    const send = (i: number) => unary(t.chat.send.bind(t.chat), { sessionId, message: { clientMessageId: `s${i}`, content: { $case: 'text', text: `send ${i}` } } }, md);
    // Two at a time, as the server reads a client's Sends.
    for (let i = 0; i < BOUND; i += 2) await Promise.all([send(i), send(i + 1)]);
    const refused = await send(BOUND).then(() => 'taken', (err: ServiceError) => `${codeName(err.code)} ${String(err.metadata.get('retry-after-ms')[0])} ${err.details}`);
    expect(refused).toMatch(new RegExp(`^RESOURCE_EXHAUSTED \\d+ ${BOUND} messages of yours wait for their answer`));
    llm.release();
    await eventually(async () => frames.filter((f) => f.frame?.$case === 'response').length === BOUND, 30_000, `${BOUND} replies`);
    const ack = await send(BOUND);
    expect(ack.duplicate).toBe(false);
    await eventually(async () => frames.filter((f) => f.frame?.$case === 'response').length === BOUND + 1, 10_000, 'its reply');
    call.cancel();
  }, 60_000);
});

describe('read your writes', () => {
  it('gives exact ownership statuses under connection churn: the owner never NOT_FOUND, others PERMISSION_DENIED', async () => {
    const rounds = 40;
    const results = await Promise.all(
      Array.from({ length: rounds }, async (_, i) => {
        const owner = await connected(t, `churn-owner-${++n}`);
        const conversationId = owner.welcome()!.conversationId;
        const other = await openChat(t, `churn-other-${n}-${i}`, { 'x-conversation-id': conversationId });
        owner.cancel();
        await owner.status;
        // The owner's previous stream may hold its slot a moment longer (ALREADY_EXISTS or UNAVAILABLE): it retries, as a client does.
        const outcome = await openRetrying(() => connected(t, owner.welcome()!.clientId, { 'x-conversation-id': conversationId })).then(
          (back) => (back.cancel(), 'OK'),
          (err) => /"code":"(\w+)"/.exec(String(err))?.[1] ?? String(err),
        );
        return { other: codeName((await other.status).code), owner: outcome };
      }),
    );
    expect(results.filter((r) => r.other !== 'PERMISSION_DENIED')).toEqual([]);
    expect(results.filter((r) => r.owner !== 'OK')).toEqual([]);
  });
});

describe('texts and ids', () => {
  /** A Chat stream whose frames are written as raw bytes (to send what the typed client cannot). */
  function rawChat(md: Metadata): { call: ClientDuplexStream<Buffer, Buffer>; frames: ServerFrame[]; status: Promise<StatusObject> } {
    const client = new Client(t.app.grpcAddress, credentials.createInsecure());
    const call = client.makeBidiStreamRequest<Buffer, Buffer>('/chatflow.v1.ChatService/Chat', (b) => b, (b) => b, md);
    const frames: ServerFrame[] = [];
    call.on('data', (b: Buffer) => frames.push(ServerFrame.decode(b)));
    call.on('error', () => undefined);
    const status = new Promise<StatusObject>((r) => call.on('status', (s) => (client.close(), r(s))));
    return { call, frames, status };
  }

  it('refuses a text that is not valid UTF-8 with INVALID_ARGUMENT and keeps the stream', async () => {
    const s = rawChat(await metadataFor(t, `utf8-${++n}`));
    const frame = Buffer.from(ClientFrame.encode({ frame: { $case: 'message', message: { clientMessageId: 'bad-utf8', content: { $case: 'text', text: 'ok AAAA ok' } } } }).finish());
    const at = frame.indexOf('AAAA');
    Buffer.from([0xff, 0xfe, 0xc3, 0x28]).copy(frame, at);
    s.call.write(frame);
    s.call.write(Buffer.from(ClientFrame.encode({ frame: { $case: 'message', message: { clientMessageId: 'good', content: { $case: 'text', text: 'fine' } } } }).finish()));
    const end = Date.now() + 10_000;
    while (!s.frames.some((f) => f.frame?.$case === 'response') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const errors = s.frames.flatMap((f) => (f.frame?.$case === 'error' ? [f.frame.error] : []));
    expect(errors).toEqual([expect.objectContaining({ inReplyTo: 'bad-utf8', code: 'INVALID_ARGUMENT', message: expect.stringMatching(/UTF-8/) })]);
    expect(s.frames.filter((f) => f.frame?.$case === 'accepted').map((f) => f.frame?.$case === 'accepted' && f.frame.accepted.clientMessageId)).toEqual(['good']);
    s.call.end();
    expect(codeName((await s.status).code)).toBe('OK');
  });

  it('counts 16,000 emoji as 16,000 characters (accepted) and refuses 16,001', async () => {
    const s = await connected(t, `emoji-${++n}`);
    await s.reply(s.text('😀'.repeat(16_000), 'emoji-ok'));
    s.text('😀'.repeat(16_001), 'emoji-long');
    await s.until((f) => f.some((x) => x.frame?.$case === 'error'), 10_000, 'the length error');
    expect(s.of('error')[0].error).toMatchObject({ inReplyTo: 'emoji-long', code: 'INVALID_ARGUMENT', message: expect.stringMatching(/16001 characters; the limit is 16000/) });
    s.end();
  });

  it('answers media over the media limit with a ChatError (stream open); a frame over the transport limit (2 × media + 1 MiB) ends the stream with RESOURCE_EXHAUSTED', async () => {
    const small = await startTestApp({ CHATFLOW_MAX_MEDIA_BYTES: String(64 * 1024) });
    try {
      const s = await connected(small, 'big-sender');
      const png = (size: number) => Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(size)]);
      s.send({ clientMessageId: 'over-media', content: { $case: 'image', image: { mimeType: 'image/png', data: png(200 * 1024), url: '', sizeBytes: 0, durationMs: 0 } } });
      await s.until((f) => f.some((x) => x.frame?.$case === 'error'), 10_000, 'the size error');
      expect(s.of('error')[0].error).toMatchObject({ inReplyTo: 'over-media', code: 'RESOURCE_EXHAUSTED' });
      await s.reply(s.text('still open'));
      s.send({ clientMessageId: 'over-transport', content: { $case: 'image', image: { mimeType: 'image/png', data: png(2 * 1024 * 1024), url: '', sizeBytes: 0, durationMs: 0 } } });
      const st = await s.status;
      expect(codeName(st.code)).toBe('RESOURCE_EXHAUSTED');
      expect(st.details).toMatch(/larger than max/);
    } finally {
      await small.close();
    }
  });

  it('does not echo a 1 MiB client_message_id whole', async () => {
    const s = await connected(t, `long-id-${++n}`);
    s.text('hello', 'x'.repeat(1024 * 1024));
    await s.until((f) => f.some((x) => x.frame?.$case === 'error'), 10_000, 'the error');
    const err = s.of('error')[0].error;
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.inReplyTo.length).toBeLessThanOrEqual(130);
    expect(err.message.length).toBeLessThan(300);
    s.end();
  });
});

