import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connected, metric, startTestApp, type TestApp } from './harness';

/*
 * A peer that opens TCP connections by the hundred and sends nothing, or
 * only a protocol's first bytes, on them. Neither listener closed such a
 * connection before, nor bounded how many it held: enough of them fill the
 * process's open-file table, after which no client can connect and no
 * upload or log segment can be opened (seen by hand: 20,000 sockets on the
 * HTTP port and the CLI was refused, /healthz unanswered).
 */
jest.setTimeout(60_000);

const MAX = 40;
const SILENT_MS = 1000;
/** What an HTTP/2 client sends first: a connection that sent it is not silent. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

let t: TestApp;
const opened: Socket[] = [];
beforeAll(async () => {
  t = await startTestApp({ CHATFLOW_MAX_CONNECTIONS: String(MAX), CHATFLOW_SILENT_CONNECTION_MS: String(SILENT_MS) });
});
afterEach(() => {
  for (const s of opened.splice(0)) s.destroy();
});
afterAll(async () => t.close());

const grpcPort = () => Number(t.app.grpcAddress.split(':').pop());

/** `n` connections to `port`, each sending `first` (if any) once connected; each knows when the server closed it. */
async function flood(port: number, n: number, first?: Buffer): Promise<{ closedWithin: Promise<number>[] }> {
  const closedWithin: Promise<number>[] = [];
  await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<void>((ready) => {
        const socket = connect(port, '127.0.0.1');
        opened.push(socket);
        const started = Date.now();
        closedWithin.push(new Promise((r) => socket.once('close', () => r(Date.now() - started))));
        socket.on('error', () => undefined);
        socket.resume(); // what the server sends is read, so its close is seen
        socket.once('connect', () => {
          if (first) socket.write(first);
          ready();
        });
        socket.once('close', () => ready());
      }),
    ),
  );
  return { closedWithin };
}

const within = (ms: number, p: Promise<number>) => Promise.race([p, new Promise<number>((r) => setTimeout(() => r(Infinity), ms))]);

test('connections that send nothing are closed after CHATFLOW_SILENT_CONNECTION_MS, on both listeners; a client chatting meanwhile is not', async () => {
  const chatting = await connected(t, 'flood-bystander-1');
  const before = { grpc: await metric(t, 'chatflow_connections_silent_total{listener="grpc"}'), http: await metric(t, 'chatflow_connections_silent_total{listener="http"}') };
  const onGrpc = await flood(grpcPort(), 15);
  const onHttp = await flood(t.app.httpPort, 15);
  const times = await Promise.all([...onGrpc.closedWithin, ...onHttp.closedWithin].map((p) => within(SILENT_MS + 5000, p)));
  expect(Math.max(...times)).toBeLessThan(SILENT_MS + 5000);
  expect(Math.min(...times)).toBeGreaterThanOrEqual(SILENT_MS - 100);
  expect(await metric(t, 'chatflow_connections_silent_total{listener="grpc"}')).toBe((Number.isNaN(before.grpc) ? 0 : before.grpc) + 15);
  expect(await metric(t, 'chatflow_connections_silent_total{listener="http"}')).toBe((Number.isNaN(before.http) ? 0 : before.http) + 15);
  // Open well past the silence, speaking: never closed for it.
  expect((await chatting.reply(chatting.text('still here?'))).text).toContain('still here?');
  chatting.end();
});

test('past CHATFLOW_MAX_CONNECTIONS a listener closes new connections at once; clients connected before chat on, and once the flood ends new ones connect', async () => {
  const chatting = await connected(t, 'flood-bystander-2');
  const count = async (name: string) => ((n) => (Number.isNaN(n) ? 0 : n))(await metric(t, name));
  const droppedBefore = { grpc: await count('chatflow_connections_dropped_total{listener="grpc"}'), http: await count('chatflow_connections_dropped_total{listener="http"}') };
  const quickly = async (f: { closedWithin: Promise<number>[] }) => (await Promise.all(f.closedWithin.map((p) => within(500, p)))).filter((ms) => ms < 500).length;
  // Each sends its protocol's opening, so none is closed as silent while the test looks. The listener holds at
  // most MAX (the embedded gRPC-Web endpoint's and the bystander's own among them): the rest go at once.
  const grpcFlood = await flood(grpcPort(), MAX + 30, PREFACE);
  expect(await quickly(grpcFlood)).toBeGreaterThanOrEqual(30);
  expect(await count('chatflow_connections_dropped_total{listener="grpc"}')).toBeGreaterThanOrEqual(droppedBefore.grpc + 30);
  expect(await count('chatflow_connections_open{listener="grpc"}')).toBeLessThanOrEqual(MAX);
  expect((await chatting.reply(chatting.text('during the flood'))).text).toContain('during the flood');

  const httpFlood = await flood(t.app.httpPort, MAX + 30, Buffer.from('GET /healthz HTTP/1.1\r\n'));
  expect(await quickly(httpFlood)).toBeGreaterThanOrEqual(30);
  for (const s of opened.splice(0)) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  expect(await count('chatflow_connections_dropped_total{listener="http"}')).toBeGreaterThanOrEqual(droppedBefore.http + 30);
  const late = await connected(t, 'flood-latecomer');
  expect((await late.reply(late.text('after the flood'))).text).toContain('after the flood');
  expect((await fetch(`${t.app.httpUrl}/healthz`)).status).toBe(200);
  chatting.end();
  late.end();
});

describe('connections with no call open', () => {
  const IDLE_MS = 1000;
  let quick: TestApp;
  beforeAll(async () => {
    quick = await startTestApp({ CHATFLOW_GRPC_MAX_IDLE_MS: String(IDLE_MS) });
  });
  afterAll(async () => quick.close());

  test('a gRPC connection left with no call open (a channel a client opened and forgot) is closed after CHATFLOW_GRPC_MAX_IDLE_MS; one with a stream open is not', async () => {
    // A real HTTP/2 client: it answers the server's pings, so only the idle bound can close it.
    const forgotten = http2.connect(`http://${quick.app.grpcAddress}`);
    forgotten.on('error', () => undefined);
    const opened = Date.now();
    const goneAfter = new Promise<number>((r) => forgotten.once('goaway', () => r(Date.now() - opened)).once('close', () => r(Date.now() - opened)));
    const chatting = await connected(quick, 'idle-bystander');
    await new Promise((r) => setTimeout(r, 2.5 * IDLE_MS));
    await chatting.reply(chatting.text('still here after the idle bound'));
    chatting.end();
    const after = await within(IDLE_MS + 4000, goneAfter);
    forgotten.destroy();
    expect(after).toBeGreaterThanOrEqual(IDLE_MS - 100);
    expect(after).toBeLessThan(IDLE_MS + 4000);
  });
});

describe('on TLS', () => {
  let secure: TestApp;
  beforeAll(async () => {
    const dir = join(__dirname, 'fixtures', 'tls');
    secure = await startTestApp({ CHATFLOW_TLS_CERT_FILE: join(dir, 'server.crt'), CHATFLOW_TLS_KEY_FILE: join(dir, 'server.key'), CHATFLOW_SILENT_CONNECTION_MS: String(SILENT_MS) });
  });
  afterAll(async () => secure.close());

  test('a handshake begun and left half done is closed after CHATFLOW_SILENT_CONNECTION_MS on both listeners (Node kept it 120 s)', async () => {
    // A TLS record header announcing 512 bytes of ClientHello, then 40 of them: more than the HTTP/2 preface, never a handshake.
    const begun = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), Buffer.alloc(40, 1)]);
    const floods = [await flood(Number(secure.app.grpcAddress.split(':').pop()), 5, begun), await flood(secure.app.httpPort, 5, begun)];
    const times = await Promise.all(floods.flatMap((f) => f.closedWithin).map((p) => within(SILENT_MS + 5000, p)));
    expect(Math.max(...times)).toBeLessThan(SILENT_MS + 5000);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(SILENT_MS - 100);
  });
});
