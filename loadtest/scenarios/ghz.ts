// `ghz-chat` and `ghz-history`: the ghz configurations in loadtest/ghz/ run
// against the target with `-O json`; each report is folded into the result
// (count, rps, average, latency distribution, status and error counts; ghz
// reports durations in ns, folded to ms).
//   ghz-chat    — Chat bidi streams: 5 text messages each, then half-close;
//                 one fresh client id per stream (x-client-id template).
//   ghz-history — ListConversations / ListMessages / GetConversation of a
//                 client the runner seeds with a conversation first.
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentials, Metadata } from '@grpc/grpc-js';
import { HistoryServiceClient } from '../../src/gen/chatflow/v1/history';
import { Channels, openChat } from '../engine/connect';
import { REPO } from '../target/process';
import { round } from '../stats';
import type { GoalCheck } from '../goals';
import type { RunContext, ScenarioOutput } from './context';

const run = promisify(execFile);
export const GHZ_DIR = join(REPO, 'loadtest', 'ghz');
/** Where deploy/install-ghz.sh puts it (CHATFLOW_STACK_DIR moves the whole stack folder). */
export const GHZ_BIN = join(process.env.CHATFLOW_STACK_DIR ?? join(REPO, '.stack'), 'bin', 'ghz');

/** The fields of a ghz `-O json` report we keep. */
export interface GhzReport {
  name: string;
  count: number;
  total: number;
  average: number;
  fastest: number;
  slowest: number;
  rps: number;
  endReason: string;
  latencyDistribution: { percentage: number; latency: number }[] | null;
  statusCodeDistribution: Record<string, number> | null;
  errorDistribution: Record<string, number> | null;
}

export interface GhzFigures {
  config: string;
  endpoint: string;
  call: string;
  count: number;
  rps: number;
  totalS: number;
  averageMs: number;
  fastestMs: number;
  slowestMs: number;
  /** p10 … p99, ms. */
  latencyMs: Record<string, number>;
  statusCodes: Record<string, number>;
  errors: Record<string, number>;
  endReason: string;
}

const nsToMs = (ns: number) => round(ns / 1e6, 2);

/** ghz's report, folded: ns → ms, percentiles keyed `p50` etc. */
export function foldGhzReport(r: GhzReport, config: string, endpoint: string, call: string): GhzFigures {
  const latencyMs: Record<string, number> = {};
  for (const d of r.latencyDistribution ?? []) latencyMs[`p${d.percentage}`] = nsToMs(d.latency);
  return {
    config, endpoint, call,
    count: r.count,
    rps: round(r.rps, 1),
    totalS: round(r.total / 1e9, 2),
    averageMs: nsToMs(r.average),
    fastestMs: nsToMs(r.fastest),
    slowestMs: nsToMs(r.slowest),
    latencyMs,
    statusCodes: r.statusCodeDistribution ?? {},
    errors: r.errorDistribution ?? {},
    endReason: r.endReason,
  };
}

/** Installs ghz when missing (deploy/install-ghz.sh, through loadtest/install-ghz.sh), returns its path. */
export async function ensureGhz(log: (l: string) => void): Promise<string> {
  if (existsSync(GHZ_BIN)) return GHZ_BIN;
  log('ghz not installed: running loadtest/install-ghz.sh → deploy/install-ghz.sh (go install, the first build takes a minute or two)');
  const { stdout } = await run('bash', [join(REPO, 'loadtest', 'install-ghz.sh')], { cwd: REPO, maxBuffer: 64 * 1024 * 1024 });
  const path = stdout.trim().split('\n').pop()!;
  return existsSync(path) ? path : GHZ_BIN;
}

export interface GhzRun {
  /** Config file in loadtest/ghz/. */
  config: string;
  endpoint: string;
  /** `${NAME}` placeholders in the config, replaced before the run. */
  vars?: Record<string, string>;
  /** Extra CLI flags (they override the config file). */
  flags?: string[];
  /** Use server reflection instead of the .proto files. */
  reflect?: boolean;
  /** The run is interrupted after this (default 5 min); the report says so (endReason "cancel"). */
  maxMs?: number;
}

export async function runGhz(ghz: string, r: GhzRun, workDir: string): Promise<GhzFigures> {
  let text = await readFile(join(GHZ_DIR, r.config), 'utf8');
  for (const [k, v] of Object.entries(r.vars ?? {})) text = text.split('${' + k + '}').join(v);
  const cfg = JSON.parse(text) as { call: string };
  await mkdir(workDir, { recursive: true });
  const resolved = join(workDir, `resolved-${r.config}`);
  await writeFile(resolved, text);
  const protoFlags = r.reflect ? [] : ['--proto', join(REPO, 'proto', protoFileOf(cfg.call)), '--import-paths', join(REPO, 'proto')];
  const args = ['--config', resolved, ...protoFlags, ...(r.flags ?? []), '-O', 'json', r.endpoint];
  let stdout: string;
  try {
    // A bound on the whole run: a server that stops answering must not hold the runner for hours (20 s per call × n).
    // SIGINT makes ghz stop and still print its report (endReason "cancel"). Not ghz's own --max-duration: with
    // streaming calls it spins and never returns (v0.121.0).
    ({ stdout } = await run(ghz, args, { cwd: REPO, maxBuffer: 256 * 1024 * 1024, timeout: r.maxMs ?? 300_000, killSignal: 'SIGINT' }));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    // ghz exits non-zero when calls failed but still prints its report.
    if (!e.stdout?.trim().startsWith('{')) throw new Error(`ghz ${args.join(' ')} failed: ${e.stderr || e.message}`);
    stdout = e.stdout;
  }
  return foldGhzReport(JSON.parse(stdout) as GhzReport, r.config, r.endpoint, cfg.call);
}

function protoFileOf(call: string): string {
  return call.includes('HistoryService') ? 'chatflow/v1/history.proto' : 'chatflow/v1/chat.proto';
}

function checksOf(runs: GhzFigures[]): GoalCheck[] {
  const endpoints = [...new Set(runs.map((g) => g.endpoint))];
  return runs.map((g) => {
    const bad = Object.entries(g.statusCodes).filter(([k]) => k !== 'OK');
    return {
      name: endpoints.length > 1 ? `${g.config} (gateway ${endpoints.indexOf(g.endpoint) + 1})` : g.config,
      goal: 'every call OK',
      measured:
        (bad.length ? `${g.statusCodes.OK ?? 0} OK, ${bad.map(([k, v]) => `${k} ${v}`).join(', ')}` : `${g.count} OK`) +
        (g.endReason && g.endReason !== 'normal' ? ` (run ended: ${g.endReason})` : ''),
      hit: bad.length === 0 && g.count > 0 && (!g.endReason || g.endReason === 'normal'),
    };
  });
}

const REFLECTION_NOTE =
  'ghz is given the .proto files (--proto/--import-paths): through server reflection ghz fails with `cannot resolve type: "*.google.protobuf.Timestamp" not found` (the reflection service built from a proto-loader package definition does not serve the well-known-type files; grpc/grpc-node#2958). `--ghz-reflect` tries reflection.';

export async function ghzChat(ctx: RunContext): Promise<ScenarioOutput> {
  const ghz = await ensureGhz(ctx.log);
  const { opts } = ctx;
  // Concurrency is split over the gateways; below the 50-client cap so no stream is refused.
  const per = Math.max(1, Math.floor(opts.ghzConcurrency / ctx.target.grpc.length));
  const total = Math.max(per, Math.floor(opts.ghzTotal / ctx.target.grpc.length));
  ctx.log(`ghz: ${opts.ghzTotal} Chat streams × 5 messages, concurrency ${opts.ghzConcurrency}, over ${ctx.target.grpc.length} endpoint(s)`);
  const runs = await Promise.all(
    ctx.target.grpc.map((endpoint) =>
      runGhz(ghz, { config: 'chat.json', endpoint, reflect: opts.ghzReflect, flags: ['-n', String(total), '-c', String(per)] }, join(opts.workDir, 'ghz')),
    ),
  );
  return {
    settings: { streams: opts.ghzTotal, concurrency: opts.ghzConcurrency, messagesPerStream: 5, delayScale: opts.delayScale, endpoints: ctx.target.grpc.length },
    figures: { ghz: runs, messagesPerS: round(runs.reduce((a, g) => a + g.rps * 5, 0), 1) },
    checks: checksOf(runs),
    notes: [
      'ghz latency of a Chat call = the whole stream: open (admission), 5 messages, every reply, half-close, OK status.',
      `Client ids: x-client-id "lt-{{.WorkerID}}-{{newUUID}}" (a fresh client per stream; the server runs with CHATFLOW_INSECURE_CLIENT_ID=true).`,
      opts.ghzReflect ? 'ghz used server reflection.' : REFLECTION_NOTE,
    ],
  };
}

export async function ghzHistory(ctx: RunContext): Promise<ScenarioOutput> {
  const ghz = await ensureGhz(ctx.log);
  const { opts } = ctx;
  const clientId = `lt-${ctx.runId}-history`;
  const seeded = 20;
  ctx.log(`seeding: ${clientId} sends ${seeded} messages`);
  const conversationId = await seed(ctx, clientId, seeded);
  await waitForHistory(ctx, clientId, conversationId, seeded * 2);
  const endpoint = ctx.target.grpc[0]!;
  const vars = { CLIENT_ID: clientId, CONVERSATION_ID: conversationId };
  const runs = [];
  for (const config of ['history-list-conversations.json', 'history-list-messages.json', 'history-get-conversation.json']) {
    ctx.log(`ghz: ${config}`);
    runs.push(await runGhz(ghz, { config, endpoint, vars, reflect: opts.ghzReflect, flags: ['-n', String(opts.ghzTotal * 5), '-c', String(Math.min(opts.ghzConcurrency, 20))] }, join(opts.workDir, 'ghz')));
  }
  return {
    settings: { calls: opts.ghzTotal * 5, concurrency: Math.min(opts.ghzConcurrency, 20), conversationMessages: seeded * 2 },
    figures: { ghz: runs },
    checks: checksOf(runs),
    notes: [`One client with one conversation of ${seeded} messages and their ${seeded} replies; ListMessages reads a page of 50.`, opts.ghzReflect ? 'ghz used server reflection.' : REFLECTION_NOTE],
  };
}

/** Opens a stream as `clientId`, sends `n` texts, waits for every reply; returns the conversation id. */
async function seed(ctx: RunContext, clientId: string, n: number): Promise<string> {
  const channels = new Channels([ctx.target.grpc[0]!], 1);
  try {
    const o = await openChat(channels.pick(0), clientId, ctx.opts.timeZone);
    if (!o.ok) throw new Error(`seeding: ${clientId} refused with ${o.code}: ${o.details}`);
    let replies = 0;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`seeding: ${replies}/${n} replies after 60 s`)), 60_000);
      o.call.on('data', (f) => {
        if (f.frame?.$case === 'response' && ++replies === n) {
          clearTimeout(timer);
          resolve();
        }
      });
      o.call.resume();
      for (let i = 0; i < n; i++) o.call.write({ frame: { $case: 'message', message: { clientMessageId: `seed-${i}`, content: { $case: 'text', text: `history seed message ${i}` } } } });
    });
    const conversationId = o.welcome.conversationId;
    o.call.end();
    if (!conversationId) throw new Error('seeding: the conversation is not in the history');
    return conversationId;
  } finally {
    channels.close();
  }
}

/** In the stack the projector writes the history asynchronously: wait until it shows the seeded messages. */
async function waitForHistory(ctx: RunContext, clientId: string, conversationId: string, atLeast: number): Promise<void> {
  const h = new HistoryServiceClient(ctx.target.grpc[0]!, credentials.createInsecure());
  const md = new Metadata();
  md.set('x-client-id', clientId);
  try {
    const end = Date.now() + 15_000;
    while (Date.now() < end) {
      const count = await new Promise<number>((resolve) =>
        h.listMessages({ conversationId, pageSize: 1000, pageToken: '', afterSeq: 0 }, md, (err, res) => resolve(err ? 0 : res.messages.length)),
      );
      if (count >= atLeast) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    ctx.log(`warning: history shows fewer than ${atLeast} messages after 15 s`);
  } finally {
    h.close();
  }
}
