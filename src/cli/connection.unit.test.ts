import { Metadata, status } from '@grpc/grpc-js';
import { connectionFlags } from './args';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeStatus, mintLocalToken, unary } from './connection';

const where = { server: '127.0.0.1:50051', insecure: false, tls: false };
const unavailable = (details: string) => ({ code: status.UNAVAILABLE, details, metadata: new Metadata() });

describe('describeStatus: what the CLI says when it cannot reach the server', () => {
  test('nothing listening: is the server running? (not a TLS matter)', () => {
    const text = describeStatus(unavailable('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051. Resolution note: '), where);
    expect(text).toBe('UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051\nis the server running at 127.0.0.1:50051? (start it with "npm start", or pass --server)');
  });

  test('a server that dropped the plain text (one on TLS): also asks whether it speaks TLS, unless --tls was given', () => {
    const dropped = unavailable('No connection established. Last error: Failed to connect (2026-11-28T05:36:54.483Z)');
    expect(describeStatus(dropped, where)).toMatch(/\ndoes it speak TLS\? \(then pass --tls, or --ca <its certificate> if it is self-signed\)\n/);
    expect(describeStatus(dropped, { ...where, tls: true })).not.toMatch(/TLS/);
  });

  test('a connection closed as soon as it was accepted (the listeners full): says so too', () => {
    const dropped = unavailable('No connection established. Last error: Failed to connect (2026-11-28T21:14:04.520Z)');
    expect(describeStatus(dropped, where)).toMatch(/\nor it holds all the connections it takes \(CHATFLOW_MAX_CONNECTIONS\): then try again shortly$/);
    expect(describeStatus(dropped, { ...where, tls: true })).toMatch(/\nor it holds all the connections it takes/);
  });
});

describe('unary: a read the server refused for now is made again when it says', () => {
  const where = { server: '127.0.0.1:50051', insecure: false, tls: false };
  const refusal = (code: status, retryMs?: number) => {
    const metadata = new Metadata();
    if (retryMs !== undefined) metadata.set('retry-after-ms', String(retryMs));
    return Object.assign(new Error('refused'), { code, details: 'too many calls are open; call again in 20 ms', metadata });
  };
  /** Answers with `outcomes` in turn (an error, or 'ok'), counting the attempts. */
  const server = (outcomes: (ReturnType<typeof refusal> | 'ok')[]) => {
    let attempts = 0;
    const invoke = (cb: (err: never, res: string) => void) => {
      const o = outcomes[Math.min(attempts++, outcomes.length - 1)]!;
      setTimeout(() => (o === 'ok' ? cb(null as never, 'page') : cb(o as never, undefined as never)), 1);
    };
    return { invoke, attempts: () => attempts };
  };

  it('given RESOURCE_EXHAUSTED or UNAVAILABLE with retry-after-ms, then it waits that long and calls again', async () => {
    const s = server([refusal(status.RESOURCE_EXHAUSTED, 20), refusal(status.UNAVAILABLE, 20), 'ok']);
    const started = Date.now();
    await expect(unary(where, s.invoke)).resolves.toBe('page');
    expect(s.attempts()).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
  });

  it('given a refusal that names no wait, or one refused three times, then it fails with the server\'s words', async () => {
    const once = server([refusal(status.RESOURCE_EXHAUSTED)]);
    await expect(unary(where, once.invoke)).rejects.toThrow(/RESOURCE_EXHAUSTED: too many calls are open/);
    expect(once.attempts()).toBe(1);
    const always = server([refusal(status.RESOURCE_EXHAUSTED, 5)]);
    await expect(unary(where, always.invoke)).rejects.toThrow(/RESOURCE_EXHAUSTED: too many calls are open.*retry-after-ms 5/);
    expect(always.attempts()).toBe(3);
  });
});

describe('connectionFlags: the CLI reads the server address and the data dir as the server does', () => {
  it('given values with a carriage return or blanks around them (an env file saved on Windows), then they mean what was written; given them set but empty, then the defaults', () => {
    expect(connectionFlags({}, { CHATFLOW_DATA_DIR: './srv\r', CHATFLOW_GRPC_ADDR: ' 127.0.0.1:6000 ' })).toMatchObject({ dataDir: './srv', server: '127.0.0.1:6000' });
    expect(connectionFlags({}, { CHATFLOW_DATA_DIR: '', CHATFLOW_GRPC_ADDR: '' })).toMatchObject({ dataDir: './data', server: '127.0.0.1:50051' });
  });
});

describe('mintLocalToken: a token from the server\'s own secret', () => {
  it('given a secret file left empty (its creation cut short), then it says there is no secret, never signs with an empty key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-cli-secret-'));
    await writeFile(join(dir, 'secret'), '');
    await expect(mintLocalToken('alice', dir, 60)).rejects.toThrow(/no server secret in .*cf-cli-secret-.*or an empty one/);
  });
  it('given a secret file shorter than 32 characters, then it says so', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-cli-secret-'));
    await writeFile(join(dir, 'secret'), 'short\n');
    await expect(mintLocalToken('alice', dir, 60)).rejects.toThrow(/is 5 characters long; it must be at least 32/);
  });
});
