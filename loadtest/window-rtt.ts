// What the gateway's HTTP/2 receive window (CHATFLOW_GRPC_WINDOW_BYTES) costs
// an upload over a link with a round-trip time: embedded ChatFlow behind a TCP
// relay on loopback that holds every chunk `rtt / 2` in each direction (no
// bandwidth limit), one client sending videos one at a time, send → Accepted
// at the client. A sender may have at most one window of bytes unacknowledged,
// so an upload of S bytes needs about S / window round trips more than the one
// its Accepted takes anyway.
//
//   npx tsx loadtest/window-rtt.ts [--windows 65535,262144,1048576] [--rtts 0,20,60] [--sizes 204800,1048576,4194304] [--messages 5] [--out FILE.md]
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ChatServiceClient, type ServerFrame } from '../src/gen/chatflow/v1/chat';
import { credentials } from '@grpc/grpc-js';
import { openChat } from './engine/connect';
import { now } from './engine/records';
import { mp4 } from './payloads';
import { runScript } from './script';
import { percentile, round, sortedCopy } from './stats';
import { embeddedTarget } from './target/embedded';
import { startTcpProxy } from '../test/web-helpers';

/** Sends `n` videos of `bytes` one at a time on one stream through `grpc`; send → Accepted of each, in ms. */
async function acceptedTimes(grpc: string, bytes: number, n: number, clientId: string): Promise<number[]> {
  const client = new ChatServiceClient(grpc, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024, 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  try {
    const opened = await openChat(client, clientId, 'UTC');
    if (!opened.ok) throw new Error(`the stream was refused: ${opened.code} ${opened.details}`);
    const call = opened.call;
    const times: number[] = [];
    let waiting: ((f: ServerFrame) => void) | undefined;
    call.on('data', (f: ServerFrame) => waiting?.(f));
    call.on('error', () => undefined);
    call.resume();
    for (let i = 0; i < n; i++) {
      const data = mp4(bytes);
      const sent = now();
      const answered = new Promise<ServerFrame>((res) => (waiting = (f) => (f.frame?.$case === 'accepted' || f.frame?.$case === 'error') && res(f)));
      call.write({ frame: { $case: 'message', message: { clientMessageId: `v${i}`, content: { $case: 'video', video: { mimeType: 'video/mp4', data, url: '', sizeBytes: data.length, durationMs: 0 } } } } });
      const f = await answered;
      if (f.frame?.$case !== 'accepted') throw new Error(`video ${i} of ${bytes} bytes was refused: ${JSON.stringify(f.frame)}`);
      times.push(now() - sent);
    }
    call.end();
    return times;
  } finally {
    client.close();
  }
}

export interface WindowRow {
  window: number;
  rttMs: number;
  bytes: number;
  accepted: number[];
}

export async function measureWindows(opts: { windows: number[]; rtts: number[]; sizes: number[]; messages: number; progress?: (line: string) => void }): Promise<WindowRow[]> {
  const logDir = await mkdtemp(join(tmpdir(), 'chatflow-window-'));
  const rows: WindowRow[] = [];
  try {
    for (const window of opts.windows) {
      const running = await embeddedTarget.start({ logDir, env: { CHATFLOW_GRPC_WINDOW_BYTES: String(window), CHATFLOW_SIM_DELAY_SCALE: '0' } });
      try {
        const port = Number(running.grpc[0]!.split(':').pop());
        for (const rttMs of opts.rtts) {
          const relay = await startTcpProxy(port, { delayMs: rttMs / 2 });
          try {
            for (const bytes of opts.sizes) {
              const accepted = await acceptedTimes(new URL(relay.url).host, bytes, opts.messages, `window-${window}-${rttMs}-${bytes}-${process.pid}`);
              rows.push({ window, rttMs, bytes, accepted });
              opts.progress?.(`window ${window}, RTT ${rttMs} ms, ${bytes} B: Accepted p50 ${ms(accepted, 50)} ms`);
            }
          } finally {
            await relay.close();
          }
        }
      } finally {
        await running.stop();
      }
    }
  } finally {
    await rm(logDir, { recursive: true, force: true });
  }
  return rows;
}

const ms = (values: number[], p: number) => round(percentile(sortedCopy(values), p) ?? NaN, 1);
const kib = (b: number) => `${round(b / 1024, 0)} KiB`;

export function windowReport(rows: WindowRow[], opts: { messages: number; load: number[] }): string {
  const windows = [...new Set(rows.map((r) => r.window))];
  const cases = [...new Map(rows.map((r) => [`${r.rttMs}/${r.bytes}`, r] as const)).values()];
  return [
    `Upload → Accepted through a relay adding a round-trip time, ${new Date().toISOString()}: embedded ChatFlow, one client, ${opts.messages} videos of each size one at a time, fsync on; ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${opts.load.map((l) => l.toFixed(2)).join(' / ')} at start. Client-side send → Accepted in ms, median (max), by the gateway's receive window (\`CHATFLOW_GRPC_WINDOW_BYTES\`).`,
    '',
    `| RTT | upload | ${windows.map(kib).join(' | ')} |`,
    `| --- | --- | ${windows.map(() => '---').join(' | ')} |`,
    ...cases.map((c) => {
      const cells = windows.map((w) => {
        const r = rows.find((x) => x.window === w && x.rttMs === c.rttMs && x.bytes === c.bytes);
        return r ? `${ms(r.accepted, 50)} (${ms(r.accepted, 100)})` : '–';
      });
      return `| ${c.rttMs} ms | ${kib(c.bytes)} | ${cells.join(' | ')} |`;
    }),
    '',
  ].join('\n');
}

const positiveInts = (s: string, name: string, min = 0): number[] => {
  const v = s.split(',').map((x) => Number(x.trim()));
  if (v.length === 0 || v.some((x) => !Number.isInteger(x) || x < min)) throw new Error(`--${name} takes a comma-separated list of integers ≥ ${min} (got ${s})`);
  return v;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      windows: { type: 'string', default: '65535,262144,1048576' },
      rtts: { type: 'string', default: '0,20,60' },
      sizes: { type: 'string', default: '204800,1048576,4194304' },
      messages: { type: 'string', default: '5' },
      out: { type: 'string' },
    },
  });
  const opts = {
    windows: positiveInts(values.windows, 'windows', 65_535),
    rtts: positiveInts(values.rtts, 'rtts'),
    sizes: positiveInts(values.sizes, 'sizes', 1024),
    messages: positiveInts(values.messages, 'messages', 1)[0]!,
  };
  const load = loadavg();
  const rows = await measureWindows({ ...opts, progress: (line) => console.error(`[window] ${line}`) });
  const report = windowReport(rows, { messages: opts.messages, load });
  if (values.out) await writeFile(values.out, report);
  process.stdout.write(report);
}

runScript(module, main);
