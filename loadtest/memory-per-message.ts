// Server heap retained per answered message, embedded default (issue 15).
//
//   npx tsx loadtest/memory-per-message.ts [--messages 20000] [--clients 50] [--window 8]
//                                           [--snapshot-dir DIR] [--server-dir DIR] [--out FILE.md]
//
// Starts the server as `npm start` runs it (role all, embedded log with fsync,
// in-memory read models and reply claims), plus `--expose-gc` and a preload
// (loadtest/memory/probe.cjs) that answers heap requests over IPC. Real gRPC
// clients (one stream each) send text messages, a window outstanding each,
// and wait for every reply. The heap is read after full GCs:
//   base      after a warm-up of `--warmup` messages (code, caches, pools filled)
//   loaded    after N more messages, replies received, projections caught up, clients still connected
//   closed    after the clients have disconnected
//   rebuilt   a fresh process on the same data dir (the read models rebuilt from the log)
//   empty     a fresh process on an empty data dir (what "rebuilt" is compared with)
// Bytes per message = (loaded − base) / N, and (rebuilt − empty) / (N + warm-up).
// With --snapshot-dir, heap snapshots at base and loaded are written and
// summarized (loadtest/memory/heap-summary.ts): growth by constructor and the
// objects that retain the most.
import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ServerFrame } from '../src/gen/chatflow/v1/chat';
import { Channels, openChat, type ChatCall } from './engine/connect';
import { summarizeGrowth } from './memory/heap-summary';
import { sentence } from './payloads';
import { ENGINE_VARS } from './target/embedded';
import { freePort, REPO, SERVER_ENV, SERVER_NODE_FLAGS, WITHOUT_ENGINES } from './target/process';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '1000' },
    clients: { type: 'string', default: '50' },
    window: { type: 'string', default: '8' },
    'snapshot-dir': { type: 'string' },
    'server-dir': { type: 'string', default: REPO },
    out: { type: 'string' },
    fsync: { type: 'string', default: 'true' },
  },
});
const N = Number(args.messages);
const WARMUP = Number(args.warmup);
const CLIENTS = Number(args.clients);
const WINDOW = Number(args.window);
const SERVER_DIR = resolve(args['server-dir']!);

interface Heap { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; rss: number }

class Server {
  private seq = 0;
  private readonly waiting = new Map<number, (m: Record<string, unknown>) => void>();
  private constructor(readonly proc: ChildProcess, readonly grpc: string, readonly http: string) {
    proc.on('message', (m: Record<string, unknown>) => {
      const w = this.waiting.get(m.id as number);
      this.waiting.delete(m.id as number);
      w?.(m);
    });
  }

  static async start(dataDir: string, logFile: string): Promise<Server> {
    const [gp, hp] = [await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = { ...WITHOUT_ENGINES, ...SERVER_ENV, ...process.env };
    for (const k of ENGINE_VARS) delete env[k];
    Object.assign(env, {
      CHATFLOW_ROLE: 'all',
      CHATFLOW_GRPC_ADDR: `127.0.0.1:${gp}`,
      CHATFLOW_HTTP_ADDR: `127.0.0.1:${hp}`,
      CHATFLOW_DATA_DIR: dataDir,
      CHATFLOW_INSECURE_CLIENT_ID: 'true',
      CHATFLOW_SIM_DELAY_SCALE: '0',
      CHATFLOW_LOG_FSYNC: args.fsync,
      LOG_LEVEL: 'warn',
    });
    const proc = fork(join(SERVER_DIR, 'src/main.ts'), [], {
      cwd: SERVER_DIR,
      env,
      execArgv: [...SERVER_NODE_FLAGS, '--expose-gc', '--require', 'tsx/cjs', '--require', join(REPO, 'loadtest/memory/probe.cjs')],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const log = createWriteStream(logFile, { flags: 'a' });
    proc.stdout!.pipe(log);
    proc.stderr!.pipe(log);
    const s = new Server(proc, `127.0.0.1:${gp}`, `http://127.0.0.1:${hp}`);
    const end = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`server exited (${proc.exitCode}); see ${logFile}`);
      const ok = await fetch(`${s.http}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > end) throw new Error(`server not healthy; see ${logFile}`);
      await sleep(150);
    }
    await s.caughtUp();
    return s;
  }

  private ask(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = ++this.seq;
    return new Promise((res) => {
      this.waiting.set(id, res);
      this.proc.send({ ...msg, id });
    });
  }

  async heap(): Promise<Heap> {
    return (await this.ask({ type: 'measure' })) as unknown as Heap;
  }

  /** CPU time the server process has used (user + system, µs). */
  async cpu(): Promise<number> {
    return (await this.ask({ type: 'cpu' })).micros as number;
  }

  async snapshot(file: string): Promise<string> {
    return (await this.ask({ type: 'snapshot', file })).file as string;
  }

  async metric(name: string): Promise<number> {
    const body = await (await fetch(`${this.http}/metrics`)).text();
    const line = body.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').pop()) : NaN;
  }

  /** Until the projector has applied every event in the log (twice in a row). */
  async caughtUp(): Promise<void> {
    let zeros = 0;
    while (zeros < 2) {
      zeros = (await this.metric('chatflow_projection_lag_events')) === 0 ? zeros + 1 : 0;
      await sleep(200);
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Clients, one stream each, sending `total` text messages between them with `WINDOW` outstanding per client. */
async function drive(server: Server, prefix: string, total: number, streams?: ChatCall[]): Promise<{ calls: ChatCall[]; answered: number; errors: Record<string, number> }> {
  const channels = new Channels([server.grpc], 4);
  const calls = streams ?? [];
  if (!streams) {
    for (let i = 0; i < CLIENTS; i++) {
      const o = await openChat(channels.pick(i), `${prefix}-${i}`, 'Europe/Paris');
      if (!o.ok) throw new Error(`client ${i} refused: ${o.code} ${o.details}`);
      calls.push(o.call);
    }
  }
  let random = 42;
  const rnd = () => ((random = (random * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let sent = 0, answered = 0;
  const errors: Record<string, number> = {};
  await new Promise<void>((done) => {
    const sendOne = (c: ChatCall, i: number) => {
      if (sent >= total) return;
      sent++;
      c.write({ frame: { $case: 'message', message: { clientMessageId: `${prefix}-${i}-${sent}`, content: { $case: 'text', text: sentence(rnd) } } } });
    };
    calls.forEach((c, i) => {
      c.removeAllListeners('data');
      c.on('data', (f: ServerFrame) => {
        const k = f.frame?.$case;
        if (k !== 'response' && k !== 'error') return;
        if (f.frame?.$case === 'error') {
          const code = f.frame.error.code || '?';
          errors[code] = (errors[code] ?? 0) + 1;
        }
        answered++;
        if (answered >= total) done();
        else sendOne(c, i);
      });
      c.resume();
      for (let w = 0; w < WINDOW; w++) sendOne(c, i);
    });
  });
  if (!streams) (calls as ChatCall[] & { channels?: Channels }).channels = channels;
  return { calls, answered, errors };
}

function closeAll(calls: ChatCall[]): Promise<void> {
  const ended = calls.map((c) => new Promise<void>((r) => (c.once('status', () => r()), c.end())));
  return Promise.race([Promise.all(ended), sleep(5000)]).then(() => undefined);
}

const mb = (b: number) => (b / 1e6).toFixed(1);

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'chatflow-mem-'));
  const snapDir = args['snapshot-dir'] ? resolve(args['snapshot-dir']) : undefined;
  if (snapDir) await mkdir(snapDir, { recursive: true });
  const logFile = join(work, 'server.log');
  const load = () => loadavg().map((x) => x.toFixed(2)).join(' / ');
  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };
  say(`# Server heap per message (embedded), ${new Date().toISOString()}`);
  say(`server: ${SERVER_DIR}; N = ${N} text messages after a ${WARMUP}-message warm-up; ${CLIENTS} clients × ${WINDOW} outstanding; fsync ${args.fsync}; load avg at start ${load()}`);
  const dataDir = join(work, 'data');
  let server = await Server.start(dataDir, logFile);
  try {
    const warm = await drive(server, 'mem', WARMUP);
    await server.caughtUp();
    const base = await server.heap();
    if (snapDir) await server.snapshot(join(snapDir, 'base.heapsnapshot'));
    const cpu0 = await server.cpu();
    const t0 = Date.now();
    const run = await drive(server, 'mem', N, warm.calls);
    const secs = (Date.now() - t0) / 1000;
    await server.caughtUp();
    const cpuPerMessage = ((await server.cpu()) - cpu0) / N;
    const loaded = await server.heap();
    if (snapDir) await server.snapshot(join(snapDir, 'loaded.heapsnapshot'));
    await closeAll(run.calls);
    (warm.calls as ChatCall[] & { channels?: Channels }).channels?.close();
    await sleep(1000);
    const closed = await server.heap();
    await server.stop();
    server = await Server.start(dataDir, logFile);
    const rebuilt = await server.heap();
    if (snapDir) await server.snapshot(join(snapDir, 'rebuilt.heapsnapshot'));
    await server.stop();
    server = await Server.start(join(work, 'empty'), logFile);
    const empty = await server.heap();
    if (snapDir) await server.snapshot(join(snapDir, 'empty.heapsnapshot'));
    await server.stop();

    say(`answered ${run.answered} in ${secs.toFixed(1)} s (${Math.round(run.answered / secs)} msg/s); server CPU ${Math.round(cpuPerMessage)} µs per message (all threads; includes GC); error frames: ${JSON.stringify(run.errors)}; load avg at end ${load()}`);
    say('');
    say('| state | heap used MB | external MB | RSS MB |');
    say('| --- | --- | --- | --- |');
    for (const [name, h] of [['base (after warm-up)', base], [`loaded (+${N})`, loaded], ['clients closed', closed], ['restarted on the same log', rebuilt], ['restarted on an empty log', empty]] as const) {
      say(`| ${name} | ${mb(h.heapUsed)} | ${mb(h.external)} | ${mb(h.rss)} |`);
    }
    say('');
    say(`**heap per message, live: ${Math.round((loaded.heapUsed - base.heapUsed) / N)} B** ((loaded − base) / ${N}); after the clients closed: ${Math.round((closed.heapUsed - base.heapUsed) / N)} B; ` +
      `**after a restart: ${Math.round((rebuilt.heapUsed - empty.heapUsed) / (N + WARMUP))} B** ((rebuilt − empty) / ${N + WARMUP})`);
    if (snapDir) {
      say('');
      say(`## Live process: loaded against base (${N} messages)`);
      say('');
      say(await summarizeGrowth(join(snapDir, 'base.heapsnapshot'), join(snapDir, 'loaded.heapsnapshot'), N));
      say('');
      say(`## After a restart: rebuilt against empty (${N + WARMUP} messages; two processes, so objects are not matched by id: the retained table lists the rebuilt process's largest)`);
      say('');
      say(await summarizeGrowth(join(snapDir, 'empty.heapsnapshot'), join(snapDir, 'rebuilt.heapsnapshot'), N + WARMUP));
    }
    if (args.out) await writeFile(args.out, `${lines.join('\n')}\n`);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
