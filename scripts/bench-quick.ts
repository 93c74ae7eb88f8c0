// A quick throughput and overhead measurement of the embedded default: the
// server runs as its own process (as `npm start` does), 50 clients on native
// gRPC pipeline text messages with the simulated delay at 0. A smoke
// benchmark, not the load-test suite (the ghz scenarios are not built yet).
//   npm run bench:quick -- [--messages 20000] [--window 20] [--fsync true]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { credentials, Metadata } from '@grpc/grpc-js';
import { ChatServiceClient, type ServerFrame } from '../src/gen/chatflow/v1/chat';

const { values } = parseArgs({
  options: { messages: { type: 'string', default: '20000' }, window: { type: 'string', default: '20' }, fsync: { type: 'string', default: 'true' } },
});
const TOTAL = Number(values.messages);
const WINDOW = Number(values.window);
const CLIENTS = 50;
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const ms = (x: number) => `${x.toFixed(2)} ms`;

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'chatflow-bench-'));
  const server = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
    cwd: resolve(__dirname, '..'),
    env: {
      ...process.env, CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: dataDir,
      CHATFLOW_SIM_DELAY_SCALE: '0', CHATFLOW_INSECURE_CLIENT_ID: 'true', CHATFLOW_LOG_FSYNC: values.fsync, LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const addr = await new Promise<string>((res, rej) => {
      server.on('exit', (code) => rej(new Error(`server exited with ${code}`)));
      createInterface({ input: server.stdout! }).on('line', (line) => {
        if (line.includes('"ChatFlow ready"')) res(JSON.parse(line).grpc);
      });
    });
    const client = new ChatServiceClient(addr, credentials.createInsecure());
    const latency: number[] = [];
    const overhead: number[] = [];
    const toAccept: number[] = [];
    const perClient = Math.ceil(TOTAL / CLIENTS);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, (_, c) =>
        new Promise<void>((done, fail) => {
          const md = new Metadata();
          md.set('x-client-id', `bench-${c}`);
          md.set('x-timezone', 'UTC');
          const call = client.chat(md);
          const sentAt = new Map<string, number>();
          const byMessageId = new Map<string, number>();
          let sent = 0;
          let answered = 0;
          const send = () => {
            const id = `c${c}-${sent++}`;
            sentAt.set(id, performance.now());
            call.write({ frame: { $case: 'message', message: { clientMessageId: id, content: { $case: 'text', text: `benchmark message ${id}` } } } });
          };
          call.on('data', (f: ServerFrame) => {
            const now = performance.now();
            if (f.frame?.$case === 'welcome') for (let i = 0; i < Math.min(WINDOW, perClient); i++) send();
            if (f.frame?.$case === 'accepted') {
              const t0 = sentAt.get(f.frame.accepted.clientMessageId)!;
              toAccept.push(now - t0);
              byMessageId.set(f.frame.accepted.messageId, t0);
            }
            if (f.frame?.$case === 'response') {
              const t0 = byMessageId.get(f.frame.response.inReplyTo)!;
              latency.push(now - t0);
              overhead.push(now - t0 - f.frame.response.processingMs);
              if (++answered === perClient) call.end();
              else if (sent < perClient) send();
            }
          });
          call.on('error', fail);
          call.on('end', () => done());
        }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    for (const xs of [latency, overhead, toAccept]) xs.sort((a, b) => a - b);
    console.log(`\n${latency.length} messages from ${CLIENTS} clients (window ${WINDOW} each, fsync ${values.fsync}) in ${seconds.toFixed(1)} s`);
    console.log(`| figure | value |\n| --- | --- |`);
    console.log(`| throughput | ${(latency.length / seconds).toFixed(0)} messages/s |`);
    console.log(`| send → Accepted p50 / p99 | ${ms(pct(toAccept, 50))} / ${ms(pct(toAccept, 99))} |`);
    console.log(`| send → BotResponse p50 / p99 / max | ${ms(pct(latency, 50))} / ${ms(pct(latency, 99))} / ${ms(latency[latency.length - 1])} |`);
    console.log(`| overhead (latency − processing_ms) p50 / p99 | ${ms(pct(overhead, 50))} / ${ms(pct(overhead, 99))} |`);
    client.close();
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
