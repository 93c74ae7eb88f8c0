import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { createClient } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-node';
import { ChatService } from '../gateway/web/gen/chatflow/v1/chat_pb';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { loadConfig } from '../src/config/config';
import { ConfigError } from '../src/config/schema';
import { loadServerTls, TlsConfigError } from '../src/tls';
import { ChatStream, connected, metadataFor, startTestApp, type TestApp } from './harness';
import { runCli } from './cli-runner';

// TLS on both listeners (CHATFLOW_TLS_CERT_FILE, CHATFLOW_TLS_KEY_FILE), with the test-only certificate of
// test/fixtures/tls (CN localhost, SAN localhost and 127.0.0.1).
jest.setTimeout(60_000);

const FIXTURES = join(__dirname, 'fixtures', 'tls');
const CERT = join(FIXTURES, 'server.crt');
const KEY = join(FIXTURES, 'server.key');
const ca = readFileSync(CERT);
const RENEWED_CERT = join(FIXTURES, 'renewed.crt');
const RENEWED_KEY = join(FIXTURES, 'renewed.key');

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is shown. */
function servedFingerprint(port: number, alpn: string): Promise<string> {
  return new Promise((res, rej) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
      res(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.on('error', rej);
  });
}

function fingerprintOf(file: string): string {
  return new X509Certificate(readFileSync(file)).fingerprint256;
}

/** Polls `read` until what it gives is `want` or passes `want` (or the time is up: then the last value, for the assertion to show). */
async function eventually<T>(read: () => Promise<T>, want: T | ((x: T) => boolean), timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  const done = typeof want === 'function' ? (want as (x: T) => boolean) : (x: T) => x === want;
  let last = await read();
  while (!done(last) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    last = await read();
  }
  return last;
}

/** GET over https trusting the test certificate: the status and body. */
function httpsGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    request(url, { ca }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
    }).on('error', rej).end();
  });
}

describe('a server on TLS', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_TLS_CERT_FILE: CERT, CHATFLOW_TLS_KEY_FILE: KEY, CHATFLOW_DEV_TOKENS: 'true' });
  });
  afterAll(async () => t?.close());

  test('native gRPC: a client that trusts the certificate chats as usual', async () => {
    const s = await connected(t, 'over-tls');
    const reply = await s.reply(s.text('hello over TLS'));
    expect(reply.text).toContain('hello over TLS');
    s.end();
    expect((await s.status).code).toBe(status.OK);
  });

  test('native gRPC in plain text, or trusting no such certificate: refused before any call reaches the server', async () => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${await t.app.auth.mint('plain')}`);
    md.set('x-timezone', 'UTC');
    for (const creds of [credentials.createInsecure(), credentials.createSsl()]) {
      const client = new ChatServiceClient(t.app.grpcAddress, creds);
      try {
        const call = client.chat(md);
        call.on('error', () => undefined);
        const s = await new Promise<{ code: number }>((r) => call.on('status', r));
        expect(s.code).toBe(status.UNAVAILABLE);
      } finally {
        client.close();
      }
    }
  });

  test('garbage instead of a TLS handshake, on either port, is dropped; the server goes on serving', async () => {
    const ports = [Number(t.app.grpcAddress.split(':').pop()), t.app.httpPort];
    for (const port of ports) {
      for (const bytes of [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), randomBytes(64 * 1024)]) {
        const closed = await new Promise<boolean>((res) => {
          const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
          const late = setTimeout(() => {
            socket.destroy();
            res(false);
          }, 5000);
          socket.on('error', () => undefined);
          socket.on('close', () => {
            clearTimeout(late);
            res(true);
          });
        });
        expect(closed).toBe(true);
      }
    }
    const s = await connected(t, 'after-garbage');
    expect((await s.reply(s.text('still here?'))).text).toContain('still here?');
    s.end();
  });

  test('HTTP: /healthz and the page on https (the base of media URLs too); plain http gets nothing', async () => {
    expect(t.app.httpUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await httpsGet(`${t.app.httpUrl}/healthz`);
    expect([health.status, JSON.parse(health.body).status]).toEqual([200, 'ok']);
    expect((await httpsGet(`${t.app.httpUrl}/`)).body).toContain('<html');
    await expect(fetch(t.app.httpUrl.replace('https:', 'http:') + '/healthz', { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
  });

  test('gRPC-Web over https: the embedded endpoint forwards to the server in this process', async () => {
    const transport = createGrpcWebTransport({ baseUrl: t.app.httpUrl, httpVersion: '1.1', nodeOptions: { ca } });
    const chat = createClient(ChatService, transport);
    const token = await t.app.auth.mint('web-over-tls');
    const abort = new AbortController();
    const frames = chat.connect({}, { headers: { authorization: `Bearer ${token}`, 'x-timezone': 'UTC' }, signal: abort.signal })[Symbol.asyncIterator]();
    const first = await frames.next();
    expect(first.value?.frame.case).toBe('welcome');
    const sessionId = first.value!.frame.value.sessionId as string;
    const ack = await chat.send({ sessionId, message: { clientMessageId: 'tls-1', content: { case: 'text', value: 'through the page' } } }, { headers: { authorization: `Bearer ${token}` } });
    expect(ack.clientMessageId).toBe('tls-1');
    let reply = '';
    for (let f = await frames.next(); !f.done; f = await frames.next()) {
      if (f.value.frame.case === 'response') {
        reply = f.value.frame.value.text;
        break;
      }
    }
    expect(reply).toContain('through the page');
    abort.abort();
  });

  test('the CLI: --ca trusts the certificate; without TLS it says the server did not answer in plain text', async () => {
    const run = (args: string[]) => runCli(args, { dataDir: t.dataDir, grpcAddress: t.app.grpcAddress });
    const ok = await run(['chat', '--client-id', 'cli-tls', '--tz', 'UTC', '--ca', CERT, '--send', 'hi from the terminal']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/bot: .*hi from the terminal/);
    const plain = await run(['chat', '--client-id', 'cli-plain', '--tz', 'UTC', '--send', 'hi', '--no-wait', '--reconnect-for', '0']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/^UNAVAILABLE: /);
    expect(plain.stderr).toMatch(/--tls/);
    const missing = await run(['chat', '--client-id', 'cli-tls', '--tz', 'UTC', '--ca', join(FIXTURES, 'nope.crt'), '--send', 'hi']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--ca .*nope\.crt: cannot read it \(ENOENT\)/);
  });
});

describe('a renewed certificate is served without a restart (CHATFLOW_TLS_RELOAD_MS)', () => {
  let t: TestApp;
  let dir: string;
  let certFile: string, keyFile: string;
  const renewals = async (outcome: string) => (await t.app.metrics.tlsRenewals.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  const served = async () => {
    const grpcPort = Number(t.app.grpcAddress.split(':').pop());
    return [await servedFingerprint(grpcPort, 'h2'), await servedFingerprint(t.app.httpPort, 'http/1.1')].join(' ');
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-tls-'));
    [certFile, keyFile] = [join(dir, 'server.crt'), join(dir, 'server.key')];
    await Promise.all([copyFile(CERT, certFile), copyFile(KEY, keyFile)]);
    t = await startTestApp({ CHATFLOW_TLS_CERT_FILE: certFile, CHATFLOW_TLS_KEY_FILE: keyFile, CHATFLOW_TLS_RELOAD_MS: '100' });
  });
  afterAll(async () => {
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('half a renewal is refused and the old certificate served; the whole of it is served to new connections on both listeners; open streams go on', async () => {
    const old = fingerprintOf(CERT), renewed = fingerprintOf(RENEWED_CERT);
    expect(await served()).toBe(`${old} ${old}`);
    expect(await t.app.metrics.tlsCertificateExpiry.get()).toMatchObject({ values: [{ value: Math.floor(new Date(new X509Certificate(ca).validTo).getTime() / 1000) }] });
    const before = await connected(t, 'open-across-renewal');

    // The new certificate beside the old key (a renewal caught half written): refused, the old pair still served.
    await copyFile(RENEWED_CERT, certFile);
    expect(await eventually(() => renewals('refused'), (n) => n >= 1)).toBeGreaterThanOrEqual(1);
    expect(await served()).toBe(`${old} ${old}`);
    const stillOld = await connected(t, 'during-half-renewal');
    expect((await stillOld.reply(stillOld.text('served the old one'))).text).toContain('served the old one');
    stillOld.end();

    // Its key too: new connections on both listeners get the renewed certificate.
    await copyFile(RENEWED_KEY, keyFile);
    expect(await eventually(served, `${renewed} ${renewed}`)).toBe(`${renewed} ${renewed}`);
    expect(await renewals('renewed')).toBe(1);
    expect(await t.app.metrics.tlsCertificateExpiry.get()).toMatchObject({ values: [{ value: Math.floor(new Date(new X509Certificate(readFileSync(RENEWED_CERT)).validTo).getTime() / 1000) }] });

    // The stream opened before keeps its connection and chats on.
    expect((await before.reply(before.text('still on the old handshake'))).text).toContain('still on the old handshake');
    before.end();
    // A client that trusts only the renewed certificate connects and chats.
    const client = new ChatServiceClient(t.app.grpcAddress, credentials.createSsl(readFileSync(RENEWED_CERT)));
    try {
      const s = new ChatStream(client.chat(await metadataFor(t, 'trusts-the-renewed')));
      expect((await s.reply(s.text('hello, renewed'))).text).toContain('hello, renewed');
      s.end();
    } finally {
      client.close();
    }
    // And https with it.
    const health = await new Promise<number>((res, rej) => request(`${t.app.httpUrl}/healthz`, { ca: readFileSync(RENEWED_CERT) }, (r) => res(r.statusCode ?? 0)).on('error', rej).end());
    expect(health).toBe(200);
  });

  test('files that are no certificate, or gone: refused, the certificate served stays, the server goes on', async () => {
    const renewed = fingerprintOf(RENEWED_CERT);
    const refusedBefore = await renewals('refused');
    await writeFile(certFile, 'not a certificate\n');
    const afterGarbage = await eventually(() => renewals('refused'), (n) => n > refusedBefore);
    expect(afterGarbage).toBeGreaterThan(refusedBefore);
    await rm(keyFile);
    expect(await eventually(() => renewals('refused'), (n) => n > afterGarbage)).toBeGreaterThan(afterGarbage);
    expect(await served()).toBe(`${renewed} ${renewed}`);
    // Put back: served again (the same pair as before, so no renewal is counted).
    await Promise.all([copyFile(RENEWED_CERT, certFile), copyFile(RENEWED_KEY, keyFile)]);
    const renewedBefore = await renewals('renewed');
    await new Promise((r) => setTimeout(r, 500));
    expect(await renewals('renewed')).toBe(renewedBefore);
    expect(await served()).toBe(`${renewed} ${renewed}`);
  });
});

describe('TLS settings that cannot work are refused at start, in words', () => {
  test('one of the two files without the other', () => {
    expect(() => loadConfig({ CHATFLOW_TLS_CERT_FILE: CERT })).toThrow(ConfigError);
    expect(() => loadConfig({ CHATFLOW_TLS_KEY_FILE: KEY })).toThrow(/set both \(TLS\) or neither/);
  });

  test('a missing file, a file that is not a certificate, a key of another certificate', async () => {
    await expect(loadServerTls({ certFile: join(FIXTURES, 'nope.crt'), keyFile: KEY })).rejects.toThrow(new TlsConfigError(`CHATFLOW_TLS_CERT_FILE=${join(FIXTURES, 'nope.crt')}: cannot read it (ENOENT)`));
    await expect(loadServerTls({ certFile: KEY, keyFile: KEY })).rejects.toThrow(/CHATFLOW_TLS_CERT_FILE=.*: not a PEM certificate/);
    await expect(loadServerTls({ certFile: CERT, keyFile: join(FIXTURES, 'other.key') })).rejects.toThrow(/CHATFLOW_TLS_KEY_FILE=.*other\.key: not the key of the certificate in CHATFLOW_TLS_CERT_FILE/);
    await expect(loadServerTls({ certFile: CERT, keyFile: CERT })).rejects.toThrow(/CHATFLOW_TLS_KEY_FILE=.*: not a PEM private key/);
    await expect(loadServerTls({ certFile: CERT, keyFile: KEY })).resolves.toMatchObject({ subject: 'CN=localhost', selfSigned: true });
  });

  test('the server refuses to start with them, before opening a listener', async () => {
    await expect(startTestApp({ CHATFLOW_TLS_CERT_FILE: CERT, CHATFLOW_TLS_KEY_FILE: join(FIXTURES, 'other.key') })).rejects.toThrow(TlsConfigError);
  });
});
