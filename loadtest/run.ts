// The load-test runner.
//   npm run loadtest -- --scenario reference|saturate|admission|soak|ghz-chat|ghz-history|voice
//                       [--mode embedded|stack|both] [--duration 2m] [--users 100] ...
// Starts the target (a mode = how to start ChatFlow and where its endpoints
// are), drives the scenario, then writes
//   loadtest/results/<date>-<scenario>-<mode>.json (+ SVG charts)
//   loadtest/results/<date>-<scenario>.md          (every mode of that day side by side)
//   loadtest/REPORT.md                             (latest of each scenario)
// `--help` lists every option.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { admission } from './scenarios/admission';
import { SCENARIOS, type Options, type RunContext, type Scenario, type ScenarioName, type ScenarioOutput, type ServerSummary } from './scenarios/context';
import { ghzChat, ghzHistory } from './scenarios/ghz';
import { reference } from './scenarios/reference';
import { saturate } from './scenarios/saturate';
import { voice } from './scenarios/voice';
import { scale } from './scenarios/scale';
import { embeddedTarget } from './target/embedded';
import { PROJECTION_LAG_STAGE, ServerWatch, type ServerReading } from './target/prometheus';
import { REPO } from './target/process';
import { stackTarget } from './target/stack';
import { MODES, type ModeName, type RunningTarget, type Target } from './target/target';
import type { Progress } from './engine/records';
import { GOALS, projectionLagCheck } from './goals';
import { KINDS, type Kind } from './payloads';
import { monotonicUs, summarizeProfileFile, type ProfileWindow } from './report/profile';
import { writeFigures } from './report/figures';
import { indexReport, latestBlock, replaceBlock, scenarioReport, type ModeFailure } from './report/markdown';
import { latestDates, latestResults, readResults, writeResult, type MachineInfo, type ResultFile } from './report/result';
import { round } from './stats';

const SCENARIO_RUN: Record<ScenarioName, Scenario> = {
  reference,
  soak: reference,
  saturate,
  admission,
  'ghz-chat': ghzChat,
  'ghz-history': ghzHistory,
  voice,
  scale,
};

const TARGETS: Record<ModeName, Target> = { embedded: embeddedTarget, stack: stackTarget() };

/** Defaults per scenario (the reference's numbers for reference/soak). */
function defaults(s: ScenarioName) {
  const base = {
    durationMs: 120_000, users: 100, rampPerSec: 5, thinkMs: [1000, 3000] as [number, number], window: 1, mix: [...KINDS] as Kind[],
    delayScale: 1, clientProcs: 1, channels: 4, burst: 1000, maxClients: GOALS.maxClients as number, streams: GOALS.scale.streams as number, profile: 'auto' as Options['profile'], ghzTotal: 2000, ghzConcurrency: 40,
  };
  // `auto`: the figures come from an unprofiled run (the profiler costs ~10 % of capacity); when a target is
  // missed, a short second run under --cpu-prof says where the time goes. Not for soak (long) and ghz.
  switch (s) {
    case 'reference':
      return base;
    case 'soak':
      return { ...base, durationMs: 600_000, profile: 'off' as Options['profile'] };
    case 'saturate':
      return { ...base, durationMs: 30_000, users: 50, window: 20, mix: ['text'] as Kind[], delayScale: 0 };
    case 'admission':
      return { ...base, delayScale: 0, channels: 8 };
    case 'ghz-chat':
    case 'ghz-history':
      return { ...base, delayScale: 0, profile: 'off' as Options['profile'] };
    case 'voice':
      return { ...base, durationMs: 60_000, users: 3, delayScale: 0, channels: 1, profile: 'off' as Options['profile'] };
    case 'scale':
      // CHATFLOW_MAX_CLIENTS = the streams held (--streams); 16 channels ≈ 625 streams per HTTP/2 connection.
      return { ...base, delayScale: 0, channels: 16, maxClients: base.streams, profile: 'off' as Options['profile'] };
  }
}

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new Error(`bad duration "${s}" (e.g. 90s, 2m, 1500ms)`);
  const n = Number(m[1]);
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h']);
}

const HELP = `npm run loadtest -- --scenario NAME [options]

scenarios: ${SCENARIOS.join(', ')}
  --mode embedded|stack|both   target (default embedded; stack needs: eval "$(npm run -s stack:env)")
  --duration 2m                sending period (reference 2m, saturate 30s, soak 10m)
  --users 100                  simulated users (saturate: clients, ≤ max clients)
  --ramp 5                     users started per second
  --think 1000-3000            think time between a user's messages, ms
  --window 20                  saturate: messages outstanding per client
  --echo true                  saturate: also drive the echo baseline (bare grpc-js Chat server) with the same plan
  --streams 10000              scale: streams one gateway holds (max clients default to it)
  --mix text,audio,video       message types chosen from (saturate default: text)
  --delay-scale 1              CHATFLOW_SIM_DELAY_SCALE for the server
  --max-clients 50             CHATFLOW_MAX_CLIENTS for the server (scale: --streams)
  --fsync true                 CHATFLOW_LOG_FSYNC for the server
  --client-procs 1             load-generator processes (0 = inside the runner)
  --channels 4                 gRPC channels (TCP connections) per gateway per client process
  --burst 1000                 admission: attempts in the burst
  --profile auto|true|false    CPU-profile the server (--cpu-prof). auto (reference, saturate, admission):
                               measure unprofiled; if a target is missed, run again briefly under the profiler
  --ghz-total 2000             ghz-chat: streams (ghz-history: 5 × this calls per RPC)
  --ghz-concurrency 40         ghz workers (kept below the client cap)
  --ghz-reflect                ghz uses server reflection instead of the .proto files
  --env KEY=VALUE              extra server environment (repeatable)
  --server-dir DIR             run the server from another checkout (default: this one)
  --tz Europe/Paris            x-timezone of the simulated clients
  --out DIR                    results folder (default loadtest/results)
  --date YYYY-MM-DD            date in the file names (default today)
  --report-only                rebuild the Markdown reports from the JSON files, run nothing
  --quiet                      no progress lines`;

export function parseOptions(argv: string[]): Options & { reportOnly: boolean; scenarioGiven: boolean; dateGiven: boolean } {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      scenario: { type: 'string' }, mode: { type: 'string', default: 'embedded' }, duration: { type: 'string' }, users: { type: 'string' },
      ramp: { type: 'string' }, think: { type: 'string' }, window: { type: 'string' }, mix: { type: 'string' }, 'delay-scale': { type: 'string' },
      'max-clients': { type: 'string' }, echo: { type: 'string', default: 'true' }, streams: { type: 'string' }, fsync: { type: 'string', default: 'true' }, 'client-procs': { type: 'string' }, channels: { type: 'string' },
      burst: { type: 'string' }, profile: { type: 'string' }, 'ghz-total': { type: 'string' }, 'ghz-concurrency': { type: 'string' }, 'ghz-reflect': { type: 'boolean', default: false },
      env: { type: 'string', multiple: true, default: [] }, 'server-dir': { type: 'string' }, tz: { type: 'string', default: 'Europe/Paris' },
      out: { type: 'string' }, date: { type: 'string' }, 'report-only': { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const reportOnly = values['report-only'] ?? false;
  const scenario = (values.scenario ?? (reportOnly ? 'reference' : undefined)) as ScenarioName | undefined;
  if (!scenario || !SCENARIOS.includes(scenario)) throw new Error(`--scenario must be one of ${SCENARIOS.join(', ')}\n\n${HELP}`);
  const d = defaults(scenario);
  const streams = values.streams === undefined ? d.streams : Number(values.streams);
  if (!Number.isInteger(streams) || streams < 1) throw new Error(`--streams must be a whole number ≥ 1, got "${values.streams}"`);
  const num = (v: string | undefined, dflt: number, name: string) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number ≥ 0, got "${v}"`);
    return n;
  };
  const mode = values.mode!;
  const modes: ModeName[] = mode === 'both' ? [...MODES] : MODES.includes(mode as ModeName) ? [mode as ModeName] : (() => {
    throw new Error(`--mode must be embedded, stack or both, got "${mode}"`);
  })();
  let thinkMs = d.thinkMs;
  if (values.think) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(values.think);
    if (!m) throw new Error(`--think must be MIN-MAX in ms, e.g. 1000-3000`);
    thinkMs = [Number(m[1]), Number(m[2] ?? m[1])];
  }
  const mix = values.mix ? (values.mix.split(',').map((s) => s.trim()) as Kind[]) : d.mix;
  for (const k of mix) if (!KINDS.includes(k)) throw new Error(`--mix: unknown type "${k}" (text, audio, video)`);
  // The voice scenario runs the offline speech engines (other scenarios run without them: target/process.ts).
  const serverEnv: Record<string, string> = scenario === 'voice' ? { CHATFLOW_STT: 'local', CHATFLOW_TTS: 'local' } : {};
  for (const kv of values.env ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`--env must be KEY=VALUE, got "${kv}"`);
    serverEnv[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const today = new Date();
  const date = values.date ?? `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, '0')}-${String(today.getDate()).padStart(2, '0')}`;
  return {
    scenario, modes, reportOnly,
    scenarioGiven: values.scenario !== undefined,
    dateGiven: values.date !== undefined,
    durationMs: values.duration ? parseDuration(values.duration) : d.durationMs,
    users: num(values.users, d.users, 'users'),
    rampPerSec: num(values.ramp, d.rampPerSec, 'ramp'),
    thinkMs,
    window: num(values.window, d.window, 'window'),
    mix,
    delayScale: num(values['delay-scale'], d.delayScale, 'delay-scale'),
    maxClients: num(values['max-clients'], scenario === 'scale' ? streams : d.maxClients, 'max-clients'),
    echo: values.echo !== 'false',
    streams,
    fsync: values.fsync !== 'false',
    clientProcs: num(values['client-procs'], d.clientProcs, 'client-procs'),
    channels: Math.max(1, num(values.channels, d.channels, 'channels')),
    burst: num(values.burst, d.burst, 'burst'),
    profile: values.profile === undefined ? d.profile : values.profile === 'auto' ? 'auto' : values.profile === 'false' || values.profile === 'off' ? 'off' : 'on',
    ghzTotal: num(values['ghz-total'], d.ghzTotal, 'ghz-total'),
    ghzConcurrency: Math.max(1, num(values['ghz-concurrency'], d.ghzConcurrency, 'ghz-concurrency')),
    ghzReflect: values['ghz-reflect'] ?? false,
    outDir: resolve(values.out ?? join(REPO, 'loadtest', 'results')),
    workDir: join(REPO, 'loadtest', '.work'),
    date,
    serverEnv,
    quiet: values.quiet ?? false,
    timeZone: values.tz!,
    serverDir: resolve(values['server-dir'] ?? REPO),
  };
}

function serverEnvFor(opts: Options): Record<string, string> {
  return {
    CHATFLOW_SIM_DELAY_SCALE: String(opts.delayScale),
    CHATFLOW_MAX_CLIENTS: String(opts.maxClients),
    CHATFLOW_LOG_FSYNC: String(opts.fsync),
    CHATFLOW_INSECURE_CLIENT_ID: 'true',
    ...opts.serverEnv,
  };
}

function machineStart(serverDir: string): Omit<MachineInfo, 'loadavgEnd' | 'loadavgMax1'> {
  let commit = 'unknown';
  let dirty: boolean | null = null;
  try {
    commit = execFileSync('git', ['-C', serverDir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    dirty = execFileSync('git', ['-C', serverDir, 'status', '--porcelain', '--', 'src', 'projections'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
  } catch {
    // Not a git checkout (e.g. an exported snapshot): it may say which commit it is.
    const marker = join(serverDir, '.git-commit');
    if (existsSync(marker)) {
      commit = readFileSync(marker, 'utf8').trim();
      dirty = false;
    }
  }
  const c = cpus();
  return {
    cpus: c.length, cpuModel: c[0]?.model.trim() ?? 'unknown', totalMemMB: Math.round(totalmem() / 2 ** 20), node: process.version,
    commit, dirty, loadavgStart: loadavg().map((x) => round(x, 2)),
  };
}

/** Rate-limited progress line: clients connected, messages/s, errors, load average. */
function progressPrinter(label: string, quiet: boolean) {
  const t0 = Date.now();
  let last = 0, lastAnswered = 0, lastT = t0;
  return (p: Progress) => {
    const now = Date.now();
    if (quiet || now - last < 2000) return;
    const rate = ((p.answered - lastAnswered) * 1000) / Math.max(1, now - lastT);
    last = now;
    lastAnswered = p.answered;
    lastT = now;
    const line = `[${label}] ${((now - t0) / 1000).toFixed(0).padStart(4)} s | connected ${p.connected}/${p.users} | attempts ${p.attempts} refused ${p.refused} | sent ${p.sent} answered ${p.answered} (${rate.toFixed(1)} msg/s) | errors ${p.failed} | load ${loadavg()[0]!.toFixed(2)}`;
    process.stderr.write(line + '\n');
  };
}

export function serverSummary(readings: ServerReading[], wallS: number): ServerSummary {
  const procs = [...new Set(readings.map((r) => r.process))];
  const byT = new Map<number, ServerReading[]>();
  for (const r of readings) {
    if (!byT.has(r.t)) byT.set(r.t, []);
    byT.get(r.t)!.push(r);
  }
  const ticks = [...byT.entries()].sort((a, b) => a[0] - b[0]).map(([, rs]) => rs);
  const rssOf = (rs: ServerReading[]) => rs.reduce((a, r) => a + (Number.isNaN(r.rssBytes) ? 0 : r.rssBytes), 0) / 2 ** 20;
  const rss = ticks.map(rssOf);
  const peakOf = (rs: ServerReading[]) => {
    const xs = rs.map((r) => r.processingPeak).filter((x) => !Number.isNaN(x));
    return xs.length ? xs.reduce((a, b) => a + b, 0) : NaN;
  };
  const peaks = ticks.map(peakOf).filter((x) => !Number.isNaN(x));
  const cpu = procs.map((p) => {
    const rs = readings.filter((r) => r.process === p && !Number.isNaN(r.cpuSeconds));
    const secs = rs.length > 1 ? rs[rs.length - 1]!.cpuSeconds - rs[0]!.cpuSeconds : 0;
    const span = rs.length > 1 ? (rs[rs.length - 1]!.t - rs[0]!.t) / 1000 : wallS;
    return { process: p, seconds: round(secs, 1), coreShare: span > 0 ? round(secs / span, 2) : 0 };
  });
  const perProc = Math.max(1, Math.ceil(readings.length / Math.max(1, procs.length) / 300));
  const sampled = procs.flatMap((p) => readings.filter((r) => r.process === p).filter((_, i) => i % perProc === 0));
  return {
    processingPeak: peaks.length ? Math.max(...peaks) : null,
    rssMB: { start: rss.length ? round(rss[0]!, 1) : null, end: rss.length ? round(rss[rss.length - 1]!, 1) : null, max: rss.length ? round(Math.max(...rss), 1) : null },
    cpu,
    readings: sampled.map((r) => ({
      t: round(r.t / 1000, 1), process: r.process, rssMB: round(r.rssBytes / 2 ** 20, 1), processing: r.processing, waiting: r.waiting, clients: r.clients, lagP99Ms: round(r.eventLoopLagP99Ms, 2),
    })),
  };
}

/** How long the extra profiled run of `--profile auto` lasts, at most. */
const PROFILE_RUN_MS: Partial<Record<ScenarioName, number>> = { reference: 45_000, saturate: 20_000 };

/** One scenario in one mode, with `--profile` applied (see Options.profile). */
export async function runScenario(opts: Options, mode: ModeName, command: string): Promise<ResultFile> {
  const r = await runOne(opts, mode, command, opts.profile === 'on');
  if (opts.profile === 'auto' && r.checks.some((c) => !c.hit)) {
    const durationMs = Math.min(opts.durationMs, PROFILE_RUN_MS[opts.scenario] ?? opts.durationMs);
    process.stderr.write(`[${opts.scenario}/${mode}] a target was missed: running ${durationMs / 1000} s again under the CPU profiler to see where the time goes\n`);
    const p = await runOne({ ...opts, durationMs, echo: false }, mode, command, true);
    r.profiles = p.profiles;
    r.profileRun = { startedAt: p.startedAt, durationS: durationMs / 1000, loadavgStart: p.machine.loadavgStart, checks: p.checks };
  }
  return r;
}

export async function runOne(opts: Options, mode: ModeName, command: string, profile = opts.profile === 'on'): Promise<ResultFile> {
  const runId = randomBytes(3).toString('hex');
  const label = `${opts.scenario}/${mode}`;
  const log = (l: string) => process.stderr.write(`[${label}] ${l}\n`);
  const logDir = join(opts.workDir, 'logs', `${opts.date}-${opts.scenario}-${mode}-${runId}`);
  await mkdir(logDir, { recursive: true });
  const profileDir = profile ? join(opts.workDir, 'profiles', `${opts.date}-${opts.scenario}-${mode}-${runId}`) : undefined;
  const machine = machineStart(opts.serverDir);
  let loadMax = loadavg()[0]!;
  const loadTimer = setInterval(() => (loadMax = Math.max(loadMax, loadavg()[0]!)), 2000);
  const started = new Date();
  const env = serverEnvFor(opts);
  log(`starting the target (logs: ${logDir}${profileDir ? `, CPU profile: ${profileDir}` : ''})`);
  let target: RunningTarget;
  try {
    target = await TARGETS[mode].start({ env, profileDir, logDir, serverDir: opts.serverDir });
  } catch (err) {
    clearInterval(loadTimer); // else the runner never exits after "NOT RUN" (the stack's engines not set, a server that did not start)
    throw err;
  }
  log(`target up: gRPC ${target.grpc.join(', ')}; ${target.processes.map((p) => `${p.name} pid ${p.pid}`).join(', ')}`);
  const watch = new ServerWatch(target.processes, opts.scenario === 'soak' ? 5000 : 2000);
  let output: ScenarioOutput;
  let profiles: string[] = [];
  const loadWindow: ProfileWindow = { fromUs: 0, toUs: 0 };
  try {
    await watch.start();
    const ctx: RunContext = { opts, mode, target, watch, runId, logDir, progress: progressPrinter(label, opts.quiet), log };
    loadWindow.fromUs = monotonicUs();
    output = await SCENARIO_RUN[opts.scenario](ctx);
    loadWindow.toUs = monotonicUs();
  } finally {
    await watch.stop();
    clearInterval(loadTimer);
    log('stopping the target');
    profiles = (await target.stop()).profiles;
  }
  const wallS = round((Date.now() - started.getTime()) / 1000, 1);
  output.server = { ...serverSummary(watch.readings, wallS), stages: watch.stages };
  // Issue 15: the projection lag under the reference load (soak is the same load), from the projector's histogram.
  if (opts.scenario === 'reference' || opts.scenario === 'soak') {
    const lag = watch.stages.filter((st) => st.stage === PROJECTION_LAG_STAGE && st.count > 0);
    output.checks.push(...projectionLagCheck(mode, lag.length ? Math.max(...lag.map((st) => st.p99Ms ?? Infinity)) : undefined));
  }
  if (profiles.length) output.profiles = await Promise.all(profiles.map((p) => summarizeProfileFile(p, loadWindow)));
  return {
    schema: 1,
    scenario: opts.scenario,
    mode,
    date: opts.date,
    startedAt: started.toISOString(),
    wallS,
    command,
    machine: { ...machine, loadavgEnd: loadavg().map((x) => round(x, 2)), loadavgMax1: round(loadMax, 2) },
    target: { processes: target.processes.map((p) => ({ name: p.name, role: p.role })), env },
    ...output,
  };
}

/** Rebuilds the scenario's Markdown for `date` and the index (REPORT.md + the blocks in loadtest/README.md and README.md). */
export async function writeReports(outDir: string, scenario: string, date: string, failures: ModeFailure[] = []): Promise<string> {
  const results = await readResults(outDir, date, scenario);
  const md = join(outDir, `${date}-${scenario}.md`);
  await writeFile(md, scenarioReport(scenario, date, results, failures));
  // The index only when writing into the repository's own results folder.
  if (resolve(outDir) === resolve(REPO, 'loadtest', 'results')) {
    // The newest row of each scenario × mode: a run of one mode keeps the other mode's latest row.
    const latest = await latestResults(outDir, SCENARIOS);
    await writeFile(join(REPO, 'loadtest', 'REPORT.md'), indexReport(latest));
    for (const [readme, base] of [[join(REPO, 'loadtest', 'README.md'), ''], [join(REPO, 'README.md'), 'loadtest/']] as const) {
      const text = await readFile(readme, 'utf8').catch(() => '');
      if (text) await writeFile(readme, replaceBlock(text, '<!-- loadtest-latest:start -->', '<!-- loadtest-latest:end -->', latestBlock(latest, base)));
    }
  }
  return md;
}

function summaryTable(r: ResultFile): string {
  const lines = [`\n=== ${r.scenario} / ${r.mode} — load avg ${r.machine.loadavgStart.join(' ')} → ${r.machine.loadavgEnd.join(' ')} ===`];
  const pad = (s: string, n: number) => s.padEnd(n);
  if (r.messages) {
    lines.push(`${pad('type', 8)}${pad('count', 8)}${pad('fail', 6)}${pad('msg/s', 9)}${pad('p50', 10)}${pad('p90', 10)}${pad('p99', 10)}${pad('max', 10)}${pad('ovh p50', 10)}${pad('ovh p99', 10)}`);
    const row = (k: string, f: NonNullable<ResultFile['messages']>['overall']) =>
      `${pad(k, 8)}${pad(String(f.count), 8)}${pad(String(f.failures), 6)}${pad(String(f.throughputPerS), 9)}${pad(String(f.latency.p50 ?? '-'), 10)}${pad(String(f.latency.p90 ?? '-'), 10)}${pad(String(f.latency.p99 ?? '-'), 10)}${pad(String(f.latency.max ?? '-'), 10)}${pad(String(f.overhead.p50 ?? '-'), 10)}${pad(String(f.overhead.p99 ?? '-'), 10)}`;
    for (const [k, f] of Object.entries(r.messages.byKind)) lines.push(row(k, f));
    lines.push(row('all', r.messages.overall));
  }
  if (r.connections) {
    const c = r.connections;
    lines.push(`connections: ${c.attempts} attempts, ${Object.entries(c.byStatus).map(([k, v]) => `${k} ${v}`).join(', ')}; admit p50/p99 ${c.timeToAdmit.p50}/${c.timeToAdmit.p99} ms; reject p50/p99 ${c.timeToReject.p50}/${c.timeToReject.p99} ms`);
  }
  if (r.server) lines.push(`server: processing peak ${r.server.processingPeak}, RSS ${r.server.rssMB.start} → ${r.server.rssMB.end} MB, CPU ${r.server.cpu.map((c) => `${c.process} ${Math.round(c.coreShare * 100)}%`).join(', ')}`);
  for (const st of r.server?.stages ?? []) lines.push(`stage: ${st.process} ${st.stage}: ${st.count} × p50 ≤ ${st.p50Ms} ms, p99 ≤ ${st.p99Ms} ms`);
  for (const c of r.checks) lines.push(`${c.hit ? 'HIT ' : 'MISS'} ${c.name}: ${c.measured} (goal ${c.goal})`);
  if (r.profiles?.length) {
    for (const p of r.profiles) lines.push(`profile ${p.file}: busy ${p.busyPct}%; top self: ${p.bySelf.slice(0, 5).map((f) => `${f.fn} ${f.pct}%`).join(', ')}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const command = `npm run loadtest -- ${process.argv.slice(2).join(' ')}`;
  if (opts.reportOnly) {
    const scenarios = opts.scenarioGiven ? [opts.scenario] : [...(await latestDates(opts.outDir)).keys()];
    for (const s of scenarios) {
      const date = opts.dateGiven ? opts.date : (await latestDates(opts.outDir)).get(s) ?? opts.date;
      for (const r of await readResults(opts.outDir, date, s)) await writeFigures(opts.outDir, r);
      console.log(await writeReports(opts.outDir, s, date));
    }
    return;
  }
  await mkdir(opts.outDir, { recursive: true });
  const failures: ModeFailure[] = [];
  for (const mode of opts.modes) {
    try {
      const r = await runScenario(opts, mode, command);
      const file = await writeResult(opts.outDir, r);
      await writeFigures(opts.outDir, r);
      console.log(summaryTable(r));
      console.log(`results: ${file}`);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      process.stderr.write(`\n[${opts.scenario}/${mode}] NOT RUN: ${msg}\n`);
      failures.push({ mode, error: msg });
    }
  }
  const md = await writeReports(opts.outDir, opts.scenario, opts.date, failures);
  console.log(`report: ${md}`);
  if (failures.length) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
