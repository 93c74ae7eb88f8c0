import http2 from 'node:http2';
import { connect } from 'node:net';
import { codeName, longConversation, metadataFor, startTestApp, type TestApp } from './harness';
import { ListMessagesRequest } from '../src/gen/chatflow/v1/history';

/*
 * A peer that opens calls by the thousand on one HTTP/2 connection, each
 * sending part of its request and then nothing. grpc-js reads what a call
 * sends before its handler runs, and neither the connection bound (one
 * connection) nor the 64 KiB request limit stops it: seen by hand, 50,000
 * health checks without a token, 32 KB sent of each, took an embedded server
 * from 164 MB to 2.2 GB of RSS in 10 s, and 50,000 that sent no byte of their
 * message to 600 MB (~8.7 KB a call). None was ever ended.
 *
 * And two more floods inside one connection, each found the same way: a
 * reflection stream whose client sends requests and never reads the answers
 * (the library answered every one into memory), and an HTTP/1.1 connection
 * pipelining thousands of requests (Node parsed them all and held every
 * answer).
 */
jest.setTimeout(60_000);

/** What a call may wait for its request (CHATFLOW_SILENT_CONNECTION_MS). */
const SILENT_MS = 4_000;

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ CHATFLOW_SILENT_CONNECTION_MS: String(SILENT_MS) });
});
afterAll(async () => t.close());

const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const LIST_CONVERSATIONS = '/chatflow.v1.HistoryService/ListConversations';
const LIST_MESSAGES = '/chatflow.v1.HistoryService/ListMessages';

/** A client's metadata as plain HTTP/2 headers. */
const headersOf = async (clientId: string) => Object.fromEntries(Object.entries((await metadataFor(t, clientId)).getMap()).map(([k, v]) => [k, String(v)]));

/**
 * `n` calls to `path` on `session`, each sending `sent` bytes of a message framed as 1 KiB (and the request's end
 * when `end`: by default when that is the whole message), each resolving with the status the server answered (and its retry-after-ms) and
 * when, or 'no answer' after `ms`.
 */
function calls(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, n: number, sent: number, ms: number, end = sent === 1024): Promise<{ status: string; atMs: number }[]> {
  const started = Date.now();
  return Promise.all(
    Array.from({ length: n }, () => {
      const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
      req.on('error', () => undefined);
      req.resume();
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(1024, 1);
      // A message of zero bytes, repeated, is a valid request of both methods (every field default).
      req.write(Buffer.concat([prefix, Buffer.alloc(sent)]));
      if (end) req.end();
      return new Promise<{ status: string; atMs: number }>((resolve) => {
        const timer = setTimeout(() => resolve({ status: 'no answer', atMs: ms }), ms);
        const seen = (h: http2.IncomingHttpHeaders) => {
          const code = h['grpc-status'];
          if (code === undefined) return;
          clearTimeout(timer);
          const retry = h['retry-after-ms'];
          resolve({ status: codeName(Number(code)) + (retry === undefined ? '' : ' retry-after-ms'), atMs: Date.now() - started });
        };
        req.on('response', seen);
        req.on('trailers', seen);
      });
    }),
  );
}

function connectTo(): http2.ClientHttp2Session {
  const session = http2.connect(`http://${t.app.grpcAddress}`);
  session.on('error', () => undefined);
  return session;
}

const count = (rows: { status: string }[]) => rows.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }), {});

test('health checks without a token, 40 at once on one connection, none sending its request whole: 32 held, the rest refused RESOURCE_EXHAUSTED + retry-after-ms, the held ended DEADLINE_EXCEEDED after CHATFLOW_SILENT_CONNECTION_MS', async () => {
  const hostile = connectTo();
  const other = connectTo();
  try {
    const flood = calls(hostile, HEALTH_CHECK, {}, 40, 10, SILENT_MS + 3_000);
    // A token holder's history is not held back by the flood of calls without one.
    await new Promise((r) => setTimeout(r, 300));
    const [served] = await calls(other, LIST_CONVERSATIONS, await headersOf('bystander-1'), 1, 1024, 3_000);
    expect(served!.status).toBe('OK');
    const rows = await flood;
    expect(count(rows)).toEqual({ DEADLINE_EXCEEDED: 32, 'RESOURCE_EXHAUSTED retry-after-ms': 8 });
    for (const r of rows.filter((x) => x.status === 'DEADLINE_EXCEEDED')) expect(r.atMs).toBeGreaterThanOrEqual(SILENT_MS - 100);
    // Their places given back: a whole health check is answered at once.
    const [after] = await calls(hostile, HEALTH_CHECK, {}, 1, 1024, 3_000);
    expect(after!.status).toBe('OK');
  } finally {
    hostile.destroy();
    other.destroy();
  }
});

test('one token holder\'s history calls past 32 are refused; 1,024 held by 32 clients and the next client waits, then is refused; the places come back when their connection goes', async () => {
  const hostile = connectTo();
  const other = connectTo();
  try {
    const started = Date.now();
    const holders = await Promise.all(Array.from({ length: 32 }, (_, i) => headersOf(`holder-${i}`)));
    // The first sends 40 (8 past its 32), the others 32 each: the process's 1,024 places, all taken.
    const held = Promise.all(holders.map((h, i) => calls(hostile, LIST_CONVERSATIONS, h, i === 0 ? 40 : 32, 10, SILENT_MS + 3_000)));
    await new Promise((r) => setTimeout(r, 500));
    const [late] = await calls(other, LIST_CONVERSATIONS, await headersOf('late-1'), 1, 1024, 3_000);
    expect(late!.status).toBe('RESOURCE_EXHAUSTED retry-after-ms');
    hostile.destroy();
    // Their calls cancelled with their connection: a call is answered at once, well before their requests are late.
    await new Promise((r) => setTimeout(r, 300));
    const [after] = await calls(other, LIST_CONVERSATIONS, await headersOf('late-1'), 1, 1024, 3_000);
    expect(after!.status).toBe('OK');
    expect(Date.now() - started).toBeLessThan(SILENT_MS);
    const rows = await held;
    expect(count(rows[0]!)).toMatchObject({ 'RESOURCE_EXHAUSTED retry-after-ms': 8 });
  } finally {
    hostile.destroy();
    other.destroy();
  }
});

test('a token holder\'s history calls whose answers it never reads hold their places until the answers are taken: past 32, refused; the places come back when its connection goes', async () => {
  // A conversation whose page (5 texts of 64,000 bytes) is larger than a stream's flow-control window (64 KiB).
  const conversationId = await longConversation(t, 'hoarder', 5);
  const headers = await headersOf('hoarder');
  const message = Buffer.from(ListMessagesRequest.encode({ conversationId, pageSize: 0, pageToken: '', afterSeq: 0 }).finish());
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  const hoarder = connectTo();
  try {
    // 40 calls on one connection; the answers are never read (each stream paused: its window is never given back).
    const outcomes = Array.from({ length: 40 }, () => {
      const req = hoarder.request({ ':method': 'POST', ':path': LIST_MESSAGES, 'content-type': 'application/grpc', te: 'trailers', ...headers });
      req.on('error', () => undefined);
      req.pause();
      req.end(Buffer.concat([prefix, message]));
      return new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('no answer'), 4_000);
        req.on('response', (h) => {
          clearTimeout(timer);
          resolve(h['grpc-status'] === undefined ? 'answering' : codeName(Number(h['grpc-status'])));
        });
      });
    });
    // grpc-js ends a call (and the guard gives its place back) only once its answer is written, which flow control
    // holds back while the client reads nothing: so at most 32 unread answers per client (1,024 in all) wait in the
    // server's memory, each at most a page (PAGE_BYTES).
    expect(count((await Promise.all(outcomes)).map((status) => ({ status })))).toEqual({ answering: 32, RESOURCE_EXHAUSTED: 8 });
  } finally {
    hoarder.destroy();
  }
  await new Promise((r) => setTimeout(r, 200));
  const again = connectTo();
  try {
    const [after] = await calls(again, LIST_CONVERSATIONS, headers, 1, 1024, 3_000);
    expect(after!.status).toBe('OK');
  } finally {
    again.destroy();
  }
});

test('a history call that sends its whole message but never ends its request is ended DEADLINE_EXCEEDED after CHATFLOW_SILENT_CONNECTION_MS, its place given back', async () => {
  const session = connectTo();
  try {
    const [unended] = await calls(session, LIST_CONVERSATIONS, await headersOf('unended-1'), 1, 1024, SILENT_MS + 3_000, false);
    expect(unended!.status).toBe('DEADLINE_EXCEEDED');
    expect(unended!.atMs).toBeGreaterThanOrEqual(SILENT_MS - 100);
  } finally {
    session.destroy();
  }
});

test('a reflection stream whose client sends requests and never reads the answers is no longer read: the server holds a few answers, not one per request', async () => {
  // The client's own receive window stays small and unread: the server's answers wait for it.
  const session = http2.connect(`http://${t.app.grpcAddress}`, { settings: { initialWindowSize: 65_535 } });
  session.on('error', () => undefined);
  try {
    const req = session.request({ ':method': 'POST', ':path': '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => undefined);
    req.pause();
    // file_containing_symbol (field 4) naming 1 KiB of nothing: each answer echoes the request, ~1 KiB.
    const symbol = Buffer.alloc(1024, 'x');
    const message = Buffer.concat([Buffer.from([0x22, 0x80, 0x08]), symbol]);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    const frame = Buffer.concat([prefix, message]);
    const REQUESTS = 5_000; // ~5 MiB, five times the server's receive window for the stream (CHATFLOW_GRPC_WINDOW_BYTES)
    let taken = 0;
    for (let i = 0; i < REQUESTS; i++) req.write(frame, () => taken++);
    await new Promise((r) => setTimeout(r, 3_000));
    // Before: every request taken and answered into memory (5,000 of them, within a second). Now only what the
    // stream's window and the answers waiting for the client hold.
    expect(taken).toBeLessThan(2_000);
    req.close();
  } finally {
    session.destroy();
  }
});

test('one HTTP/1.1 connection pipelining 5,000 GET /metrics is closed once 16 wait for their answers; the server answers other clients meanwhile', async () => {
  // Before: every request parsed and answered, in order, each answer held until the one before was taken (50,000 of
  // them sent by a client that read nothing took an embedded server to 1.6 GB).
  const { hostname, port } = new URL(t.app.httpUrl);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined);
  let answers = 0;
  socket.on('data', (chunk: Buffer) => (answers += chunk.toString('latin1').split('HTTP/1.1 200').length - 1));
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const request = Buffer.from('GET /metrics HTTP/1.1\r\nHost: chatflow\r\n\r\n');
  socket.write(Buffer.concat(Array.from({ length: 5_000 }, () => request)));
  const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 3_000))]);
  expect(outcome).toBe('closed');
  expect(answers).toBeLessThanOrEqual(16);
  expect((await fetch(`${t.app.httpUrl}/healthz`)).status).toBe(200);
  socket.destroy();
});

/** Opens calls to `path` on `session` and resets each at once (RST_STREAM CANCEL), up to `n` or until the server closes the connection: how many went, and whether a GOAWAY came. */
async function rapidReset(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, n: number): Promise<{ sent: number; goaway: boolean }> {
  let goaway = false;
  let closed = false;
  session.on('goaway', () => (goaway = true));
  session.on('close', () => (closed = true));
  let sent = 0;
  while (sent < n && !closed && !goaway) {
    for (let i = 0; i < 100 && sent < n; i++, sent++) {
      try {
        const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
        req.on('error', () => undefined);
        req.close(http2.constants.NGHTTP2_CANCEL);
      } catch {
        closed = true; // the session went away under the loop
        break;
      }
    }
    await new Promise((r) => setImmediate(r));
  }
  return { sent, goaway };
}

test('HTTP/2 rapid reset (CVE-2023-44487): connections that open calls and reset them at once, with and without a token, are closed by the server long before 20,000 resets each; a bystander is served meanwhile', async () => {
  const other = connectTo();
  try {
    for (const [path, headers] of [[HEALTH_CHECK, {}], ['/chatflow.v1.ChatService/Chat', await headersOf('resetter')]] as const) {
      for (let round = 0; round < 3; round++) {
        const hostile = connectTo();
        const { sent, goaway } = await rapidReset(hostile, path, headers, 20_000);
        hostile.destroy();
        expect({ path, goaway, cutShort: sent < 20_000 }).toEqual({ path, goaway: true, cutShort: true });
      }
      const [served] = await calls(other, LIST_CONVERSATIONS, await headersOf('bystander-reset'), 1, 1024, 3_000);
      expect(served!.status).toBe('OK');
    }
    expect((await fetch(`${t.app.httpUrl}/healthz`)).status).toBe(200);
  } finally {
    other.destroy();
  }
});
