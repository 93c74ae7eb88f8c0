// A real node:http fake of an OpenAI-compatible server on 127.0.0.1 (no
// internet): exercises the HTTP client, the SSE parser and the error mapping.
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { OpenAiCompatibleLlm, SseParser } from './openai';
import { LlmError, LlmRequest } from './port';

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;

let server: http.Server;
let baseUrl: string;
let handler: Handler;
let seen: { headers: http.IncomingHttpHeaders; url?: string; body: any }[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ headers: req.headers, url: req.url, body: body ? JSON.parse(body) : undefined });
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

beforeEach(() => (seen = []));

const chunk = (content: string) => JSON.stringify({ id: 'c1', model: 'fake-model', choices: [{ index: 0, delta: { content } }] });

/** Streams the given raw SSE text in awkward pieces (splitting lines, CRLFs and UTF-8 sequences). */
function streamRaw(raw: string, pieceBytes = 7, gapMs = 1): Handler {
  return async (_req, _body, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const bytes = Buffer.from(raw, 'utf8');
    for (let i = 0; i < bytes.length; i += pieceBytes) {
      res.write(bytes.subarray(i, i + pieceBytes));
      await sleep(gapMs);
    }
    res.end();
  };
}

function sse(pieces: string[], { done = true, eol = '\n' } = {}): string {
  let out = `: keep-alive comment${eol}${eol}`;
  out += `data: ${JSON.stringify({ choices: [{ delta: { role: 'assistant' } }] })}${eol}${eol}`;
  for (const p of pieces) out += `data: ${chunk(p)}${eol}${eol}`;
  out += `data: ${JSON.stringify({ choices: [{ delta: {}, finish_reason: 'stop' }] })}${eol}${eol}`;
  if (done) out += `data: [DONE]${eol}${eol}`;
  return out;
}

function jsonError(status: number, message: string): Handler {
  return (_req, _body, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message, type: 'invalid_request_error' } }));
  };
}

const request: LlmRequest = {
  messageId: 'm1',
  kind: 'text',
  text: 'What time is it?',
  timeZone: 'Asia/Kolkata',
  now: new Date('2026-11-22T13:03:05.123Z'),
  history: [
    { author: 'client', text: 'Hi' },
    { author: 'bot', text: 'Hello! How can I help?' },
  ],
};

function llm(extra: Partial<ConstructorParameters<typeof OpenAiCompatibleLlm>[0]> = {}) {
  return new OpenAiCompatibleLlm({ baseUrl, apiKey: 'sk-test', model: 'test-model', timeoutMs: 2000, ...extra });
}

async function run(provider = llm(), signal = new AbortController().signal, req = request) {
  const deltas: string[] = [];
  const reply = await provider.generate(req, { signal, onDelta: (d) => deltas.push(d) });
  return { reply, deltas };
}

async function failure(p: Promise<unknown>): Promise<LlmError> {
  const err = await p.then(() => undefined, (e) => e);
  expect(err).toBeInstanceOf(LlmError);
  return err as LlmError;
}

describe('OpenAiCompatibleLlm against a fake server', () => {
  const pieces = ['It is ', '18:33', ' in Kolkata', ' — é日本 ', 'now.'];

  it('streams deltas in order and sends model, messages, stream and the bearer token', async () => {
    handler = streamRaw(sse(pieces), 5);
    const { reply, deltas } = await run();
    expect(deltas).toEqual(pieces);
    expect(reply).toEqual({ text: pieces.join(''), model: 'fake-model' });

    expect(seen).toHaveLength(1);
    const [{ headers, url, body }] = seen;
    expect(url).toBe('/v1/chat/completions'); // trailing slash of baseUrl handled
    expect(headers.authorization).toBe('Bearer sk-test');
    expect(headers['content-type']).toContain('application/json');
    expect(body.model).toBe('test-model');
    expect(body.stream).toBe(true);
    expect(body.messages.map((m: any) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(body.messages[0].content).toContain('18:33 (Asia/Kolkata, UTC+05:30)');
    expect(body.messages[0].content).toContain('2026-11-22T18:33:05.123+05:30');
    expect(body.messages[3].content).toBe('What time is it?');
  });

  it('parses CRLF streams split one byte at a time', async () => {
    handler = streamRaw(sse(pieces, { eol: '\r\n' }), 1, 0);
    const { reply, deltas } = await run();
    expect(deltas).toEqual(pieces);
    expect(reply.text).toBe(pieces.join(''));
  });

  it('describes media in words and omits Authorization without a key', async () => {
    handler = streamRaw(sse(['Nice voice message.']));
    await run(llm({ apiKey: undefined }), undefined, {
      ...request, kind: 'audio', text: undefined, history: [], media: { mimeType: 'audio/ogg', sizeBytes: 12345, durationMs: 4200 },
    });
    expect(seen[0].headers.authorization).toBeUndefined();
    expect(seen[0].body.messages.at(-1).content).toMatch(/voice message \(audio\/ogg, 12345 bytes, 4\.2 seconds long\)/);
  });

  it('sends a transcript as the user\'s text, and a video\'s keyframe as an image_url part', async () => {
    handler = streamRaw(sse(['It is evening there.']));
    await run(llm(), undefined, { ...request, kind: 'audio', text: undefined, history: [], media: { mimeType: 'audio/wav', sizeBytes: 999 }, transcript: 'what time is it in tokyo' });
    expect(seen[0].body.messages.at(-1)).toEqual({ role: 'user', content: 'what time is it in tokyo' });
    handler = streamRaw(sse(['A blue sky.']));
    const png = Buffer.from('89504e470d0a1a0a', 'hex');
    await run(llm(), undefined, { ...request, kind: 'video', text: undefined, history: [], media: { mimeType: 'video/mp4', sizeBytes: 999 }, transcript: 'look at this', image: { mimeType: 'image/png', data: png } });
    const content = seen[1].body.messages.at(-1).content;
    expect(content[0]).toEqual({ type: 'text', text: expect.stringMatching(/^look at this\n/) });
    expect(content[1]).toEqual({ type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } });
  });

  it('accepts a non-streamed JSON answer', async () => {
    handler = (_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ model: 'm2', choices: [{ message: { role: 'assistant', content: 'Whole reply.' } }] }));
    };
    const { reply, deltas } = await run();
    expect(reply).toEqual({ text: 'Whole reply.', model: 'm2' });
    expect(deltas).toEqual(['Whole reply.']);
  });

  it('maps 429 to RESOURCE_EXHAUSTED (retryable)', async () => {
    handler = jsonError(429, 'Rate limit reached');
    const err = await failure(run());
    expect(err).toMatchObject({ code: 'RESOURCE_EXHAUSTED', retryable: true });
    expect(err.message).toContain('Rate limit reached');
  });

  it('maps 500 and 503 to UNAVAILABLE (retryable)', async () => {
    handler = (_q, _b, res) => res.writeHead(500).end('boom');
    expect(await failure(run())).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    handler = jsonError(503, 'overloaded');
    expect(await failure(run())).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
  });

  it("maps 400 to INVALID_ARGUMENT with the server's message, 401 to INTERNAL, neither retryable", async () => {
    handler = jsonError(400, "This model's maximum context length is 4096 tokens");
    const bad = await failure(run());
    expect(bad).toMatchObject({ code: 'INVALID_ARGUMENT', retryable: false });
    expect(bad.message).toContain('maximum context length is 4096 tokens');
    handler = jsonError(401, 'Incorrect API key provided');
    const auth = await failure(run());
    expect(auth).toMatchObject({ code: 'INTERNAL', retryable: false });
    expect(auth.message).toContain('Incorrect API key');
  });

  it('maps connection refused to UNAVAILABLE (retryable)', async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await failure(run(llm({ baseUrl: `http://127.0.0.1:${port}/v1` })));
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('maps a server silent before headers to DEADLINE_EXCEEDED within the timeout', async () => {
    handler = () => {}; // never answers
    const started = Date.now();
    expect(await failure(run(llm({ timeoutMs: 300 })))).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('maps a stream that stalls mid-reply to DEADLINE_EXCEEDED within the timeout', async () => {
    handler = (_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${chunk('partial')}\n\n`); // then nothing
    };
    const deltas: string[] = [];
    const started = Date.now();
    const err = await failure(llm({ timeoutMs: 300 }).generate(request, { signal: new AbortController().signal, onDelta: (d) => deltas.push(d) }));
    expect(err.code).toBe('DEADLINE_EXCEEDED');
    expect(deltas).toEqual(['partial']);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("rejects with an AbortError (not an LlmError) when the caller aborts, promptly", async () => {
    handler = (_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${chunk('partial')}\n\n`);
    };
    const ac = new AbortController();
    const started = Date.now();
    const p = llm({ timeoutMs: 10_000 }).generate(request, { signal: ac.signal, onDelta: () => ac.abort() });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(llm().generate(request, { signal: AbortSignal.abort(), onDelta: () => {} })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it("maps the caller's own timeout signal to DEADLINE_EXCEEDED", async () => {
    handler = () => {};
    const err = await failure(llm({ timeoutMs: 10_000 }).generate(request, { signal: AbortSignal.timeout(200), onDelta: () => {} }));
    expect(err.code).toBe('DEADLINE_EXCEEDED');
  });

  it('maps a stream cut before any content to UNAVAILABLE, and keeps content of a stream without [DONE]', async () => {
    handler = (_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(': just a comment\n\n');
    };
    expect(await failure(run())).toMatchObject({ code: 'UNAVAILABLE', retryable: true });

    handler = streamRaw(sse(['Complete', ' enough.'], { done: false }));
    expect((await run()).reply.text).toBe('Complete enough.');
  });

  it('maps a connection reset mid-stream with no content to UNAVAILABLE', async () => {
    handler = (req, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': hi\n\n');
      setTimeout(() => req.socket.destroy(), 20);
    };
    expect(await failure(run())).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
  });

  it('maps empty content to INTERNAL and a mid-stream error event to UNAVAILABLE', async () => {
    handler = streamRaw(sse([]));
    expect(await failure(run())).toMatchObject({ code: 'INTERNAL', retryable: false });
    handler = streamRaw(`data: ${JSON.stringify({ error: { message: 'model crashed' } })}\n\n`);
    const err = await failure(run());
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toContain('model crashed');
  });
});

describe('SseParser', () => {
  it('joins multi-line data, ignores other fields, flushes at end', () => {
    const p = new SseParser();
    expect(p.push('event: x\ndata: a\r')).toEqual([]);
    // The trailing "\r" may start a "\r\n": the blank line is only known later.
    expect(p.push('\ndata:b\r\n\r')).toEqual([]);
    expect(p.push('\nid: 3\ndata: tail')).toEqual(['a\nb']);
    expect(p.push('', true)).toEqual(['tail']);
  });
});
