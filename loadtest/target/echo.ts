// Starts the echo baseline (loadtest/echo/server.ts) as its own process, like
// the server under test, so it gets a core of its own just as ChatFlow does.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { freePort, REPO, stopChild, type Child } from './process';

export interface RunningEcho {
  grpc: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startEcho(logDir: string, timeoutMs = 30_000): Promise<RunningEcho> {
  const addr = `127.0.0.1:${await freePort()}`;
  const proc = spawn(process.execPath, ['--require', 'tsx/cjs', join('loadtest', 'echo', 'server.ts'), addr], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(logDir, 'echo.log'), { flags: 'a' });
  proc.stderr!.pipe(log);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))));
  const child: Child = { name: 'echo', proc, exited };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo baseline not listening on ${addr} within ${timeoutMs} ms`)), timeoutMs);
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => {
      log.write(b);
      out += b.toString();
      if (out.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((c) => {
      clearTimeout(timer);
      reject(new Error(`echo baseline exited (code ${c}) before listening`));
    });
  }).catch(async (err) => {
    await stopChild(child, 2000);
    throw err;
  });
  return { grpc: addr, pid: proc.pid!, stop: () => stopChild(child, 5000) };
}
