/**
 * What `npm start` prints when it cannot start: a taken port, HTTP or gRPC
 * alike, is one line that names the address and the variable to change.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { withoutEngines } from './engines';

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
