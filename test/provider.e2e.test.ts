import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Author, MessageStatus } from '../src/gen/chatflow/v1/history';
import { connected, metadataFor, startTestApp, unary, type TestApp } from './harness';

/** A local OpenAI-compatible server: streams words, or fails as told by the prompt. */
function fakeProvider(): Promise<{ server: Server; url: string; requests: unknown[] }> {
  const requests: unknown[] = [];
  let cut = false;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const parsed = JSON.parse(body);
      requests.push(parsed);
      const prompt: string = parsed.messages[parsed.messages.length - 1].content;
      if (prompt.includes('fail-hard')) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'prompt rejected by policy' } }));
        return;
      }
      if (prompt.includes('fail-soft')) {
        res.writeHead(503);
        res.end('overloaded');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // Tokens paced like a real model, so each one is its own delta.
      const words = ['The ', 'answer ', 'is ', '42.'];
      // 'cut-once': the first answer breaks off after two words (the connection drops), later ones are whole.
      const cutAfter = prompt.includes('cut-once') && !cut ? 2 : Infinity;
      if (cutAfter !== Infinity) cut = true;
      let sent = 0;
      const next = () => {
        if (sent++ === cutAfter) return res.destroy();
        const word = words.shift();
        if (word === undefined) return res.end('data: [DONE]\n\n');
        res.write(`data: ${JSON.stringify({ model: 'fake-1', choices: [{ delta: { content: word } }] })}\n\n`);
        setTimeout(next, 30);
      };
      next();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, requests })));
}

describe('OpenAI-compatible provider, end to end', () => {
  let t: TestApp;
  let fake: Awaited<ReturnType<typeof fakeProvider>>;
  beforeAll(async () => {
    fake = await fakeProvider();
    // Each token its own delta (CHATFLOW_DELTA_INTERVAL_MS 0; the default gathers those 30 ms apart).
    t = await startTestApp({ LLM_PROVIDER: 'openai', LLM_BASE_URL: fake.url, LLM_MODEL: 'fake-1', LLM_TIMEOUT_MS: '5000', CHATFLOW_DELTA_INTERVAL_MS: '0' });
  });
  afterAll(async () => {
    await t.close();
    fake.server.close();
  });

  it('streams the provider tokens as deltas and records the reply', async () => {
    const s = await connected(t, 'asker');
    const r = await s.reply(s.text('what is the answer?'));
    expect(r.text).toBe('The answer is 42.');
    expect(s.of('delta').map((d) => d.delta.textDelta)).toEqual(['The ', 'answer ', 'is ', '42.']);
    s.end();
  });

  it('never sends the opening words twice: a model that fails after streaming began is not retried behind the client\'s back', async () => {
    const s = await connected(t, 'cut-off');
    const cm = s.text('cut-once please');
    await s.until((f) => f.some((x) => (x.frame?.$case === 'response' || x.frame?.$case === 'error') && [x.frame.$case === 'response' ? x.frame.response.inReplyTo : x.frame.$case === 'error' ? x.frame.error.inReplyTo : ''].includes(s.messageIdOf(cm) ?? '-')), 20_000, 'an outcome');
    const streamed = s.of('delta').filter((d) => d.delta.inReplyTo === s.messageIdOf(cm)).map((d) => d.delta.textDelta).join('');
    expect(streamed).toBe('The answer ');
    expect(s.of('error').find((e) => e.error.inReplyTo === s.messageIdOf(cm))?.error).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/model could not answer/) });
    s.end();
  });

  it('turns a provider error into ProcessingFailed and a ChatError, never a hung message', async () => {
    const s = await connected(t, 'unlucky');
    const hard = s.text('fail-hard please');
    const soft = s.text('fail-soft please');
    await s.until((f) => f.filter((x) => x.frame?.$case === 'error').length === 2, 20_000, 'two errors');
    const errors = s.of('error').map((e) => e.error);
    const byId = (cm: string) => errors.find((e) => e.inReplyTo === s.messageIdOf(cm))!;
    expect(byId(hard)).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/prompt rejected by policy/) });
    expect(byId(soft)).toMatchObject({ code: 'UNAVAILABLE' });
    expect(byId(soft).seq).toBeGreaterThan(0);
    const md = await metadataFor(t, 'unlucky');
    const history = await unary(t.history.listMessages.bind(t.history), { conversationId: s.welcome()!.conversationId, pageSize: 0, pageToken: '', afterSeq: 0 }, md);
    const clientEntries = history.messages.filter((m) => m.author === Author.AUTHOR_CLIENT);
    expect(clientEntries.map((m) => m.status)).toEqual([MessageStatus.MESSAGE_STATUS_FAILED, MessageStatus.MESSAGE_STATUS_FAILED]);
    expect(history.messages.filter((m) => m.author === Author.AUTHOR_BOT && m.error)).toHaveLength(2);
    s.end();
  }, 30_000);
});
