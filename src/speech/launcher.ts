import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Runs programs (ffmpeg) from one small, long-lived helper process instead of
 * the server's own event loop. Starting a program forks the process that asks
 * for it, and forking the server — hundreds of MB of heap — blocked its event
 * loop for milliseconds each time: under the reference load `ChildProcess.spawn`
 * was 34 % of the event loop's CPU and every message waited behind it. The
 * helper is a bare Node process (tens of MB) that forks instead; the server
 * only exchanges a few small IPC messages with it. A worker thread that spawns
 * was measured too: it still forks the server's whole address space (page
 * tables copied, copy-on-write faults on the event loop afterwards).
 */

/** How a program ended, as the helper saw it (the fields of execFile's error). */
export interface Finished {
  stderr: string;
  /** Undefined when the program exited 0. */
  error?: { code?: string | number; killed: boolean; message: string };
}

export interface RunOptions {
  timeoutMs: number;
  maxBuffer: number;
  signal?: AbortSignal;
  /**
   * The program's memory bound: its soft data limit (RLIMIT_DATA: heap and private mappings; set by `sh`'s
   * `ulimit -S -d`, then the program exec'd in its place). Past it, the program's allocations fail.
   */
  maxDataBytes?: number;
}

/** The helper itself: plain JavaScript, so it runs the same from sources and from a build. */
const HELPER = `
const { execFile } = require('node:child_process');
const running = new Map();
// A data limit is set by sh, which then becomes the program (exec): its pid, its exit, its kill. sh says 127
// for a program it cannot find (POSIX), told as ENOENT like execFile's own.
const LIMITED = 'ulimit -S -d "$1" 2>/dev/null; shift; exec "$@"';
process.on('message', (m) => {
  if (m.kill !== undefined) return void running.get(m.kill)?.kill('SIGKILL');
  const [cmd, args] = m.maxDataKb ? ['/bin/sh', ['-c', LIMITED, 'sh', String(m.maxDataKb), m.cmd, ...m.args]] : [m.cmd, m.args];
  const child = execFile(cmd, args, { timeout: m.timeoutMs, maxBuffer: m.maxBuffer, encoding: 'utf8', killSignal: 'SIGKILL' }, (err, _out, stderr) => {
    running.delete(m.id);
    const code = m.maxDataKb && err && err.code === 127 ? 'ENOENT' : err && err.code;
    if (process.connected) process.send({ id: m.id, stderr: String(stderr), error: err ? { code, killed: !!err.killed, message: String(err.message) } : undefined });
  });
  running.set(m.id, child);
});
// The server went away (or closed us): take the programs with us.
process.on('disconnect', () => { for (const c of running.values()) c.kill('SIGKILL'); process.exit(0); });
`;

/** The helper died under a request (killed, out of memory): trying again starts a new one. */
export class LauncherExited extends Error {
  constructor(code: number | null, signal: NodeJS.Signals | null) {
    super(`the program launcher exited (${signal ?? `code ${code}`})`);
    this.name = 'LauncherExited';
  }
}

interface Pending {
  resolve(f: Finished): void;
  reject(err: unknown): void;
}

export class ProgramLauncher {
  private child?: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  /** Runs `cmd args` in the helper; resolves with its stderr and how it ended, rejects only when aborted or the helper died. */
  run(cmd: string, args: string[], opts: RunOptions): Promise<Finished> {
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const child = this.helper();
    const id = this.nextId++;
    return new Promise<Finished>((resolve, reject) => {
      const onAbort = () => {
        if (child.connected) child.send({ kill: id });
        this.settle(id);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = <T>(f: (v: T) => void) => (v: T) => {
        signal?.removeEventListener('abort', onAbort);
        f(v);
      };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject) });
      this.busy(true);
      child.send({ id, cmd, args, timeoutMs: opts.timeoutMs, maxBuffer: opts.maxBuffer, maxDataKb: opts.maxDataBytes && Math.ceil(opts.maxDataBytes / 1024) });
    });
  }

  /** Stops the helper (and whatever it runs); a later run starts a new one. */
  close(): void {
    const child = this.child;
    this.child = undefined;
    if (child?.connected) child.disconnect();
  }

  /** The helper's pid (for tests and logs); undefined before the first run. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private helper(): ChildProcess {
    if (this.child?.connected) return this.child;
    // No inherited NODE_OPTIONS (a loader or a profiler meant for the server) and a small heap: it only forks.
    const child = spawn(process.execPath, ['--max-old-space-size=32', '-e', HELPER], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    child.on('message', (m: { id: number } & Finished) => this.settle(m.id)?.resolve({ stderr: m.stderr, error: m.error }));
    child.on('error', () => {
      /* reported through 'exit' (or the spawn failing, which also ends in 'exit') */
    });
    child.once('exit', (code, sig) => {
      if (this.child === child) this.child = undefined;
      const err = new LauncherExited(code, sig);
      for (const id of [...this.pending.keys()]) this.settle(id)?.reject(err);
    });
    this.child = child;
    this.busy(false);
    return child;
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (this.pending.size === 0) this.busy(false);
    return p;
  }

  /** The helper keeps the server's process alive only while it runs something. */
  private busy(yes: boolean): void {
    const child = this.child;
    if (!child) return;
    if (yes) {
      child.ref();
      child.channel?.ref();
    } else {
      child.unref();
      child.channel?.unref();
    }
  }
}
