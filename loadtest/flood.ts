// One client floods, the others chat: how long do the others' messages wait?
// ChatFlow (embedded, or the stack with --mode stack) with the reference's simulated delays (text 0–1 s), one
// client pipelining `--flood` texts on its stream at once while `--bystanders`
// clients send one text at a time (200 ms after each reply). The workers
// process at most 500 messages at once; what a bystander's message waits
// beyond its own processing (reply − sent − processing_ms) is the time it
// spent behind the flood. Run once per bound on unanswered messages per
// client (CHATFLOW_UNANSWERED_PER_CLIENT), each on a fresh server, in one run.
//
//   npx tsx loadtest/flood.ts [--mode embedded|stack] [--flood 5000] [--bystanders 10] [--chat-s 60] [--bounds 100000,50] [--out FILE.md]
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runDriver, type DriverPlan } from './engine/driver';
import { percentile, round, sortedCopy } from './stats';
import { embeddedTarget } from './target/embedded';
import { stackTarget } from './target/stack';
import type { ModeName } from './target/target';
import { runScript } from './script';

export interface FloodRow {
  bound: number;
  /** The flood: its messages, failures, first send to last reply (ms). */
  flood: { messages: number; failed: number; ms: number };
  /** What the bystanders' messages sent during the flood waited beyond their processing (ms). */
  waited: number[];
  bystanderFailed: number;
}

export interface FloodOptions {
  /** embedded (default), or the stack (npm run stack:up, its env set): two gateways, two workers, a projector. */
  mode?: ModeName;
  flood: number;
  bystanders: number;
  /** How long the bystanders chat, from 200 ms into the flood (s): as long as the slowest flood takes. */
  chatS: number;
}

export async function measureFlood(bound: number, opts: FloodOptions, logDir: string): Promise<FloodRow> {
  const { flood: floodN, bystanders } = opts;
  const target = opts.mode === 'stack' ? stackTarget() : embeddedTarget;
  const running = await target.start({ logDir, env: { CHATFLOW_SIM_DELAY_SCALE: '1', CHATFLOW_UNANSWERED_PER_CLIENT: String(bound) } });
  try {
    const t0 = Date.now() + 500;
    const base: Omit<DriverPlan, 'users' | 'window' | 'sendUntil' | 'messagesPerUser'> = {
      mode: 'window',
      grpc: running.grpc,
      clientIdPrefix: `flood-${bound}-${t0}`,
      timeZone: 'UTC',
      t0,
      rampPerSec: 0,
      drainMs: 60_000,
      thinkMs: [0, 0],
      mix: ['text'],
      channelsPerEndpoint: 1,
      defaultRetryMs: 1000,
    };
    const flooding = runDriver({ ...base, users: [0], window: floodN, messagesPerUser: floodN, sendUntil: t0 + 300_000 });
    const chatting = runDriver({ ...base, t0: t0 + 200, users: Array.from({ length: bystanders }, (_, i) => i + 1), window: 1, pauseMs: 200, sendUntil: t0 + 200 + opts.chatS * 1000 });
    const [f, b] = await Promise.all([flooding, chatting]);
    const floodEnd = Math.max(...f.messages.response);
    const waited: number[] = [];
    let bystanderFailed = 0;
    b.messages.sent.forEach((sent, i) => {
      if (sent > floodEnd) return;
      if (b.messages.error[i] !== '') bystanderFailed++;
      else waited.push(b.messages.response[i]! - sent - b.messages.processingMs[i]!);
    });
    return {
      bound,
      flood: { messages: f.messages.sent.length, failed: f.messages.error.filter((e) => e !== '').length, ms: floodEnd - Math.min(...f.messages.sent) },
      waited,
      bystanderFailed,
    };
  } finally {
    await running.stop();
  }
}

const ms = (values: number[], p: number) => round(percentile(sortedCopy(values), p) ?? NaN, 1);

export function floodReport(rows: FloodRow[], opts: { mode?: ModeName; flood: number; bystanders: number; load: number[] }): string {
  const what = opts.mode === 'stack' ? 'ChatFlow on the stack (2 gateways, 2 workers, a projector)' : 'embedded ChatFlow';
  return [
    `Flood, ${new Date().toISOString()}: ${what}, simulated delays (text 0–1 s), fsync on; one client pipelines ${opts.flood} texts at once, ${opts.bystanders} others send one at a time. ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${opts.load.map((l) => l.toFixed(2)).join(' / ')} at start. A bystander's wait = reply − sent − processing_ms, over its messages sent before the flood's last reply (ms).`,
    '',
    '| CHATFLOW_UNANSWERED_PER_CLIENT | flood: answered / failed, took | bystander messages during the flood | bystander wait p50 / p99 / max | bystander failures |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.bound.toLocaleString('en-US')} | ${r.flood.messages - r.flood.failed} / ${r.flood.failed}, ${(r.flood.ms / 1000).toFixed(1)} s | ${r.waited.length} | ${ms(r.waited, 50)} / ${ms(r.waited, 99)} / ${round(Math.max(...r.waited), 1)} | ${r.bystanderFailed} |`,
    ),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      flood: { type: 'string', default: '5000' },
      bystanders: { type: 'string', default: '10' },
      'chat-s': { type: 'string', default: '60' },
      mode: { type: 'string', default: 'embedded' },
      bounds: { type: 'string', default: '100000,50' },
      out: { type: 'string' },
    },
  });
  const flood = Number(values.flood);
  const bystanders = Number(values.bystanders);
  const chatS = Number(values['chat-s']);
  const mode = values.mode as ModeName;
  if (mode !== 'embedded' && mode !== 'stack') throw new Error(`--mode is embedded or stack (got ${values.mode})`);
  const bounds = values.bounds.split(',').map(Number);
  if (![flood, bystanders, chatS, ...bounds].every((n) => Number.isInteger(n) && n > 0)) throw new Error('--flood, --bystanders, --chat-s and each of --bounds must be positive integers');
  const load = loadavg();
  const logDir = await mkdtemp(join(tmpdir(), 'chatflow-flood-'));
  const rows: FloodRow[] = [];
  try {
    for (const bound of bounds) {
      const row = await measureFlood(bound, { mode, flood, bystanders, chatS }, logDir);
      console.error(`[flood] bound ${bound}: flood ${row.flood.ms} ms, bystander wait p99 ${ms(row.waited, 99)} ms over ${row.waited.length}`);
      rows.push(row);
    }
  } finally {
    await rm(logDir, { recursive: true, force: true });
  }
  const report = floodReport(rows, { mode, flood, bystanders, load });
  if (values.out) await writeFile(values.out, report);
  process.stdout.write(report);
}

runScript(module, main);
