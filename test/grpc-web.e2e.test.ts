/**
 * The embedded gRPC-Web endpoint and the page routes, from Node (no browser):
 * a real gRPC-Web client (Connect's, the same protocol code the page uses)
 * against the real server.
 */
import http from 'node:http';
import { join } from 'node:path';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-node';
import { ChatService, type ServerFrame } from '../gateway/web/gen/chatflow/v1/chat_pb';
import { HistoryService } from '../gateway/web/gen/chatflow/v1/history_pb';
import { synthesizeVoice } from './voice-signal';
import { neverRead } from './never-read';
import { SimulatedLlm } from '../src/llm/simulated';
import { connected, longConversation, metric, startTestApp, type TestApp } from './harness';

jest.setTimeout(30_000);

/** A Connect stream read in the background, like ChatStream for native calls. */
class WebStream {
  readonly frames: ServerFrame[] = [];
  readonly done: Promise<ConnectError | undefined>;
  readonly abort = new AbortController();
  headers?: Headers;
  trailers?: Headers;

  constructor(chat: Client<typeof ChatService>, headers: Record<string, string>) {
    this.done = (async () => {
      try {
        for await (const f of chat.connect({}, { headers, signal: this.abort.signal, onHeader: (h) => (this.headers = h), onTrailer: (t) => (this.trailers = t) })) this.frames.push(f);
        return undefined;
      } catch (e) {
        return ConnectError.from(e);
      }
    })();
  }

  async until(pred: (frames: ServerFrame[]) => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let ended = false;
    void this.done.then(() => (ended = true));
    while (!pred(this.frames)) {
      if (ended) throw new Error(`stream ended (${(await this.done)?.message ?? 'OK'}) before ${what}; got ${this.frames.map((f) => f.frame.case).join(',')}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${this.frames.map((f) => f.frame.case).join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  welcome() {
    const f = this.frames.find((x) => x.frame.case === 'welcome');
    return f?.frame.case === 'welcome' ? f.frame.value : undefined;
  }
}

/**
 * The chat page's own session class (gateway/web/session.ts), run in Node against the embedded endpoint. Loaded at
 * run time: the page is typechecked with its browser settings (`tsc -p gateway/web`), which this project's do not have.
 */
function pageSession(): {
  PageChatSession: new (apiUrl: string, identity: { clientId: string; token?: string }, timeZone: string, events: object) => {
    connect(): void;
    disconnect(): void;
    send(content: object): string;
    chat: { send(request: object, options?: unknown): Promise<unknown> };
  };
} {
  const path = '../gateway/web/session';
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path);
}

/**
 * The page's session class for `clientId` on `t`, its window timers shimmed, with what it reported: its states, the
 * messages accepted and failed, the pongs. `connect()` connects it and waits for its Welcome; `close()` disconnects it.
 */
async function pageFor(t: TestApp, clientId: string) {
  const events = { states: [] as string[], accepted: [] as string[], failed: [] as string[], pongs: 0 };
  const shim = globalThis as { window?: unknown };
  shim.window = globalThis; // the page's timers
  const page = new (pageSession().PageChatSession)(t.app.httpUrl, { clientId, token: await t.app.auth.mint(clientId) }, 'Europe/Paris', {
    state: (st: string) => events.states.push(st),
    notice: () => undefined,
    frame: (f: ServerFrame) => {
      if (f.frame.case === 'accepted') events.accepted.push(f.frame.value.clientMessageId);
      if (f.frame.case === 'pong') events.pongs++;
    },
    sendFailed: (id: string, text: string) => events.failed.push(`${id}: ${text}`),
  });
  return {
    page,
    events,
    async connect() {
      page.connect();
      for (const end = Date.now() + 5_000; !events.states.includes('connected') && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    },
    close() {
      page.disconnect();
      delete shim.window;
    },
  };
}

describe('embedded gRPC-Web endpoint', () => {
  let t: TestApp;
  let chat: Client<typeof ChatService>;
  let history: Client<typeof HistoryService>;
  const auth = async (clientId: string) => ({ authorization: `Bearer ${await t.app.auth.mint(clientId)}`, 'x-timezone': 'Europe/Paris' });

  beforeAll(async () => {
    // Paced replies (a text in 100 ms, four steps): deltas stream before the reply, as from a real model.
    t = await startTestApp({ CHATFLOW_MAX_CLIENTS: '3', CHATFLOW_RETRY_AFTER_MS: '3000' }, { llm: new SimulatedLlm({ delayScale: 0.2, random: () => 0.5 }) });
    const transport = createGrpcWebTransport({ baseUrl: t.app.httpUrl, httpVersion: '1.1' });
    chat = createClient(ChatService, transport);
    history = createClient(HistoryService, transport);
  });
  afterAll(async () => t.close());

  it('runs a session: Connect streams Welcome, Accepted, deltas and the reply to a Send', async () => {
    const s = new WebStream(chat, await auth('web-1'));
    await s.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    const w = s.welcome()!;
    expect(w.clientId).toBe('web-1');
    expect(w.localTime).toMatch(/[+-]\d\d:\d\d$/);
    const ack = await chat.send({ sessionId: w.sessionId, message: { clientMessageId: 'm1', content: { case: 'text', value: 'hello over gRPC-Web' } } }, { headers: await auth('web-1') });
    expect(ack.clientMessageId).toBe('m1');
    expect(ack.seq).toBeGreaterThan(0n);
    await s.until((f) => f.some((x) => x.frame.case === 'response'), 'the reply');
    const kinds = s.frames.map((f) => f.frame.case);
    expect(kinds.indexOf('accepted')).toBeLessThan(kinds.indexOf('response'));
    const response = s.frames.find((f) => f.frame.case === 'response')!.frame.value as { text: string; inReplyTo: string };
    const deltas = s.frames.filter((f) => f.frame.case === 'delta').map((f) => (f.frame.value as { textDelta: string }).textDelta);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(response.text);
    expect(kinds.indexOf('delta')).toBeLessThan(kinds.indexOf('response'));
    expect(response.inReplyTo).toBe(ack.messageId);
    s.abort.abort();
  });

  it('serves calls whose grpc-timeout is weeks away (past the longest delay a Node timer takes), and still ends one whose time is up', async () => {
    // 720H = 2,592,000,000 ms, more than 2^31 - 1: the endpoint's deadline timer fired at once (CANCELLED), and the
    // gRPC server's ended the forwarded call (DEADLINE_EXCEEDED).
    const far = { ...(await auth('web-patient')), 'grpc-timeout': '720H' };
    const s = new WebStream(chat, far);
    await s.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    const ack = await chat.send({ sessionId: s.welcome()!.sessionId, message: { clientMessageId: 'm1', content: { case: 'text', value: 'still there next month?' } } }, { headers: far });
    await s.until((f) => f.some((x) => x.frame.case === 'response' && x.frame.value.inReplyTo === ack.messageId), 'the reply');
    expect((await history.listConversations({ pageSize: 5 }, { headers: far })).conversations.length).toBeGreaterThan(0);
    s.abort.abort();
    await s.done;

    const near = new WebStream(chat, { ...(await auth('web-hurried')), 'grpc-timeout': '1500m' });
    await near.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    expect((await near.done)?.code).toBe(Code.DeadlineExceeded);
  });

  it('refuses a request that is not protobuf, or whose strings are not UTF-8, with INVALID_ARGUMENT in words, not INTERNAL', async () => {
    const headers = { ...(await auth('web-clumsy')), 'content-type': 'application/grpc-web+proto' };
    const call = async (method: string, message: Buffer) => {
      const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), message]);
      body.writeUInt32BE(message.length, 1);
      const res = await fetch(`${t.app.httpUrl}/chatflow.v1.${method}`, { method: 'POST', headers, body });
      const text = Buffer.from(await res.arrayBuffer()).toString('latin1');
      return { status: res.headers.get('grpc-status') ?? /grpc-status: *(\d+)/.exec(text)?.[1], message: decodeURIComponent(res.headers.get('grpc-message') ?? /grpc-message: *(.*)\r\n/.exec(text)?.[1] ?? '') };
    };
    // A field that claims 127 bytes and has 2: "parse binary: premature EOF", INTERNAL, before.
    expect(await call('HistoryService/ListMessages', Buffer.from([0x0a, 0x7f, 0x61, 0x62]))).toEqual({ status: '3', message: expect.stringMatching(/not a valid chatflow\.v1\.ListMessagesRequest/) });
    expect(await call('ChatService/Send', Buffer.from([0x12, 0x7f, 0x0a]))).toEqual({ status: '3', message: expect.stringMatching(/not a valid chatflow\.v1\.SendRequest/) });
    // SendRequest{message: {client_message_id: "u1", text: "hi" + bytes that are not UTF-8}}.
    const text = Buffer.from([0x12, 0x04, 0x68, 0x69, 0xff, 0xfe]);
    const userMessage = Buffer.concat([Buffer.from([0x0a, 0x02, 0x75, 0x31]), text]);
    expect(await call('ChatService/Send', Buffer.concat([Buffer.from([0x12, userMessage.length]), userMessage]))).toEqual({ status: '3', message: expect.stringMatching(/utf-8/i) });
  });

  it('carries media in: a WAV upload reaches the bot (no voice out without a synthesizer; real voice: test/speech.e2e.test.ts)', async () => {
    const s = new WebStream(chat, await auth('web-audio'));
    await s.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    const wav = synthesizeVoice('a voice note sent from a browser').bytes;
    await chat.send(
      { sessionId: s.welcome()!.sessionId, message: { clientMessageId: 'a1', content: { case: 'audio', value: { mimeType: 'audio/wav', data: wav, sizeBytes: BigInt(wav.length) } } } },
      { headers: await auth('web-audio') },
    );
    await s.until((f) => f.some((x) => x.frame.case === 'response'), 'the reply');
    const r = s.frames.find((f) => f.frame.case === 'response')!.frame.value as { text: string; voice?: unknown };
    expect(r.text).toMatch(new RegExp(`voice message \\(audio/wav, ${(wav.length / 1024).toFixed(1)} KiB`));
    expect(r.voice).toBeUndefined();
    s.abort.abort();
  });

  it('maps refusals 1:1: statuses, messages and the retry-after-ms trailer', async () => {
    // No credentials.
    const anon = new WebStream(chat, { 'x-timezone': 'Europe/Paris' });
    const e1 = await anon.done;
    expect(e1?.code).toBe(Code.Unauthenticated);
    expect(e1?.rawMessage).toMatch(/authorization/);
    // Not a zone.
    const bad = new WebStream(chat, { ...(await auth('web-tz')), 'x-timezone': 'Mars/Olympus' });
    expect((await bad.done)?.code).toBe(Code.InvalidArgument);
    // A header value gRPC metadata cannot carry (HTTP/1.1 allows Latin-1).
    const latin = new WebStream(chat, { ...(await auth('web-tz')), 'x-timezone': 'Europe/Z\u00fcrich' });
    const e4 = await latin.done;
    expect(e4?.code).toBe(Code.InvalidArgument);
    expect(e4?.rawMessage).toMatch(/x-timezone/);
    // A second stream for a connected client.
    const first = new WebStream(chat, await auth('web-dup'));
    await first.until((f) => f.length > 0, 'welcome');
    const second = new WebStream(chat, await auth('web-dup'));
    const e2 = await second.done;
    expect(e2?.code).toBe(Code.AlreadyExists);
    expect(e2?.rawMessage).toMatch(/already connected/);
    // Full: 3 allowed; web-dup holds one, two native clients take the rest.
    const holders = [await connected(t, 'holder-1'), await connected(t, 'holder-2')];
    const full = new WebStream(chat, await auth('web-full'));
    const e3 = await full.done;
    expect(e3?.code).toBe(Code.ResourceExhausted);
    expect(e3?.rawMessage).toMatch(/server full/);
    expect(e3?.metadata.get('retry-after-ms')).toBe('3000');
    for (const h of holders) h.cancel();
    first.abort.abort();
    // Send on a session that is not open.
    await expect(chat.send({ sessionId: 'nope', message: { clientMessageId: 'x', content: { case: 'text', value: 'x' } } }, { headers: await auth('web-dup') })).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });

  /**
   * A gRPC-Web call made by hand over HTTP/1.1: its headers, then `sent` bytes of a message framed as `claimed` bytes
   * long, and nothing more. Resolves with the grpc-status the server answered within `ms`, or 'no answer'.
   */
  async function partialWebCall(path: string, headers: Record<string, string>, claimed: number, sent: number, ms = 3_000): Promise<string> {
    const req = http.request(`${t.app.httpUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', ...headers } });
    req.on('error', () => undefined);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(claimed, 1);
    req.write(Buffer.concat([prefix, Buffer.alloc(sent, 0x41)]));
    // A whole message: the request ends there.
    if (sent === claimed) req.end();
    try {
      return await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('no answer'), ms);
        req.on('response', (res) => {
          const inHeaders = res.headers['grpc-status'];
          const retry = res.headers['retry-after-ms'];
          if (inHeaders !== undefined) return clearTimeout(timer), resolve(String(inHeaders) + (retry === undefined ? '' : ` retry-after-ms=${String(retry)}`));
          // Or in the body's trailer frame (flag 0x80), as Connect writes an error after reading the request.
          let body = Buffer.alloc(0);
          res.on('data', (c: Buffer) => {
            body = Buffer.concat([body, c]);
            const m = /grpc-status: ?(\d+)/.exec(body.toString('latin1'));
            if (m) clearTimeout(timer), resolve(m[1]!);
          });
        });
      });
    } finally {
      req.destroy();
    }
  }

  it('refuses a call without a token at once, before reading its body (4 MiB announced, 64 KiB sent, the rest never)', async () => {
    for (const path of ['/chatflow.v1.ChatService/Send', '/chatflow.v1.ChatService/Connect', '/chatflow.v1.HistoryService/ListMessages']) {
      expect([path, await partialWebCall(path, {}, 4 * 1024 * 1024, 64 * 1024)]).toEqual([path, String(Code.Unauthenticated)]);
    }
  });

  it('refuses a request over 64 KiB to a method that carries no media as soon as its length is read; a Send may carry an upload', async () => {
    const headers = await auth('web-big-request');
    expect(await partialWebCall('/chatflow.v1.HistoryService/ListMessages', headers, 4 * 1024 * 1024, 1024)).toBe(String(Code.ResourceExhausted));
    // A Send's 4 MiB is waited for (an upload that is still coming), not refused.
    expect(await partialWebCall('/chatflow.v1.ChatService/Send', headers, 4 * 1024 * 1024, 1024)).toBe('no answer');
  });

  it('holds a request in JSON (+json) to 64 KiB, a Send too: a JSON body is parsed whole on the event loop', async () => {
    const headers = { ...(await auth('web-json')), 'content-type': 'application/grpc-web+json' };
    const call = async (path: string, json: string) => {
      const message = Buffer.from(json);
      const body = Buffer.concat([Buffer.alloc(5), message]);
      body.writeUInt32BE(message.length, 1);
      const started = Date.now();
      const res = await fetch(`${t.app.httpUrl}${path}`, { method: 'POST', headers, body });
      const text = Buffer.from(await res.arrayBuffer()).toString('latin1');
      return { status: res.headers.get('grpc-status') ?? /grpc-status: *(\d+)/.exec(text)?.[1], ms: Date.now() - started, text };
    };
    // 200,000 nested arrays in 400 KB: parsed whole before (JSON.parse holds the loop; 8 MB of them held it 2.5 s and
    // took the server from 128 to 511 MB), then refused as the wrong type.
    const nested = `{"message":{"clientMessageId":"j1","text":${'['.repeat(200_000)}${']'.repeat(200_000)}}}`;
    expect((await call('/chatflow.v1.ChatService/Send', nested)).status).toBe(String(Code.ResourceExhausted));
    // JSON is still spoken, within the bound.
    const list = await call('/chatflow.v1.HistoryService/ListConversations', '{"pageSize": 5}');
    expect(list.status).toBe('0');
  });

  it('closes the connection after refusing a request it did not read whole, so the client\'s next call goes out on a new one', async () => {
    // One keep-alive connection, as a browser's pool reuses: a ListConversations of 200 KB sent whole (refused once
    // its length is read), then a small one. Before, the connection was kept with the refused body's rest unread
    // on it: the next call got no answer and was reset after the keep-alive timeout.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const headers = { ...(await auth('web-big-then-small')), 'content-type': 'application/grpc-web+proto' };
    const call = (message: Buffer) =>
      new Promise<{ status: string; connection?: string }>((resolve, reject) => {
        const body = Buffer.concat([Buffer.alloc(5), message]);
        body.writeUInt32BE(message.length, 1);
        const req = http.request(`${t.app.httpUrl}/chatflow.v1.HistoryService/ListConversations`, { method: 'POST', agent, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: String(res.headers['grpc-status'] ?? /grpc-status: ?(\d+)/.exec(Buffer.concat(chunks).toString('latin1'))?.[1]), connection: res.headers.connection }));
        });
        req.setTimeout(3_000, () => req.destroy(new Error('no answer within 3 s')));
        req.on('error', reject);
        req.end(body);
      });
    try {
      expect(await call(Buffer.alloc(200_000, 0x41))).toEqual({ status: String(Code.ResourceExhausted), connection: 'close' });
      expect(await call(Buffer.alloc(0))).toEqual({ status: '0', connection: 'keep-alive' });
    } finally {
      agent.destroy();
    }
  });

  it('reads a client\'s Sends two at a time: a third waits unread, and after 5 s is refused RESOURCE_EXHAUSTED + retry-after-ms', async () => {
    const headers = await auth('web-trickler');
    const send = '/chatflow.v1.ChatService/Send';
    const held = [partialWebCall(send, headers, 4 * 1024 * 1024, 1024, 8_000), partialWebCall(send, headers, 4 * 1024 * 1024, 1024, 8_000)];
    await new Promise((r) => setTimeout(r, 300));
    expect(await partialWebCall(send, headers, 4 * 1024 * 1024, 1024, 7_000)).toMatch(new RegExp(`^${Code.ResourceExhausted} retry-after-ms=\\d+$`));
    expect(await metric(t, 'chatflow_sends_busy_total{transport="grpc-web"}')).toBe(1);
    expect(await Promise.all(held)).toEqual(['no answer', 'no answer']);
  }, 20_000);

  it('the page sends a message again after retry-after-ms when the server was too busy to read it, rather than call it too large', async () => {
    const clientId = 'web-page-busy';
    const headers = await auth(clientId);
    const { page, events, connect, close } = await pageFor(t, clientId);
    try {
      await connect();
      // The client's two places held by Sends still coming, for 6.5 s: the page's upload waits 5 s, is refused, and
      // is sent again 3 s later (CHATFLOW_RETRY_AFTER_MS), when they are gone.
      const held = [0, 1].map(() => partialWebCall('/chatflow.v1.ChatService/Send', headers, 4 * 1024 * 1024, 1024, 6_500));
      await new Promise((r) => setTimeout(r, 300));
      const wav = synthesizeVoice('are you busy?').bytes;
      const id = page.send({ case: 'audio', value: { mimeType: 'audio/wav', data: wav, sizeBytes: BigInt(wav.length) } });
      for (const end = Date.now() + 15_000; !events.accepted.includes(id) && events.failed.length === 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
      await Promise.all(held);
      expect(events.failed).toEqual([]);
      expect(events.accepted).toContain(id);
    } finally {
      close();
    }
  }, 30_000);

  it('reads a Send that says it carries no upload (x-no-upload) at once while uploads hold its client\'s places, held to 64 KiB; the page says so of its texts and pings', async () => {
    const clientId = 'web-texter';
    const headers = await auth(clientId);
    const send = '/chatflow.v1.ChatService/Send';
    const { page, events, connect, close } = await pageFor(t, clientId);
    try {
      await connect();
      // The client's two places held by uploads still coming (4 MiB announced, 1 KiB sent), for 6 s.
      const held = [0, 1].map(() => partialWebCall(send, headers, 4 * 1024 * 1024, 1024, 6_000));
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      // Read at once (these bytes are no SendRequest: INVALID_ARGUMENT, as above); over 64 KiB, refused.
      expect(await partialWebCall(send, { ...headers, 'x-no-upload': 'true' }, 8, 8, 3_000)).toBe(String(Code.InvalidArgument));
      expect(await partialWebCall(send, { ...headers, 'x-no-upload': 'true' }, 128 * 1024, 1024, 3_000)).toBe(String(Code.ResourceExhausted));
      // The page's text is accepted while the uploads are still held (it used to wait 5 s and be refused).
      const id = page.send({ case: 'text', value: 'no upload here' });
      while (!events.accepted.includes(id) && events.failed.length === 0 && Date.now() - started < 4_500) await new Promise((r) => setTimeout(r, 20));
      expect(events.failed).toEqual([]);
      expect(events.accepted).toContain(id);
      expect(await Promise.all(held)).toEqual(['no answer', 'no answer']);
    } finally {
      close();
    }
  }, 20_000);

  it('gives a Send\'s place back when its browser leaves while it waits for one', async () => {
    const headers = await auth('web-leaver-of-places');
    const send = '/chatflow.v1.ChatService/Send';
    // Two Sends being read (4 MiB announced, 1 KiB sent) whose browsers leave after 2 s; two waiting, whose browsers
    // leave first.
    const held = [0, 1].map(() => partialWebCall(send, headers, 4 * 1024 * 1024, 1024, 2_000));
    await new Promise((r) => setTimeout(r, 300));
    const waiting = [0, 1].map(() => partialWebCall(send, headers, 4 * 1024 * 1024, 1024, 700));
    expect(await Promise.all([...held, ...waiting])).toEqual(['no answer', 'no answer', 'no answer', 'no answer']);
    // The client's places are free again: its next Send is read at once (these bytes are no SendRequest: INVALID_ARGUMENT).
    expect(await partialWebCall(send, headers, 8, 8, 3_000)).toBe(String(Code.InvalidArgument));
  }, 20_000);

  it('holds a history call\'s place until its answer is taken: a client that pipelines calls and never reads has 32 answers waiting, the rest refused', async () => {
    // Pages of ~1 MiB (texts of 64,000 bytes): more than the kernel takes in for a connection that is not read.
    const conversationId = await longConversation(t, 'web-hoarder', 16);
    const headers = await auth('web-hoarder');
    const id = Buffer.from(conversationId);
    const message = Buffer.concat([Buffer.from([0x0a, id.length]), id]); // ListMessagesRequest.conversation_id
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    const request = Buffer.concat([
      Buffer.from(`POST /chatflow.v1.HistoryService/ListMessages HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nAuthorization: ${headers.authorization}\r\nContent-Length: ${frame.length}\r\n\r\n`),
      frame,
    ]);
    const busy = async () => (await metric(t, 'chatflow_calls_refused_total{reason="busy"}')) || 0;
    const before = await busy();
    const u = new URL(t.app.httpUrl);
    // 6 connections × 14 calls sent ahead (under the 16 a connection may have waiting), none of the answers read:
    // the kernel takes in the first few answers of each connection, the others wait in the server.
    const flood = neverRead(Number(u.port), Buffer.concat(Array.from({ length: 14 }, () => request)), 6);
    try {
      await new Promise((r) => setTimeout(r, 2_500));
      // Before: all 84 answered into memory (each answer held until read), none refused. Now 32 hold a place, and
      // those past them wait 1 s and are refused.
      expect((await busy()) - before).toBeGreaterThanOrEqual(10);
    } finally {
      flood.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    // Their places given back: the client's next call is answered.
    expect((await history.listMessages({ conversationId }, { headers })).messages.length).toBeGreaterThan(0);
  }, 30_000);

  it('frees the slot when the browser closes its stream', async () => {
    const s = new WebStream(chat, await auth('web-leaver'));
    await s.until((f) => f.length > 0, 'welcome');
    const before = await metric(t, 'chatflow_clients_connected');
    s.abort.abort();
    // The same client can connect again at once (natively): the cancel reached the gateway.
    const end = Date.now() + 5000;
    for (;;) {
      if ((await metric(t, 'chatflow_clients_connected')) < before) break;
      if (Date.now() > end) throw new Error('slot not freed after the gRPC-Web stream was cancelled');
      await new Promise((r) => setTimeout(r, 25));
    }
    const again = await connected(t, 'web-leaver');
    again.cancel();
  });

  it('serves HistoryService: own conversations and messages only', async () => {
    const s = new WebStream(chat, await auth('web-hist'));
    await s.until((f) => f.length > 0, 'welcome');
    const w = s.welcome()!;
    await chat.send({ sessionId: w.sessionId, message: { clientMessageId: 'h1', content: { case: 'text', value: 'remember me' } } }, { headers: await auth('web-hist') });
    await s.until((f) => f.some((x) => x.frame.case === 'response'), 'the reply');
    s.abort.abort();
    const convs = await history.listConversations({}, { headers: await auth('web-hist') });
    expect(convs.conversations.map((c) => c.conversationId)).toContain(w.conversationId);
    const msgs = await history.listMessages({ conversationId: w.conversationId }, { headers: await auth('web-hist') });
    expect(msgs.messages.map((m) => m.text)[0]).toBe('remember me');
    expect(msgs.messages).toHaveLength(2);
    await expect(history.listMessages({ conversationId: w.conversationId }, { headers: await auth('someone-else') })).rejects.toMatchObject({ code: Code.PermissionDenied });
  });

  it('lets pages of this machine\'s other origins call (CORS, CHATFLOW_WEB_ORIGINS), and tells a foreign origin why not', async () => {
    const preflight = (origin: string) =>
      fetch(`${t.app.httpUrl}/chatflow.v1.HistoryService/ListConversations`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-grpc-web,x-timezone' },
      });
    const ok = await preflight('http://localhost:5173');
    expect({ status: ok.status, origin: ok.headers.get('access-control-allow-origin'), methods: ok.headers.get('access-control-allow-methods') }).toEqual({ status: 204, origin: 'http://localhost:5173', methods: 'POST, OPTIONS' });
    expect(ok.headers.get('access-control-allow-headers')?.split(',')).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-grpc-web', 'x-timezone', 'x-no-upload']));
    expect(ok.headers.get('access-control-allow-credentials')).toBeNull();
    const foreign = await preflight('https://evil.example');
    expect({ status: foreign.status, origin: foreign.headers.get('access-control-allow-origin'), text: await foreign.text() }).toEqual({ status: 403, origin: null, text: expect.stringMatching(/https:\/\/evil\.example may not call this endpoint: list the origin in CHATFLOW_WEB_ORIGINS/) });
    // The call itself: its page may read the answer and the refusal headers.
    let headers: Headers | undefined;
    await history.listConversations({}, { headers: { ...(await auth('web-cors')), origin: 'http://localhost:5173' }, onHeader: (h) => (headers = h) });
    expect({ origin: headers?.get('access-control-allow-origin'), exposed: headers?.get('access-control-expose-headers') }).toEqual({ origin: 'http://localhost:5173', exposed: 'grpc-status,grpc-message,retry-after-ms' });
    // The token endpoint stays same-origin (no preflight is answered there).
    const token = await fetch(`${t.app.httpUrl}/dev/token`, { method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' } });
    expect(token.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('does not serve the bidi Chat method (gRPC-Web has no client streaming) nor anything but the two services', async () => {
    for (const path of ['/chatflow.v1.ChatService/Chat', '/chatflow.v1.ChatService/Nope', '/grpc.health.v1.Health/Check']) {
      const res = await fetch(`${t.app.httpUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' }, body: new Uint8Array(5) });
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
    }
  });
});

describe('web page routes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t.close());

  it('serves the page, its stylesheet and its bundle with their types and a strict CSP', async () => {
    const page = await fetch(`${t.app.httpUrl}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('<meta name="chatflow-dev-tokens" content="off">');
    expect(html).toContain('<script type="module" src="/app.js"></script>');
    const css = await fetch(`${t.app.httpUrl}/styles.css`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    const js = await fetch(`${t.app.httpUrl}/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await js.text()).length).toBeGreaterThan(10_000);
    expect((await fetch(`${t.app.httpUrl}/`, { method: 'POST' })).status).toBe(405);
  });

  it('serves nothing else from the disk', async () => {
    const { request } = await import('node:http');
    // Raw paths: fetch would normalise the dots away.
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const u = new URL(t.app.httpUrl);
        request({ host: u.hostname, port: u.port, path, method: 'GET' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject).end();
      });
    for (const p of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/app.ts', '/gen/chatflow/v1/chat_pb.ts', '/dist/app.js', '/index.html/../../secret', '//etc/passwd']) {
      expect({ p, status: await get(p) }).toEqual({ p, status: 404 });
    }
  });

  it('sends one copy of the bundle to clients that never read it, not a copy each; a rebuilt bundle is sent anew', async () => {
    const { appendFile, truncate } = await import('node:fs/promises');
    const u = new URL(t.app.httpUrl);
    const map = join(__dirname, '..', 'gateway', 'web', 'dist', 'app.js.map');
    const size = (await fetch(`${t.app.httpUrl}/app.js.map`).then((r) => r.arrayBuffer())).byteLength;
    expect(size).toBeGreaterThan(100_000);
    const before = process.memoryUsage().arrayBuffers;
    // 50 connections ask 16 times each for the bundle's map, without a token, and never read.
    const flood = neverRead(Number(u.port), 'GET /app.js.map HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(16), 50);
    try {
      await new Promise((r) => setTimeout(r, 1_500));
      // Before: a copy per request, all but what the kernel took in held until read (~800 copies).
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(10 * size);
    } finally {
      flood.destroy();
    }
    // Rebuilt (a byte more): the next request gets the new file.
    await appendFile(map, '\n');
    try {
      expect((await fetch(`${t.app.httpUrl}/app.js.map`).then((r) => r.arrayBuffer())).byteLength).toBe(size + 1);
    } finally {
      await truncate(map, size);
    }
    expect((await fetch(`${t.app.httpUrl}/app.js.map`).then((r) => r.arrayBuffer())).byteLength).toBe(size);
  });

  it('has no token endpoint unless CHATFLOW_DEV_TOKENS=true', async () => {
    const res = await fetch(`${t.app.httpUrl}/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"clientId":"x"}' });
    expect(res.status).toBe(404);
  });
});

describe('development token endpoint (CHATFLOW_DEV_TOKENS=true)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_DEV_TOKENS: 'true' });
  });
  afterAll(async () => t.close());

  const post = (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    fetch(`${t.app.httpUrl}/dev/token`, { method: 'POST', headers, body });

  it('issues a token that the gRPC server accepts, and says so in the page', async () => {
    const res = await post(JSON.stringify({ clientId: 'dev-alice' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const { token, clientId } = (await res.json()) as { token: string; clientId: string };
    expect(clientId).toBe('dev-alice');
    const transport = createGrpcWebTransport({ baseUrl: t.app.httpUrl, httpVersion: '1.1' });
    const convs = await createClient(HistoryService, transport).listConversations({}, { headers: { authorization: `Bearer ${token}` } });
    expect(convs.conversations).toEqual([]);
    expect(await (await fetch(`${t.app.httpUrl}/`)).text()).toContain('<meta name="chatflow-dev-tokens" content="on">');
  });

  it('refuses what is not a same-origin JSON POST with a valid client id', async () => {
    expect((await fetch(`${t.app.httpUrl}/dev/token`)).status).toBe(405);
    expect((await post('clientId=x', { 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(415);
    expect((await post('{"clientId":"x"}', { 'content-type': 'application/json', origin: 'https://evil.example' })).status).toBe(403);
    expect((await post('{"clientId":"a b"}')).status).toBe(400);
    expect((await post('not json')).status).toBe(400);
    expect((await post(JSON.stringify({ clientId: 'x'.repeat(2000) }))).status).toBe(413);
  });
});

describe('a browser gone without closing its Connect stream (the silence rule, the take-over)', () => {
  // Pings come every LIMIT_MS / 5 (the page's every LIMIT_MS / 4): a late timer or Send on a busy machine has room.
  const LIMIT_MS = 1500;
  let t: TestApp;
  let chat: Client<typeof ChatService>;
  const auth = async (clientId: string) => ({ authorization: `Bearer ${await t.app.auth.mint(clientId)}`, 'x-timezone': 'Europe/Paris' });

  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_SILENCE_LIMIT_MS: String(LIMIT_MS), CHATFLOW_MAX_CLIENTS: '3' });
    chat = createClient(ChatService, createGrpcWebTransport({ baseUrl: t.app.httpUrl, httpVersion: '1.1' }));
  });
  afterAll(async () => t.close());

  it('a ping over Send is answered on the stream; a client that pinged and then went silent is closed and its slot freed', async () => {
    const s = new WebStream(chat, await auth('web-pinger'));
    await s.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    const w = s.welcome()!;
    expect(w.silenceLimitMs).toBe(BigInt(LIMIT_MS));
    const ack = await chat.send({ sessionId: w.sessionId, ping: { nonce: 7n } }, { headers: await auth('web-pinger') });
    expect(ack).toMatchObject({ clientMessageId: '', messageId: '', seq: 0n, duplicate: false });
    await s.until((f) => f.some((x) => x.frame.case === 'pong' && x.frame.value.nonce === 7n), 'the pong');
    // Alive while it pings (well past the limit in all), and a message counts as heard too.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, LIMIT_MS / 5));
      if (i === 5) await chat.send({ sessionId: w.sessionId, message: { clientMessageId: 'm1', content: { case: 'text', value: 'still here' } } }, { headers: await auth('web-pinger') });
      else await chat.send({ sessionId: w.sessionId, ping: { nonce: BigInt(i) } }, { headers: await auth('web-pinger') });
    }
    expect(s.frames.some((x) => x.frame.case === 'accepted')).toBe(true);
    // Gone without a word: closed within the limit (and one timer turn), the slot freed for the same client at once.
    const silentFrom = Date.now();
    const err = await s.done;
    expect(Date.now() - silentFrom).toBeLessThan(LIMIT_MS + 2_000);
    expect(err?.code).toBe(Code.DeadlineExceeded);
    expect(err?.rawMessage).toMatch(/^no Send \(ping or message\) for \d+ ms after this client pinged \(limit 1500 ms\): the stream was taken for dead and closed, its slot freed/);
    const back = new WebStream(chat, await auth('web-pinger'));
    await back.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome again (not ALREADY_EXISTS)');
    back.abort.abort();
    expect(await metric(t, 'chatflow_disconnects_total{reason="silent"}')).toBe(1);
  });

  it('the page pings while connected: it stays connected well past the limit, with no message sent', async () => {
    const { events, connect, close } = await pageFor(t, 'web-page-pinger');
    try {
      await connect();
      await new Promise((r) => setTimeout(r, LIMIT_MS * 3));
      expect(events.states).toEqual(['connecting', 'connected']);
      expect(events.pongs).toBeGreaterThanOrEqual(6); // one every LIMIT_MS / 4
    } finally {
      close();
    }
  });

  it('the page posts its uploads one at a time, so that a text or a ping always finds one of its two places', async () => {
    const { page, events, connect, close } = await pageFor(t, 'web-page-uploader');
    // Every Send the page makes, and how many uploads it had on the way at once.
    const send = page.chat.send.bind(page.chat);
    let uploading = 0;
    let mostUploading = 0;
    const kinds: string[] = [];
    page.chat.send = async (req: { message?: { content?: { case?: string } }; ping?: unknown }, opts?: unknown) => {
      const kind = req.ping ? 'ping' : (req.message?.content?.case ?? '?');
      kinds.push(kind);
      const upload = kind !== 'ping' && kind !== 'text';
      if (upload) mostUploading = Math.max(mostUploading, ++uploading);
      try {
        return await send(req, opts);
      } finally {
        if (upload) uploading--;
      }
    };
    try {
      await connect();
      const wav = synthesizeVoice('one of three voice notes').bytes;
      const ids = [0, 1, 2].map(() => page.send({ case: 'audio', value: { mimeType: 'audio/wav', data: wav, sizeBytes: BigInt(wav.length) } }));
      ids.push(page.send({ case: 'text', value: 'and a text' }));
      for (const end = Date.now() + 15_000; ids.some((id) => !events.accepted.includes(id)) && events.failed.length === 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      expect(events.failed).toEqual([]);
      expect(events.accepted).toEqual(expect.arrayContaining(ids));
      expect(kinds.filter((k) => k === 'audio')).toHaveLength(3);
      expect(mostUploading).toBe(1);
    } finally {
      close();
    }
  });

  it('a client that never pings is not held to it', async () => {
    const s = new WebStream(chat, await auth('web-quiet'));
    await s.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    await chat.send({ sessionId: s.welcome()!.sessionId, message: { clientMessageId: 'q1', content: { case: 'text', value: 'one message, then nothing' } } }, { headers: await auth('web-quiet') });
    await new Promise((r) => setTimeout(r, LIMIT_MS * 2));
    let ended = false;
    void s.done.then(() => (ended = true));
    await new Promise((r) => setImmediate(r));
    expect(ended).toBe(false);
    s.abort.abort();
  });

  it('a client back from a stream the server still holds takes it over by naming it (x-replaces-session); nobody else can', async () => {
    const old = new WebStream(chat, await auth('web-sleeper'));
    await old.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    const oldId = old.welcome()!.sessionId;
    await chat.send({ sessionId: oldId, message: { clientMessageId: 's1', content: { case: 'text', value: 'before the laptop slept' } } }, { headers: await auth('web-sleeper') });
    // The old stream stays open (the server cannot tell it from one whose laptop slept). Without its id, or with
    // another, the slot is the old stream's: ALREADY_EXISTS, as before.
    expect((await new WebStream(chat, await auth('web-sleeper')).done)?.code).toBe(Code.AlreadyExists);
    expect((await new WebStream(chat, { ...(await auth('web-sleeper')), 'x-replaces-session': 'not-the-one' }).done)?.code).toBe(Code.AlreadyExists);
    // Another client naming it gets its own slot and leaves the old stream alone.
    const other = new WebStream(chat, { ...(await auth('web-neighbour')), 'x-replaces-session': oldId });
    await other.until((f) => f.some((x) => x.frame.case === 'welcome'), 'the other client\'s welcome');
    other.abort.abort();
    // Named by its own client: the old stream ends ALREADY_EXISTS (replaced), the new one is welcomed at once.
    const back = new WebStream(chat, { ...(await auth('web-sleeper')), 'x-replaces-session': oldId, 'x-conversation-id': old.welcome()!.conversationId, 'x-resume-after': '0' });
    await back.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome of the stream that took over');
    const ended = await old.done;
    expect(ended?.code).toBe(Code.AlreadyExists);
    expect(ended?.rawMessage).toBe('this stream was replaced by a newer connection of web-sleeper that named it (x-replaces-session)');
    // The conversation goes on there: the reply to the message sent before is replayed or delivered on it.
    await back.until((f) => f.some((x) => x.frame.case === 'response'), 'the reply on the new stream', 15_000);
    expect(await metric(t, 'chatflow_disconnects_total{reason="replaced"}')).toBe(1);
    back.abort.abort();
  });

  it('refuses a Send with neither a message nor a ping, or with both (INVALID_ARGUMENT), and a ping on another client\'s session', async () => {
    const s = new WebStream(chat, await auth('web-owner'));
    await s.until((f) => f.some((x) => x.frame.case === 'welcome'), 'welcome');
    const sessionId = s.welcome()!.sessionId;
    await expect(chat.send({ sessionId }, { headers: await auth('web-owner') })).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: 'a Send carries a message or a ping: neither is set' });
    await expect(chat.send({ sessionId, ping: { nonce: 1n }, message: { clientMessageId: 'b', content: { case: 'text', value: 'x' } } }, { headers: await auth('web-owner') }))
      .rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: 'a Send carries a message or a ping, not both' });
    await expect(chat.send({ sessionId, ping: { nonce: 2n } }, { headers: await auth('web-intruder') })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(s.frames.some((x) => x.frame.case === 'pong')).toBe(false);
    s.abort.abort();
  });
});
