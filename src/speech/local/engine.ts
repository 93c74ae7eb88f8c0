import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MAX_FFMPEG_DATA_BYTES, SpeechError } from '../port';
import { PROJECT_ROOT } from '../project-root';

export type EngineKind = 'tts' | 'stt';

/** What the engine's callers get once ChatFlow stopped it (LocalSpeechEngine.close). */
export class SpeechEngineShutDown extends SpeechError {
  constructor() {
    super('the speech engine is shut down', false);
  }
}

/** How long loading the engine may take (Piper: ~5 s on this machine, more under load). */
const START_TIMEOUT_MS = 120_000;

/**
 * One offline speech engine as a long-lived child process (speech_server.py:
 * Piper or PocketSphinx behind the OpenAI-compatible API on 127.0.0.1).
 * Loading Piper takes seconds and a request a fraction of one, so the process
 * is started once and reused; one that dies is started again on next use. The
 * engines are GPL or BSD programs run beside ChatFlow, never linked into it.
 */
export class LocalSpeechEngine {
  private child?: ChildProcess;
  private starting?: Promise<string>;
  private closed = false;

  constructor(
    private readonly python: string,
    readonly kind: EngineKind,
    private readonly logger: Logger,
    private readonly opts: { maxSeconds?: number } = {},
  ) {}

  /** The engine's base URL (`http://127.0.0.1:PORT/v1`), starting it if it is not running. */
  url(): Promise<string> {
    if (this.closed) return Promise.reject(new SpeechEngineShutDown());
    this.starting ??= this.start().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private start(): Promise<string> {
    const script = join(PROJECT_ROOT, 'src', 'speech', 'local', 'speech_server.py'); // the same from the sources and a build
    const started = Date.now();
    // stdin stays open and unused: the engine exits when it closes, so a ChatFlow killed with SIGKILL leaves no engine behind.
    // Its own process group: a Ctrl-C at ChatFlow's terminal (SIGINT to the whole group) must not kill the
    // engine under the replies being drained; ChatFlow stops it last, and it exits when its stdin closes.
    const args = [script, '--engine', this.kind, '--exit-with-stdin', '--ffmpeg-data-bytes', String(MAX_FFMPEG_DATA_BYTES), ...(this.opts.maxSeconds ? ['--max-seconds', String(this.opts.maxSeconds)] : [])];
    const child = spawn(this.python, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, PYTHONUNBUFFERED: '1' } });
    this.child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new SpeechError(`the ${this.kind} engine did not start within ${START_TIMEOUT_MS / 1000} s`, true));
      }, START_TIMEOUT_MS);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = /^LISTENING (\d+) (\S+)/.exec(line);
        if (!m) return;
        clearTimeout(timer);
        this.logger.info({ engine: m[2], pid: child.pid, ms: Date.now() - started }, 'speech engine started');
        resolve(`http://127.0.0.1:${m[1]}/v1`);
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new SpeechError(`the ${this.kind} engine could not be started: ${err.message}`, false));
      });
      child.on('exit', (code, sig) => {
        clearTimeout(timer);
        if (this.child === child) {
          this.child = undefined;
          this.starting = undefined;
        }
        // Stopped by close (ChatFlow shutting down, maybe before it ever served): not a failure to tell.
        if (this.closed) return reject(new SpeechEngineShutDown());
        reject(new SpeechError(`the ${this.kind} engine exited (${sig ?? code}): ${stderr.trim().split('\n').pop() ?? ''}`, true));
        this.logger.warn({ kind: this.kind, code, signal: sig, stderr: stderr.slice(-500) }, 'speech engine exited; it is started again on next use');
      });
    });
  }

  /** The child's pid while it runs (tests kill it to check the restart). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  async close(): Promise<void> {
    this.closed = true;
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    });
  }
}
