/**
 * gRPC-Web's text mode (`application/grpc-web-text`: the body base64, both
 * ways), which Google's grpc-web library uses by default and needs for server
 * streaming (its `mode=grpcwebtext`): served alike by the embedded endpoint and
 * by Envoy's grpc_web filter. The client here is written from the protocol
 * (grpc/grpc doc/PROTOCOL-WEB.md), not from the server's code: frames built by
 * hand, the response decoded group by group.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { ConnectRequestSchema, SendAckSchema, SendRequestSchema, ServerFrameSchema, type ServerFrame } from '../gateway/web/gen/chatflow/v1/chat_pb';
import { ListConversationsRequestSchema, ListConversationsResponseSchema } from '../gateway/web/gen/chatflow/v1/history_pb';
import { SimulatedLlm } from '../src/llm/simulated';
import { describeWhen } from './engines';
import { synthesizeVoice } from './voice-signal';
import { wavFromPcm16 } from '../src/media/wav';
import { startTestApp, type TestApp } from './harness';
import { ENVOY_MISSING, envoyBinary, startEnvoy, type RunningEnvoy } from './web-helpers';

jest.setTimeout(30_000);

const TEXT = 'application/grpc-web-text';
const CONNECT = '/chatflow.v1.ChatService/Connect';
const SEND = '/chatflow.v1.ChatService/Send';
const LIST = '/chatflow.v1.HistoryService/ListConversations';

/** One gRPC-Web frame (flag 0: a message), base64. */
function textFrame<D extends DescMessage>(schema: D, msg: MessageShape<D>): string {
  const bytes = toBinary(schema, msg);
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame.toString('base64');
}

/** A text-mode response, read as it arrives: base64 decoded one 4-character group at a time (padding may close any group), then cut into frames. */
class TextResponse {
  readonly messages: Uint8Array[] = [];
  trailers?: Record<string, string>;
  readonly done: Promise<void>;
  private text = '';
  private bytes = Buffer.alloc(0);

  constructor(readonly res: Response) {
    this.done = (async () => {
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.take(Buffer.from(value).toString('latin1'));
      }
      if (this.text !== '') throw new Error(`response ended inside a base64 group: ${this.text}`);
      if (this.bytes.length !== 0) throw new Error(`response ended inside a frame (${this.bytes.length} bytes)`);
    })();
  }

  private take(chunk: string): void {
    if (/[^A-Za-z0-9+/=]/.test(chunk)) throw new Error(`not base64: ${chunk.slice(0, 40)}`);
    this.text += chunk;
    const groups: Buffer[] = [];
    while (this.text.length >= 4) {
      groups.push(Buffer.from(this.text.slice(0, 4), 'base64'));
      this.text = this.text.slice(4);
    }
    this.bytes = Buffer.concat([this.bytes, ...groups]);
    while (this.bytes.length >= 5 && this.bytes.length >= 5 + this.bytes.readUInt32BE(1)) {
      const len = this.bytes.readUInt32BE(1);
      const body = this.bytes.subarray(5, 5 + len);
      if (this.bytes[0]! & 0x80) {
        this.trailers = Object.fromEntries(
          body.toString().split('\r\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
        );
      } else {
        this.messages.push(Uint8Array.from(body));
      }
      this.bytes = this.bytes.subarray(5 + len);
    }
  }

  /** grpc-status, from the trailer frame or, for a trailers-only answer, the headers. */
  status(): { code: number; message: string } {
    const get = (k: string) => this.trailers?.[k] ?? this.res.headers.get(k) ?? undefined;
    return { code: Number(get('grpc-status')), message: decodeURIComponent(get('grpc-message') ?? '') };
  }
}

function post(baseUrl: string, path: string, body: string, headers: Record<string, string>, signal?: AbortSignal): Promise<TextResponse> {
  return fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': TEXT, accept: TEXT, 'x-grpc-web': '1', 'x-user-agent': 'grpc-web-javascript/0.1', ...headers },
    body,
    signal,
  }).then((r) => new TextResponse(r));
}

async function until(pred: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function textModeContract(name: string, target: () => { t: TestApp; url: string }) {
  const auth = async (clientId: string) => ({ authorization: `Bearer ${await target().t.app.auth.mint(clientId)}`, 'x-timezone': 'Europe/Paris' });
  const decode = <D extends DescMessage>(schema: D, r: TextResponse, i = 0) => fromBinary(schema, r.messages[i]!);

  it(`${name}: answers a unary call in text: a base64 body, the message and the trailers decoded`, async () => {
    const r = await post(target().url, LIST, textFrame(ListConversationsRequestSchema, create(ListConversationsRequestSchema, {})), await auth('text-unary'));
    await r.done;
    expect({ status: r.res.status, type: r.res.headers.get('content-type') }).toEqual({ status: 200, type: expect.stringMatching(/^application\/grpc-web-text/) });
    expect(r.status().code).toBe(0);
    expect(r.messages).toHaveLength(1);
    expect(decode(ListConversationsResponseSchema, r).conversations).toEqual([]);
  });

  it(`${name}: runs a session in text: Connect streams Welcome, then the Accepted and the reply of a Send made in text`, async () => {
    const abort = new AbortController();
    const stream = await post(target().url, CONNECT, textFrame(ConnectRequestSchema, create(ConnectRequestSchema, {})), await auth('text-stream'), abort.signal);
    const frames = (): ServerFrame[] => stream.messages.map((m) => fromBinary(ServerFrameSchema, m));
    stream.done.catch(() => undefined);
    try {
      await until(() => frames().some((f) => f.frame.case === 'welcome'), 'welcome');
      const welcome = frames()[0]!.frame;
      if (welcome.case !== 'welcome') throw new Error(`first frame ${welcome.case}`);
      const send = create(SendRequestSchema, { sessionId: welcome.value.sessionId, message: { clientMessageId: 'text-1', content: { case: 'text', value: 'hello in base64' } } });
      const ack = await post(target().url, SEND, textFrame(SendRequestSchema, send), await auth('text-stream'));
      await ack.done;
      expect(ack.status().code).toBe(0);
      expect(decode(SendAckSchema, ack).clientMessageId).toBe('text-1');
      await until(() => frames().some((f) => f.frame.case === 'response'), 'the reply');
      const kinds = frames().map((f) => f.frame.case);
      expect(kinds.indexOf('accepted')).toBeGreaterThan(0);
      expect(kinds.indexOf('accepted')).toBeLessThan(kinds.indexOf('response'));

      // An upload, base64 over many network chunks.
      const wav = synthesizeVoice('a voice note sent in text mode').bytes;
      const upload = create(SendRequestSchema, {
        sessionId: welcome.value.sessionId,
        message: { clientMessageId: 'text-2', content: { case: 'audio', value: { mimeType: 'audio/wav', data: wav, sizeBytes: BigInt(wav.length) } } },
      });
      const ack2 = await post(target().url, SEND, textFrame(SendRequestSchema, upload), await auth('text-stream'));
      await ack2.done;
      expect(ack2.status().code).toBe(0);
      await until(() => frames().filter((f) => f.frame.case === 'response').length === 2, 'the reply to the upload');
      const reply = frames().filter((f) => f.frame.case === 'response')[1]!.frame.value as { text: string };
      expect(reply.text).toMatch(new RegExp(`voice message \\(audio/wav, ${(wav.length / 1024).toFixed(1)} KiB`));
    } finally {
      abort.abort();
    }
  });

  it(`${name}: carries an upload near the media limit in text (8 MiB of WAV: 10.7 MB of base64)`, async () => {
    const abort = new AbortController();
    const stream = await post(target().url, CONNECT, textFrame(ConnectRequestSchema, create(ConnectRequestSchema, {})), await auth('text-big-upload'), abort.signal);
    stream.done.catch(() => undefined);
    try {
      await until(() => stream.messages.length > 0, 'welcome');
      const welcome = fromBinary(ServerFrameSchema, stream.messages[0]!).frame;
      if (welcome.case !== 'welcome') throw new Error(`first frame ${welcome.case}`);
      const wav = wavFromPcm16(Buffer.alloc(8 * 1024 * 1024 - 1024, 1), 16_000);
      const send = create(SendRequestSchema, {
        sessionId: welcome.value.sessionId,
        message: { clientMessageId: 'big-1', content: { case: 'audio', value: { mimeType: 'audio/wav', data: wav, sizeBytes: BigInt(wav.length) } } },
      });
      const ack = await post(target().url, SEND, textFrame(SendRequestSchema, send), await auth('text-big-upload'));
      await ack.done;
      expect(ack.status()).toEqual({ code: 0, message: expect.any(String) });
      expect(fromBinary(SendAckSchema, ack.messages[0]!).clientMessageId).toBe('big-1');
    } finally {
      abort.abort();
    }
  });

  it(`${name}: refuses in text as in binary: status and words (no token: UNAUTHENTICATED)`, async () => {
    const r = await post(target().url, LIST, textFrame(ListConversationsRequestSchema, create(ListConversationsRequestSchema, {})), { 'x-timezone': 'Europe/Paris' });
    await r.done;
    expect(r.status()).toEqual({ code: 16, message: expect.stringMatching(/authorization/i) });
  });
}

describe('gRPC-Web text mode (application/grpc-web-text)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({}, { llm: new SimulatedLlm({ delayScale: 0.05, random: () => 0.5 }) });
  });
  afterAll(async () => t?.close());

  describe('embedded endpoint', () => {
    textModeContract('embedded', () => ({ t, url: t.app.httpUrl }));

    it('refuses a body that is not base64 with INVALID_ARGUMENT, in words', async () => {
      const r = await post(t.app.httpUrl, LIST, 'AAAAAAA*not base64*', await (async () => ({ authorization: `Bearer ${await t.app.auth.mint('text-bad')}` }))());
      await r.done;
      expect(r.status()).toEqual({ code: 3, message: expect.stringMatching(/base64/) });
    });

    it('reads a body sent in several base64 pieces, each padded (padding inside the body)', async () => {
      const frame = Buffer.from(textFrame(ListConversationsRequestSchema, create(ListConversationsRequestSchema, { pageSize: 7 })), 'base64');
      const body = [frame.subarray(0, 1), frame.subarray(1, 3), frame.subarray(3)].map((b) => b.toString('base64')).join('');
      expect(body.indexOf('=')).toBeLessThan(body.length - 2);
      const r = await post(t.app.httpUrl, LIST, body, { authorization: `Bearer ${await t.app.auth.mint('text-pieces')}` });
      await r.done;
      expect(r.status().code).toBe(0);
    });

    it('holds a text request to the bounds of a binary one: over 64 KiB to a history method is refused once its length is read', async () => {
      const frame = Buffer.alloc(5 + 100 * 1024);
      frame.writeUInt32BE(100 * 1024, 1);
      const r = await post(t.app.httpUrl, LIST, frame.toString('base64'), { authorization: `Bearer ${await t.app.auth.mint('text-big')}` });
      await r.done;
      expect(r.status()).toEqual({ code: 8, message: expect.stringMatching(/65536|64 KiB/) });
    });

    it('tells a caller that speaks neither gRPC-Web mode what it does speak (415, in words)', async () => {
      const res = await fetch(`${t.app.httpUrl}${LIST}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(res.status).toBe(415);
      expect(await res.text()).toMatch(/application\/grpc-web\+proto.*application\/grpc-web-text/);
    });
  });

  describeWhen(envoyBinary() !== undefined, 'through real Envoy (gateway/envoy.yaml)', ENVOY_MISSING, () => {
    let envoy: RunningEnvoy;
    beforeAll(async () => {
      envoy = await startEnvoy(envoyBinary()!, [{ host: '127.0.0.1', port: t.app.grpcPort }]);
    });
    afterAll(async () => envoy?.stop());
    textModeContract('envoy', () => ({ t, url: envoy.url }));
  });
});
