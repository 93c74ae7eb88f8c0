// The latency floor of this machine, against which the reference's overhead
// goals (p50 ≤ 3 ms, Accepted p99 ≤ 10 ms) can be read: one client, one
// stream, one message at a time (texts, or the reference's audio or video clips: --kinds) with a pause between (the machine idle
// in between, as it mostly is at the reference's 24 msg/s), first against the
// bare grpc-js echo server (loadtest/echo/server.ts: the transport alone),
// then against embedded ChatFlow at simulated delay 0 with its worker in a
// thread (the default) and on the event loop. What ChatFlow adds above the
// echo is its two durable appends (the message, then its reply), its thread
// hops and its own work; what the echo takes is the machine's.
//
//   npx tsx loadtest/latency-floor.ts [--messages 200] [--gap-ms 100] [--kinds text,audio,video] [--server-dir DIR] [--out FILE.md]
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runDriver } from './engine/driver';
import { percentile, round, sortedCopy } from './stats';
import { startEcho } from './target/echo';
import { embeddedTarget } from './target/embedded';
import { KINDS, type Kind } from './payloads';
import { runScript } from './script';

export interface Probe {
  accepted: number[];
  reply: number[];
  /** reply − the processing_ms the server reports (0 for the echo). */
  overhead: number[];
}

/** Sends `n` messages of `kind` one at a time on one stream, each `gapMs` after the reply before it (the load test's driver, a window of 1); times Accepted and the reply at the client. */
export async function probe(grpc: string, n: number, gapMs: number, kind: Kind = 'text'): Promise<Probe> {
  const t0 = Date.now();
  const { messages: m, attempts } = await runDriver({
    mode: 'window',
    window: 1,
    pauseMs: gapMs,
    messagesPerUser: n,
    grpc: [grpc],
    users: [0],
    clientIdPrefix: `floor-${process.pid}-${t0}`,
    timeZone: 'UTC',
    t0,
    rampPerSec: 0,
    // Time enough for every message; the stream half-closes once the last is answered.
    sendUntil: t0 + n * (gapMs + 10_000),
    drainMs: 10_000,
    thinkMs: [0, 0],
    mix: [kind],
    channelsPerEndpoint: 1,
    defaultRetryMs: 1000,
  });
  const refused = attempts.outcome.filter((o) => o !== 'OK');
  if (refused.length > 0) throw new Error(`the stream was refused: ${refused.join(', ')}`);
  const failed = m.error.map((e, i) => [i, e] as const).filter(([, e]) => e !== '');
  if (failed.length > 0) throw new Error(`messages not answered: ${failed.map(([i, e]) => `#${i} ${e}`).join(', ')}`);
  if (m.sent.length !== n) throw new Error(`${m.sent.length} of ${n} messages were sent`);
  return {
    accepted: m.sent.map((sent, i) => m.accepted[i]! - sent),
    reply: m.sent.map((sent, i) => m.response[i]! - sent),
    overhead: m.sent.map((sent, i) => m.response[i]! - sent - m.processingMs[i]!),
  };
}

const ms = (values: number[], p: number) => round(percentile(sortedCopy(values), p) ?? NaN, 2);

export interface FloorRow {
  target: string;
  probe: Probe;
}

/**
 * Probes the bare echo, then embedded ChatFlow with its worker in a thread and
 * on the event loop (each started, probed and stopped in turn); `serverDir`:
 * another checkout's server (as the runner's `--server-dir`).
 */
export async function measureFloor(opts: { messages: number; gapMs: number; kinds?: readonly Kind[]; serverDir?: string; progress?: (line: string) => void }): Promise<FloorRow[]> {
  const logDir = await mkdtemp(join(tmpdir(), 'chatflow-floor-'));
  const kinds = opts.kinds ?? ['text'];
  const rows: FloorRow[] = [];
  const probeAll = async (target: string, grpc: string) => {
    for (const kind of kinds) {
      const p = await probe(grpc, opts.messages, opts.gapMs, kind);
      const named = kinds.length === 1 && kind === 'text' ? target : `${target}, ${kind}`;
      rows.push({ target: named, probe: p });
      opts.progress?.(`${named}: Accepted p50 ${ms(p.accepted, 50)} ms, reply p50 ${ms(p.reply, 50)} ms, overhead p50 ${ms(p.overhead, 50)} ms`);
    }
  };
  try {
    const echo = await startEcho(logDir);
    try {
      await probeAll('bare grpc-js echo (the transport alone)', echo.grpc);
    } finally {
      await echo.stop();
    }
    for (const [target, thread] of [['ChatFlow embedded, worker in a thread (default)', 'true'], ['ChatFlow embedded, worker on the event loop', 'false']] as const) {
      const running = await embeddedTarget.start({ logDir, serverDir: opts.serverDir, env: { CHATFLOW_SIM_DELAY_SCALE: '0', CHATFLOW_WORKER_THREAD: thread, CHATFLOW_LOG_FSYNC: 'true' } });
      try {
        await probeAll(target, running.grpc[0]!);
      } finally {
        await running.stop();
      }
    }
  } finally {
    await rm(logDir, { recursive: true, force: true });
  }
  return rows;
}

/** The rows as a Markdown report, with the machine and its load. */
export function floorReport(rows: FloorRow[], opts: { messages: number; gapMs: number; kinds?: readonly Kind[]; load: number[] }): string {
  return [
    `Latency floor, ${new Date().toISOString()}: one client, ${opts.messages} messages of each kind (${(opts.kinds ?? ['text']).join(', ')}) one at a time ${opts.gapMs} ms apart, simulated delay 0, fsync on; ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${opts.load.map((l) => l.toFixed(2)).join(' / ')} at start. Client-side times in ms (p50 / p99).`,
    '',
    '| target | send → Accepted | send → reply | overhead (reply − processing_ms) |',
    '| --- | --- | --- | --- |',
    ...rows.map(({ target, probe: p }) => `| ${target} | ${ms(p.accepted, 50)} / ${ms(p.accepted, 99)} | ${ms(p.reply, 50)} / ${ms(p.reply, 99)} | ${ms(p.overhead, 50)} / ${ms(p.overhead, 99)} |`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '200' },
      'gap-ms': { type: 'string', default: '100' },
      kinds: { type: 'string', default: 'text' },
      'server-dir': { type: 'string' },
      out: { type: 'string' },
    },
  });
  const messages = Number(values.messages);
  const gapMs = Number(values['gap-ms']);
  if (!(Number.isInteger(messages) && messages > 0) || !(gapMs >= 0)) throw new Error('--messages must be a positive integer and --gap-ms a number >= 0');
  const kinds = values.kinds.split(',').map((k) => k.trim());
  const unknown = kinds.filter((k) => !(KINDS as readonly string[]).includes(k));
  if (unknown.length > 0 || kinds.length === 0) throw new Error(`--kinds takes a comma-separated list of ${KINDS.join(', ')} (got ${values.kinds})`);
  const load = loadavg();
  const rows = await measureFloor({ messages, gapMs, kinds: kinds as Kind[], serverDir: values['server-dir'], progress: (line) => console.error(`[floor] ${line}`) });
  const report = floorReport(rows, { messages, gapMs, kinds: kinds as Kind[], load });
  if (values.out) await writeFile(values.out, report);
  process.stdout.write(report);
}

runScript(module, main);
