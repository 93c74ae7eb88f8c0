// Starting ChatFlow processes as children, as `npm start` would, and stopping them.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const REPO = resolve(__dirname, '..', '..');

/** A free TCP port on 127.0.0.1 (bound then released; the child binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as import('node:net').AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

export interface ChildSpec {
  name: string;
  /** Checkout whose server runs (default: this one). */
  cwd?: string;
  env: Record<string, string>;
  logFile: string;
  /** `--cpu-prof` into this folder (the profile is written when the process exits). */
  profileDir?: string;
  /** Variables of the runner's environment the child must not inherit. */
  unset?: readonly string[];
}

export interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
  profileDir?: string;
}

/**
 * The V8 flags `npm start` gives the server (package.json): a young generation
 * big enough that a message's garbage dies young. With the default (16 MB
 * semi-spaces) the ~1,000 messages in flight at saturation outlived two
 * scavenges, were promoted and collected by full GCs (22 % of the event loop);
 * with 64 MB, paired runs: server CPU per message 478 -> 349 µs. And an old
 * generation that may double before V8 starts marking it: with V8's own
 * growing factor, a full GC every ~2 s at the reference load (55 in 2 min,
 * each pausing the loop 5-20 ms) and overhead p99 72-79 ms; with 100 %,
 * 2 and 30-34 ms (paired runs, README "Where the time goes").
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=64', '--heap-growing-percent=100'];

/**
 * The environment `npm start` gives the server (package.json): 16 threads in
 * libuv's pool instead of 4. The embedded log's O_DSYNC appends (what
 * `Accepted` waits for) and every media put's three fsyncs share that pool; on
 * a slow disk four media fsyncs in flight made an append wait behind them.
 * libuv reads it when the pool first starts, so it cannot be set from inside
 * the program (tsx starts the pool before src/main.ts runs).
 */
export const SERVER_ENV = { UV_THREADPOOL_SIZE: '16' };
/** The scenarios' servers run without speech engines or ffmpeg unless asked (see spawnServer). */
export const WITHOUT_ENGINES = { CHATFLOW_STT: 'none', CHATFLOW_TTS: 'none', CHATFLOW_FFMPEG: 'none' };

/**
 * How the server runs: `build` (default) is what `npm start` and the image run,
 * `node dist/src/main.js`, rebuilt first when older than its sources;
 * `sources` is `node --require tsx/cjs src/main.ts`, which measured ~2 % of the
 * event loop in tsx's per-closure `__name` calls alone (saturate profile).
 */
export type ServerRun = 'build' | 'sources';

export function serverRun(): ServerRun {
  const v = process.env.LOADTEST_SERVER_RUN ?? 'build';
  if (v !== 'build' && v !== 'sources') throw new Error(`LOADTEST_SERVER_RUN must be build or sources, not ${JSON.stringify(v)}`);
  return v;
}

const builds = new Map<string, Promise<void>>();

/** `npm start`'s own check (scripts/check-build.js): builds the checkout once if its build is missing or stale. */
export function ensureBuilt(cwd: string): Promise<void> {
  let b = builds.get(cwd);
  if (!b) {
    b = new Promise<void>((res, rej) =>
      execFile(process.execPath, ['scripts/check-build.js'], { cwd, maxBuffer: 16 << 20 }, (err, _out, stderr) =>
        err ? rej(new Error(`could not build the server in ${cwd}: ${stderr || err.message}`)) : res(),
      ),
    );
    builds.set(cwd, b);
  }
  return b;
}

/** The server (see ServerRun) with the given environment; output into a log file. */
export async function spawnChatFlow(spec: ChildSpec): Promise<Child> {
  // LOADTEST_SERVER_NODE_FLAGS: more node/V8 flags for the server, e.g. `--trace-gc` (each pause in its log).
  const extra = (process.env.LOADTEST_SERVER_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const run = serverRun();
  const cwd = spec.cwd ?? REPO;
  if (run === 'build') await ensureBuilt(cwd);
  const args = [...SERVER_NODE_FLAGS, ...extra, ...(run === 'sources' ? ['--require', 'tsx/cjs'] : [])];
  if (spec.profileDir) {
    // One folder per process: the profile keeps node's default name inside it.
    await mkdir(join(spec.profileDir, spec.name), { recursive: true });
    args.push('--cpu-prof', `--cpu-prof-dir=${join(spec.profileDir, spec.name)}`);
  }
  args.push(run === 'sources' ? 'src/main.ts' : 'dist/src/main.js');
  const log = createWriteStream(spec.logFile, { flags: 'a' });
  // The scenarios measure the server's own overhead at the reference mix (a third each of text, audio, video):
  // real speech engines cannot keep up with that on two cores (README "Speech and video"), so they are off
  // unless a scenario or the runner's shell turns them on. So is ffmpeg: the mix's videos are synthetic
  // containers with no picture to decode (payloads.ts), and each would start an ffmpeg (~80 ms of CPU) only to fail.
  const env: NodeJS.ProcessEnv = { ...WITHOUT_ENGINES, ...SERVER_ENV, ...process.env };
  for (const k of spec.unset ?? []) delete env[k];
  const proc = spawn(process.execPath, args, { cwd, env: { ...env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.pipe(log);
  proc.stderr!.pipe(log);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))));
  return { name: spec.name, proc, exited, profileDir: spec.profileDir };
}

/** Polls `<http>/healthz` until it answers 200; fails early if the child exits. */
export async function waitHealthy(child: Child, http: string, logFile: string, timeoutMs = 60_000): Promise<void> {
  let exitCode: number | null | undefined;
  void child.exited.then((c) => (exitCode = c));
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (exitCode !== undefined) throw new Error(`${child.name} exited (code ${exitCode}) before it was healthy:\n${await tail(logFile)}`);
    try {
      const r = await fetch(`${http}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${child.name} not healthy at ${http}/healthz within ${timeoutMs} ms:\n${await tail(logFile)}`);
}

/** SIGTERM (orderly shutdown), SIGKILL after `graceMs`. */
export async function stopChild(child: Child, graceMs = 20_000): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
}

/** The CPU profiles a child wrote (after it exited). */
export async function profilesOf(child: Child): Promise<string[]> {
  if (!child.profileDir) return [];
  const dir = join(child.profileDir, child.name);
  const files = await readdir(dir).catch(() => [] as string[]);
  return files.filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f));
}

async function tail(file: string, lines = 30): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}
