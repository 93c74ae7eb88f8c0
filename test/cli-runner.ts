import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..');

/** What a run of the command-line client gave: its exit code and everything it printed. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The CLI as a user runs it (`node bin/chatflow.js ...`, from the build) against the server at `grpcAddress`,
 * with its state in `dataDir`: `input` on its stdin, killed (and the promise rejected) after `timeoutMs`.
 */
export function runCli(
  args: string[],
  opts: { dataDir: string; grpcAddress: string; input?: string; timeoutMs?: number; env?: Record<string, string>; onStdout?: (text: string, child: ChildProcess) => void },
): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, CHATFLOW_DATA_DIR: opts.dataDir, CHATFLOW_GRPC_ADDR: opts.grpcAddress, ...opts.env };
  delete env.CHATFLOW_AUTH_SECRET;
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'chatflow.js'), ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      opts.onStdout?.(stdout, child);
    });
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
