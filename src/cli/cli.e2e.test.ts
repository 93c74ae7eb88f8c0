import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { startApp, type App } from '../app';
import { ChatServiceClient } from '../gen/chatflow/v1/chat';
import { LlmError } from '../llm/port';
import { SimulatedLlm } from '../llm/simulated';
import { loadConfig } from '../config/config';
import { createLogger } from '../logging';
import { synthesizeVoice } from '../../test/voice-signal';
import { startTcpProxy } from '../../test/web-helpers';
import { runCli, type CliRun } from '../../test/cli-runner';

// The CLI as a user runs it: `node bin/chatflow.js ...` against the real server on ephemeral ports.
jest.setTimeout(60_000);

let app: App;
let dir: string;

type Run = CliRun;

function cli(args: string[], opts: Omit<Parameters<typeof runCli>[1], 'dataDir' | 'grpcAddress'> = {}): Promise<Run> {
  return runCli(args, { dataDir: dir, grpcAddress: app.grpcAddress, ...opts });
}

/** The simulated model, except that a text containing "#fail" fails as a model that is down would, and one containing "#slow" takes 1.5 s. */
function failingOnRequest() {
  const simulated = new SimulatedLlm({ delayScale: 0 });
  return { ...simulated, name: 'simulated', usesHistory: false, generate: (req: Parameters<SimulatedLlm['generate']>[0], o: Parameters<SimulatedLlm['generate']>[1]) =>
    req.text?.includes('#fail') ? Promise.reject(new LlmError('the model is down', 'UNAVAILABLE'))
    : req.text?.includes('#slow') ? new Promise<void>((r) => setTimeout(r, 1500)).then(() => simulated.generate(req, o))
    : simulated.generate(req, o) };
}

const jsonLines = (out: string) => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cf-cli-'));
  const env = { CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: dir, CHATFLOW_SIM_DELAY_SCALE: '0', LOG_LEVEL: 'silent', CHATFLOW_STT: 'none', CHATFLOW_TTS: 'none' };
  app = await startApp(loadConfig(env), createLogger('silent', { pretty: false }), { llm: failingOnRequest() });
});

afterAll(async () => {
  await app?.stop();
  await rm(dir, { recursive: true, force: true });
});

let conversationId = '';

test('token prints a JWT the server accepts', async () => {
  const r = await cli(['token', 'alice', '--ttl', '90m']);
  expect(r.code).toBe(0);
  const token = r.stdout.trim();
  expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  const who = await app.auth.identify((k) => (k === 'authorization' ? `Bearer ${token}` : undefined));
  expect(who).toBe('alice');

  const chat = await cli(['chat', '--token', token, '--tz', 'UTC', '--send', 'with a token', '--json']);
  expect(chat.code).toBe(0);
  expect(jsonLines(chat.stdout).some((f) => f.response)).toBe(true);
});

test('chat --send --json prints welcome, accepted and response frames, then exits 0', async () => {
  const r = await cli(['chat', '--client-id', 'alice', '--tz', 'Europe/Paris', '--send', 'hello', '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const frames = jsonLines(r.stdout);
  expect(frames[0]!.welcome).toMatchObject({ clientId: 'alice', timeZone: 'Europe/Paris' });
  conversationId = frames[0]!.welcome.conversationId;
  const accepted = frames.find((f) => f.accepted)!.accepted;
  const response = frames.find((f) => f.response)!.response;
  expect(response.inReplyTo).toBe(accepted.messageId);
  expect(response.text).toContain('hello');
  expect(frames.at(-1)).toEqual({ status: expect.objectContaining({ code: 0, name: 'OK' }) });
});

test('chat --file sends audio; without speech engines the reply says it cannot listen and no voice is saved', async () => {
  const wavPath = join(dir, 'question.wav');
  await writeFile(wavPath, synthesizeVoice('a question from the test').bytes);
  const saveDir = join(dir, 'downloads');
  const r = await cli(['chat', '--client-id', 'bob', '--tz', 'UTC', '--file', wavPath, '--save-dir', saveDir]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^\[1\] you: \[audio audio\/wav, [\d.]+ KiB\] \(seq \d+\)$/m);
  expect(r.stdout).toMatch(/^\[1\] bot: .*cannot listen to it: no speech recognizer is set up/m);
  expect(r.stdout).not.toMatch(/voice saved/);
});

test('chat --replaces-session takes over the client\'s earlier stream that the server still holds', async () => {
  const client = new ChatServiceClient(app.grpcAddress, credentials.createInsecure());
  try {
    const md = new Metadata();
    md.set('authorization', `Bearer ${await app.auth.mint('sleepy')}`);
    md.set('x-timezone', 'UTC');
    const held = client.chat(md);
    const ended = new Promise<{ code: number; details: string }>((r) => held.on('error', r));
    const welcome = await new Promise<{ sessionId: string }>((r) => held.once('data', (f: { frame?: { welcome?: { sessionId: string } } }) => r(f.frame!.welcome!)));
    const refused = await cli(['chat', '--client-id', 'sleepy', '--tz', 'UTC', '--send', 'hi', '--no-wait']);
    expect([refused.code, refused.stderr.split('\n')[0]]).toEqual([1, expect.stringMatching(/^ALREADY_EXISTS: /)]);
    const r = await cli(['chat', '--client-id', 'sleepy', '--tz', 'UTC', '--replaces-session', welcome.sessionId, '--send', 'back again', '--json']);
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout).find((f) => f.response)!.response.text).toContain('back again');
    expect(await ended).toMatchObject({ code: 6, details: 'this stream was replaced by a newer connection of sleepy that named it (x-replaces-session)' }); // ALREADY_EXISTS
  } finally {
    client.close();
  }
});

describe('a connection lost while chatting', () => {
  test('a scripted chat reconnects by itself, resumes after what it saw, and gets the reply produced meanwhile: exit 0', async () => {
    const proxy = await startTcpProxy(Number(app.grpcAddress.split(':').pop()));
    try {
      let cut = false;
      const r = await cli(['chat', '--client-id', 'wanderer', '--tz', 'UTC', '--send', 'into the tunnel #slow', '--json'], {
        env: { CHATFLOW_GRPC_ADDR: proxy.url.replace('http://', '') },
        onStdout: (out) => {
          // The network goes away once the message is accepted, before its reply (1.5 s), for 500 ms.
          if (!cut && /"accepted"/.test(out)) {
            cut = true;
            proxy.cut(500);
          }
        },
      });
      expect(cut).toBe(true);
      expect(r.code).toBe(0);
      const lines = jsonLines(r.stdout);
      const welcomes = lines.filter((l) => l.welcome).map((l) => l.welcome);
      expect(welcomes).toHaveLength(2);
      expect(welcomes[1].conversationId).toBe(welcomes[0].conversationId);
      const reconnecting = lines.find((l) => l.reconnecting)!.reconnecting;
      expect(reconnecting).toMatchObject({ name: 'UNAVAILABLE', attempt: 1 });
      const replies = lines.filter((l) => l.response).map((l) => l.response.text as string);
      expect(replies).toHaveLength(1);
      expect(replies[0]).toContain('into the tunnel');
    } finally {
      await proxy.close();
    }
  });

  test('--reconnect-for 0: the session ends at once, with how to pick up where it left off', async () => {
    const proxy = await startTcpProxy(Number(app.grpcAddress.split(':').pop()));
    try {
      let cut = false;
      const r = await cli(['chat', '--client-id', 'stayer', '--tz', 'UTC', '--send', 'one way #slow', '--reconnect-for', '0', '--json'], {
        env: { CHATFLOW_GRPC_ADDR: proxy.url.replace('http://', '') },
        onStdout: (out) => {
          if (!cut && /"accepted"/.test(out)) {
            cut = true;
            proxy.cut(500);
          }
        },
      });
      expect(r.code).toBe(1);
      const lines = jsonLines(r.stdout);
      expect(lines.filter((l) => l.reconnecting || l.response)).toEqual([]);
      expect(lines[lines.length - 1]!.status.name).toBe('UNAVAILABLE');
      expect(r.stderr).toMatch(/^UNAVAILABLE: /);
      expect(r.stderr).toMatch(/to pick up where you left off: --conversation \S+ --resume-after \d+ --replaces-session \S+/);
    } finally {
      await proxy.close();
    }
  });
});

test('history lists the conversations, then the messages of one', async () => {
  // A session that sends nothing leaves no conversation in the history.
  const silent = await cli(['chat', '--client-id', 'alice', '--tz', 'UTC', '--json'], { input: '/quit\n' });
  const silentId = jsonLines(silent.stdout)[0]!.welcome.conversationId as string;
  const list = await cli(['history', '--client-id', 'alice']);
  expect(list.code).toBe(0);
  expect(list.stdout).toMatch(new RegExp(`^${conversationId} {2}"hello", 2 messages, `, 'm'));
  expect(list.stdout).not.toContain(silentId);

  const messages = await cli(['history', '--client-id', 'alice', '--conversation', conversationId, '--page-size', '1', '--tz', 'UTC']);
  expect(messages.code).toBe(0);
  expect(messages.stdout).toMatch(/^#\d+ .* you: hello$/m);
  const asked = /^#(\d+) .* you: hello$/m.exec(messages.stdout)![1];
  expect(messages.stdout).toMatch(new RegExp(`^#\\d+ .* bot \\(reply to #${asked}\\): .*hello`, 'm'));

  const json = await cli(['history', '--client-id', 'alice', '--conversation', conversationId, '--after-seq', '0', '--json']);
  expect(jsonLines(json.stdout).map((m) => m.author)).toEqual(['AUTHOR_CLIENT', 'AUTHOR_BOT']);

  const other = await cli(['history', '--client-id', 'mallory', '--conversation', conversationId]);
  expect(other.code).toBe(1);
  expect(other.stderr).toMatch(/PERMISSION_DENIED|NOT_FOUND/);
});

test('an invalid --tz ends the stream with INVALID_ARGUMENT and a non-zero exit', async () => {
  const r = await cli(['chat', '--client-id', 'carol', '--tz', 'Mars/Olympus_Mons', '--send', 'hi']);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain('INVALID_ARGUMENT');
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
});

test('an interactive session reads lines from stdin until /quit', async () => {
  const r = await cli(['chat', '--client-id', 'dave', '--tz', 'UTC'], { input: 'hello interactive\n/ping\n/history\n/quit\n' });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^connected as dave: conversation /m);
  expect(r.stdout).toMatch(/^\[1\] you: "hello interactive" \(seq \d+\)$/m);
  expect(r.stdout).toMatch(/^pong: round trip \d+ ms/m);
  expect(r.stdout).toMatch(/you: hello interactive|no messages yet/); // /history may run before the projection catches up
  expect(r.stdout).toMatch(/^\[1\] bot: .*hello interactive/m);
  expect(r.stdout.trim().endsWith('disconnected')).toBe(true);
});

test('bad flags print one error line and the usage, exit code 2', async () => {
  const r = await cli(['chat', '--client-id', 'erin', '--colour', 'blue']);
  expect(r.code).toBe(2);
  const [first, second] = r.stderr.split('\n');
  expect(first).toBe('chatflow chat: unknown option --colour');
  expect(second).toMatch(/^Usage: chatflow chat /);

  const help = await cli(['--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/^Usage: chatflow <command>/);
});

describe('exit codes of scripted runs', () => {
  test('every message answered: 0; replies printed whole, one labelled block per message', async () => {
    const r = await cli(['chat', '--client-id', 'frank', '--tz', 'UTC', '--send', 'first', '--send', 'second', '--send', 'third']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const [n, text] of [[1, 'first'], [2, 'second'], [3, 'third']] as const) {
      expect(r.stdout).toMatch(new RegExp(`^\\[${n}\\] you: "${text}" \\(seq \\d+\\)\\n\\[${n}\\] bot: Hello! You wrote: "${text}" \\(1 word\\)\\. .+ For you it is .+\\.\\n    \\(seq \\d+, processed in \\d+ ms\\)$`, 'm'));
    }
  });

  test('an empty text (refused): 1, and the summary names it', async () => {
    const r = await cli(['chat', '--client-id', 'frank', '--tz', 'UTC', '--send', '']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\[1\] error INVALID_ARGUMENT: the text is empty$/m);
    expect(r.stderr).toBe('1 of 1 message not answered:\n  [1] (empty text): failed: INVALID_ARGUMENT: the text is empty\n');
  });

  test('a file that is not what its name says (refused): 1', async () => {
    const fake = join(dir, 'fake.wav');
    await writeFile(fake, 'this is not a WAV file at all');
    const r = await cli(['chat', '--client-id', 'frank', '--tz', 'UTC', '--file', fake]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^1 of 1 message not answered:\n  \[1\] \[audio audio\/wav, 29 bytes\]: failed: INVALID_ARGUMENT: /);
  });

  test('a file larger than the server takes: 1 at once, named with both sizes, nothing sent and the file not read', async () => {
    // Sent as it was, the transport refused it and the CLI reconnected and sent it again, for ever.
    const big = join(dir, 'big.wav');
    await writeFile(big, Buffer.alloc(0));
    await truncate(big, 30_000_000); // sparse: its size, not its bytes
    const started = Date.now();
    const r = await cli(['chat', '--client-id', 'frank', '--tz', 'UTC', '--send', 'before it', '--file', big]);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`chatflow chat: ${big} is 28.6 MiB, more than this server takes (8 MiB): nothing was sent\n`);
    expect(r.stdout).not.toMatch(/you:|reconnect/);
  });

  test('a model that is down (processing failed) for one of two messages: 1', async () => {
    const r = await cli(['chat', '--client-id', 'frank', '--tz', 'UTC', '--send', 'fine', '--send', 'please #fail']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\[1\] bot: Hello!/m);
    expect(r.stderr).toMatch(/^1 of 2 messages not answered:\n  \[2\] "please #fail": failed: UNAVAILABLE: .*the model is down/);
  });

  test('--help documents them', async () => {
    const r = await cli(['chat', '--help']);
    expect(r.stdout).toMatch(/Exit codes: 0 every message answered; 1 a message refused, failed or unanswered/);
  });
});

describe('identity', () => {
  test('without the server\'s data dir: no secret is created, and the error says what to do', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'cf-cli-nodata-'));
    try {
      const r = await cli(['chat', '--client-id', 'gina', '--tz', 'UTC', '--send', 'hi'], { env: { CHATFLOW_DATA_DIR: join(elsewhere, 'data') } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no server secret in .*cf-cli-nodata-.*\/data/);
      expect(r.stderr).toMatch(/--data-dir <the server's data dir>/);
      expect(r.stderr).toMatch(/--token <jwt>, made on the server's machine with: npm run client -- token gina/);
      expect(existsSync(join(elsewhere, 'data'))).toBe(false);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  test('a data dir with another secret: the refusal says the token came from the wrong secret', async () => {
    const other = await mkdtemp(join(tmpdir(), 'cf-cli-other-'));
    try {
      await writeFile(join(other, 'secret'), 'x'.repeat(40));
      const r = await cli(['chat', '--client-id', 'gina', '--tz', 'UTC', '--send', 'hi', '--data-dir', other]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/UNAUTHENTICATED: invalid token/);
      expect(r.stderr).toMatch(/the token was made here from .*cf-cli-other-.*\/secret, which is not the secret of the server/);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  test('--client-id alice with bob\'s token is refused before connecting', async () => {
    const r = await cli(['chat', '--client-id', 'alice', '--token', await app.auth.mint('bob'), '--send', 'hi']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('chatflow chat: --client-id alice does not match the token, which is for "bob" (the server knows you by the token): leave out --client-id, or use a token for alice');
  });
});

describe('server full', () => {
  let full: App;
  let fullDir: string;
  let holder: ChatServiceClient;
  const hold = async () => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${await full.auth.mint('holder')}`);
    md.set('x-timezone', 'UTC');
    const call = holder.chat(md);
    call.on('error', () => undefined);
    await new Promise<void>((r) => call.once('data', () => r()));
    return call;
  };
  beforeAll(async () => {
    fullDir = await mkdtemp(join(tmpdir(), 'cf-cli-full-'));
    const env = { CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: fullDir, CHATFLOW_SIM_DELAY_SCALE: '0', CHATFLOW_MAX_CLIENTS: '1', CHATFLOW_RETRY_AFTER_MS: '1000', CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '60000', LOG_LEVEL: 'silent' };
    full = await startApp(loadConfig(env), createLogger('silent', { pretty: false }));
    holder = new ChatServiceClient(full.grpcAddress, credentials.createInsecure());
  });
  afterAll(async () => {
    holder?.close();
    await full?.stop();
    await rm(fullDir, { recursive: true, force: true });
  });
  const env = () => ({ CHATFLOW_DATA_DIR: fullDir, CHATFLOW_GRPC_ADDR: full.grpcAddress });

  test('--no-wait: exits 1 at once with the server\'s words', async () => {
    const call = await hold();
    try {
      const r = await cli(['chat', '--client-id', 'hana', '--tz', 'UTC', '--send', 'hi', '--no-wait'], { env: env() });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^RESOURCE_EXHAUSTED: .*\(retry-after-ms 1000\)/);
    } finally {
      call.cancel();
    }
  });

  test('by default: counts down the server\'s retry-after-ms, retries, and gets in once a slot frees', async () => {
    const call = await hold();
    let released = false;
    const r = await cli(['chat', '--client-id', 'hana', '--tz', 'UTC', '--send', 'hi after waiting'], {
      env: env(),
      onStdout: (out) => {
        // Two refusals seen (so it really retried), then the slot frees.
        if (!released && (out.match(/server full/g) ?? []).length >= 2) {
          released = true;
          call.cancel();
        }
      },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^server full \(.+\) — retrying in 1 s \(Ctrl-C to stop; --no-wait gives up at once\)$/m);
    expect(r.stdout).toMatch(/^\[1\] bot: Hello! You wrote: "hi after waiting"/m);
  });

  test('Ctrl-C while waiting for a slot: stops at once, exit 130', async () => {
    const call = await hold();
    try {
      let interrupted = false;
      const r = await cli(['chat', '--client-id', 'hana', '--tz', 'UTC', '--send', 'never sent'], {
        env: env(),
        onStdout: (out, child) => {
          if (!interrupted && out.includes('server full')) {
            interrupted = true;
            child.kill('SIGINT');
          }
        },
      });
      expect(r.code).toBe(130);
      expect(r.stderr).toBe('stopped while waiting for a slot\n');
    } finally {
      call.cancel();
    }
  });
});
