import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startApp, type App } from '../app';
import { loadConfig } from '../config/config';
import { createLogger } from '../logging';
import { synthesizeVoice } from '../media/wav';

// The CLI as a user runs it: `node bin/chatflow.js ...` against the real server on ephemeral ports.
jest.setTimeout(60_000);

const ROOT = resolve(__dirname, '..', '..');
let app: App;
let dir: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, CHATFLOW_DATA_DIR: dir, CHATFLOW_GRPC_ADDR: app.grpcAddress };
  delete env.CHATFLOW_AUTH_SECRET;
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'chatflow.js'), ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`chatflow ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

const jsonLines = (out: string) => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cf-cli-'));
  const env = { CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: dir, CHATFLOW_SIM_DELAY_SCALE: '0', LOG_LEVEL: 'silent', CHATFLOW_STT: 'none', CHATFLOW_TTS: 'none' };
  app = await startApp(loadConfig(env), createLogger('silent', { pretty: false }));
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
  expect(r.stdout).toMatch(/accepted \(seq \d+\)/);
  expect(r.stdout).toMatch(/^bot: .*cannot listen to it: no speech recognizer is set up/m);
  expect(r.stdout).not.toMatch(/voice saved/);
});

test('history lists the conversations, then the messages of one', async () => {
  const list = await cli(['history', '--client-id', 'alice']);
  expect(list.code).toBe(0);
  expect(list.stdout).toContain(conversationId);

  const messages = await cli(['history', '--client-id', 'alice', '--conversation', conversationId, '--page-size', '1', '--tz', 'UTC']);
  expect(messages.code).toBe(0);
  expect(messages.stdout).toMatch(/^#\d+ .* you: hello$/m);
  expect(messages.stdout).toMatch(/^#\d+ .* bot: .*hello/m);

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
  expect(r.stdout).toMatch(/accepted \(seq \d+\)/);
  expect(r.stdout).toMatch(/^pong: round trip \d+ ms/m);
  expect(r.stdout).toMatch(/you: hello interactive|no messages yet/); // /history may run before the projection catches up
  expect(r.stdout).toMatch(/^bot: .*hello interactive/m);
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
