/**
 * What `npm start` prints when it cannot start: a taken port, HTTP or gRPC
 * alike, is one line that names the address and the variable to change.
 */
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { withoutEngines } from './engines';
import { ensureBuild } from './compiled';

jest.setTimeout(60_000);

const ROOT = resolve(__dirname, '..');
let dir: string;
let busy: Server;
let busyPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cf-startup-'));
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  busyPort = (busy.address() as import('node:net').AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((r) => busy.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

function start(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((res, rej) => {
    const proc = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
      cwd: ROOT,
      env: { ...withoutEngines(process.env), CHATFLOW_DATA_DIR: join(dir, String(Math.random())), LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    proc.stdout!.on('data', (d) => (output += d));
    proc.stderr!.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new Error(`still running after 30 s: ${output}`));
    }, 30_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      res({ code, output });
    });
  });
}

/** The fatal record of a failed start (JSON lines: stdout is not a terminal). */
const fatal = (output: string) => output.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; err?: unknown }).filter((r) => r.level >= 60);

test.each([
  ['gRPC', 'CHATFLOW_GRPC_ADDR', 'CHATFLOW_HTTP_ADDR'],
  ['HTTP', 'CHATFLOW_HTTP_ADDR', 'CHATFLOW_GRPC_ADDR'],
])('a taken %s port stops the start with one line naming the address and %s', async (_what, taken, free) => {
  const addr = `127.0.0.1:${busyPort}`;
  const r = await start({ [taken]: addr, [free]: '127.0.0.1:0' });
  expect(r.code).toBe(1);
  const records = fatal(r.output);
  expect(records).toHaveLength(1);
  expect(records[0]!.msg).toBe(`${addr} is already in use (${taken}): is another ChatFlow running? Stop it, or set ${taken} to another address`);
  expect(records[0]!.err).toBeUndefined(); // no stack trace
  expect(r.output).not.toMatch(/\n\s+at /);
});

/**
 * The server started as another user than the data dir's owner (a backup restored with sudo, then started by the
 * service's user): started here as root, it loads its code, then becomes `nobody` before it starts (the code's folder
 * need not be readable by nobody: a fresh clone's may not be), as main.ts would start it, from the build. `firstSteps`: only the
 * start's steps on the data dir (a whole start would load worker code as nobody), answering `ready` when they pass.
 */
function startAsNobody(dataDir: string, firstSteps = false): Promise<{ kind?: string; message: string }> {
  const script = `
    const { startApp } = require('./dist/src/app');
    const { openDataDir } = require('./dist/src/data-dir');
    const { loadOrCreateSecret } = require('./dist/src/auth/tokens');
    const { loadConfig } = require('./dist/src/config/config');
    const pino = require('pino');
    process.setgid(65534);
    process.setuid(65534);
    const config = loadConfig();
    const start = ${firstSteps}
      ? openDataDir(config.dataDir, true).then(() => loadOrCreateSecret(config.dataDir)).then(() => ({ stop: async () => {} }))
      : startApp(config, pino({ level: 'silent' }));
    start.then(
      (app) => app.stop().then(() => { process.stdout.write(JSON.stringify({ message: 'ready' })); }),
      (err) => { process.stdout.write(JSON.stringify({ kind: err.kind, message: err.message })); },
    );`;
  return new Promise((res, rej) => {
    // The build, not tsx: tsx loads parts of itself lazily, which nobody could not read from a fresh clone's folder.
    const proc = spawn(process.execPath, ['-e', script], {
      cwd: ROOT,
      env: { ...withoutEngines(process.env), CHATFLOW_DATA_DIR: dataDir, CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_STT: 'none', CHATFLOW_TTS: 'none' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (err += d));
    proc.on('exit', () => {
      try {
        res(JSON.parse(out) as { kind?: string; message: string });
      } catch {
        rej(new Error(`no answer: ${out}\n${err}`));
      }
    });
  });
}

const root = process.getuid?.() === 0;
(root ? test : test.skip)('a data dir this user may not use stops the start in words naming the folder, its owner and the user, before anything in it is touched', async () => {
  ensureBuild();
  // A data dir of root's, owner-only (as `sudo chatflow backup` makes it).
  const owned = join(dir, 'owned-by-root');
  await chmod(dir, 0o711); // the folders above it may be passed through
  await mkdir(join(owned, 'log'), { recursive: true, mode: 0o700 });
  await chmod(owned, 0o700);
  await writeFile(join(owned, 'secret'), 'x'.repeat(43), { mode: 0o600 });
  const r = await startAsNobody(owned);
  expect(r).toEqual({
    kind: 'FAILED_PRECONDITION',
    message: `cannot use the data dir ${owned}: ${owned} is not readable and writable by this user (it belongs to uid 0, mode 0700; ChatFlow runs as uid 65534). Run ChatFlow as the folder's owner, or give it the folder (chown -R <user> ${owned})`,
  });
  // The folder given to that user, not yet the secret in it: the secret is named.
  await chown(owned, 65534, 65534);
  const r2 = await startAsNobody(owned);
  expect(r2.message).toMatch(/^cannot use the data dir .*secret is not readable and writable by this user \(it belongs to uid 0, mode 0600/);
  // All of it given: the start's steps on the data dir pass, and it reads its secret.
  for (const p of ['secret', 'log']) await chown(join(owned, p), 65534, 65534);
  expect(await startAsNobody(owned, true)).toEqual({ message: 'ready' });
});
