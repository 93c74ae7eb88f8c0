// Markdown reports:
//   loadtest/results/<date>-<scenario>.md — one scenario, every mode run that day, side by side;
//   loadtest/REPORT.md                    — the latest report of each scenario and its headline figures.
import type { MessageFigures } from '../analyze';
import type { VoiceFigures } from '../scenarios/voice';
import { GOALS, REFERENCE, type GoalCheck } from '../goals';
import type { Summary } from '../stats';
import type { ProfileSummary } from './profile';
import { figuresOf } from './figures';
import { resultName, type ResultFile } from './result';
import type { GhzFigures } from '../scenarios/ghz';

export interface ModeFailure {
  mode: string;
  error: string;
}

const DESCRIPTIONS: Record<string, string> = {
  reference:
    'The Locust load test of the implementation ChatFlow replaces, reproduced: 100 users ramping at 5 users/s for 2 minutes, each holding one Chat stream and sending text, audio or video (at random) every 1–3 s, simulated processing at the reference delays (text 0–1 s, audio 1–2 s, video 2–3 s). ChatFlow admits 50 clients at a time: the other users are refused (RESOURCE_EXHAUSTED) and retry after `retry-after-ms`.',
  saturate: 'Simulated delay 0; every client keeps a window of messages outstanding, so the pipeline runs as fast as it can: its capacity in messages/s, with the 500-in-processing cap checked from the server\'s own peak. The same client then drives the echo baseline (a bare grpc-js Chat server, no log, no fsync) with the same plan: ChatFlow\'s rate as a share of its transport\'s ceiling.',
  scale: 'One gateway holding 10,000 Chat streams (CHATFLOW_MAX_CLIENTS=10000): server memory (RSS, V8 heap) per idle stream, 1 % of the streams chatting, and the time to refuse the 10,001st client.',
  admission: '1,000 connection attempts in one burst (exactly 50 must be held, the rest refused), then a 51st client arriving at a full server 200 times (refusal latency), then 10 held clients leaving and 10 newcomers taking their slots.',
  soak: 'The reference load for a longer time, watching server memory (RSS) and latency drift.',
  'ghz-chat': 'ghz (loadtest/ghz/chat.json): Chat bidi streams of 5 text messages each, a fresh client id per stream, simulated delay 0.',
  'ghz-history': 'ghz (loadtest/ghz/history-*.json): ListConversations, ListMessages and GetConversation of one seeded client.',
};

const fmt = (x: number | null | undefined, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: 0 }));
const pair = (s: Summary, a: 'p50' | 'p90' | 'p99' | 'mean' | 'max', b: 'p50' | 'p90' | 'p99' | 'mean' | 'max') => `${fmt(s[a])} / ${fmt(s[b])}`;
const load = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' / ');
const mark = (hit: boolean) => (hit ? '✅ hit' : '❌ miss');

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function scenarioReport(scenario: string, date: string, results: ResultFile[], failures: ModeFailure[] = []): string {
  const out: string[] = [];
  out.push(`# Load test: \`${scenario}\` — ${date}`);
  out.push('');
  out.push(DESCRIPTIONS[scenario] ?? '');
  out.push('');
  const modes = results.map((r) => r.mode);
  out.push(`Modes: ${results.map((r) => `**${r.mode}**`).join(', ') || 'none'}${failures.length ? `; not run: ${failures.map((f) => `**${f.mode}** (${f.error.split('\n')[0]})`).join(', ')}` : ''}.`);
  out.push('');
  for (const r of results) out.push(`- ${r.mode}: \`${r.command}\` — started ${r.startedAt}, ${fmt(r.wallS, 0)} s`);
  out.push('');

  out.push('## Machine');
  out.push('');
  out.push(
    table(
      ['mode', 'load avg at start (1/5/15 min)', 'at end', 'max 1-min during', 'CPUs', 'node', 'server commit'],
      results.map((r) => [r.mode, load(r.machine.loadavgStart), load(r.machine.loadavgEnd), fmt(r.machine.loadavgMax1, 2), `${r.machine.cpus} × ${r.machine.cpuModel}`, r.machine.node, `${r.machine.commit}${r.machine.dirty ? ' (+ uncommitted changes)' : ''}`]),
    ),
  );
  out.push('');
  out.push('Client and server share the machine; other work on it (load average above) adds noise to every figure.');
  out.push('');

  // Targets.
  const names = [...new Set(results.flatMap((r) => r.checks.map((c) => c.name)))];
  if (names.length) {
    out.push('## Targets');
    out.push('');
    const rows = names.map((n) => {
      const cells = results.map((r) => {
        const c = r.checks.find((x) => x.name === n);
        return c ? `${c.measured} (goal ${c.goal}) ${mark(c.hit)}` : '–';
      });
      return [n, ...cells];
    });
    out.push(table(['check', ...modes], rows));
    out.push('');
  }

  if (scenario === 'reference' || scenario === 'soak') out.push(referenceComparison(results), '');
  if (results.some((r) => r.messages)) out.push(messagesSection(results), '');
  if (results.some((r) => r.connections)) out.push(connectionsSection(results), '');
  if (scenario === 'saturate') out.push(saturationSection(results), '');
  if (scenario === 'admission') out.push(admissionSection(results), '');
  if (scenario === 'scale') out.push(scaleSection(results), '');
  if (scenario === 'soak') out.push(soakSection(results), '');
  if (scenario.startsWith('ghz')) out.push(ghzSection(results), '');
  out.push(serverSection(results), '');

  const figs = results.flatMap((r) => figuresOf(r).map((f) => ({ ...f, mode: r.mode })));
  if (figs.length) {
    out.push('## Charts');
    out.push('');
    for (const f of figs) out.push(`**${f.mode}** — ${f.caption}\n\n![${f.caption} (${f.mode})](${f.file})\n`);
  }

  const profiled = results.filter((r) => r.profiles && r.profiles.length > 0);
  if (profiled.length) {
    out.push('## Where the time goes (CPU profile)');
    out.push('');
    const missed = results.filter((r) => r.checks.some((c) => !c.hit));
    if (missed.length) out.push(`Targets missed in: ${missed.map((r) => r.mode).join(', ')}. The profiles below are of the server process(es) under load (\`node --cpu-prof\`), so the time is measured, not guessed.\n`);
    for (const r of profiled) {
      if (r.profileRun) {
        const pr = r.profileRun;
        out.push(`**${r.mode}**: the figures above come from an unprofiled run; the profile is from a second, ${fmt(pr.durationS, 0)} s run of the same scenario under the profiler (started ${pr.startedAt}, load avg ${load(pr.loadavgStart)}; its own checks: ${pr.checks.map((c) => `${c.name} ${c.measured}`).join(', ')}).\n`);
      }
      for (const p of r.profiles!) out.push(profileSection(r.mode, p), '');
    }
  }

  const notes = results.flatMap((r) => r.notes.map((n) => `- ${r.mode}: ${n}`));
  if (notes.length) {
    out.push('## Notes');
    out.push('');
    out.push([...new Set(notes)].join('\n'));
    out.push('');
  }
  out.push(`Raw figures: ${results.map((r) => `[${resultName(r.date, r.scenario, r.mode)}.json](${resultName(r.date, r.scenario, r.mode)}.json)`).join(', ')}.`);
  return out.join('\n') + '\n';
}

function messageRow(label: string, f: MessageFigures): string[] {
  return [
    label, fmt(f.count, 0), fmt(f.failures, 0), fmt(f.throughputPerS, 2),
    fmt(f.latency.p50), fmt(f.latency.p90), fmt(f.latency.p99), fmt(f.latency.max), fmt(f.latency.mean),
    fmt(f.overhead.p50, 2), fmt(f.overhead.p99, 2), pair(f.toAccepted, 'p50', 'p99'),
  ];
}

function messagesSection(results: ResultFile[]): string {
  const out = ['## Messages', '', 'Latency = send → BotResponse at the client. OVERHEAD = latency − the `processing_ms` the worker reports. All in ms.', ''];
  for (const r of results) {
    if (!r.messages) continue;
    out.push(`### ${r.mode}`, '');
    const rows = Object.entries(r.messages.byKind).map(([k, f]) => messageRow(k, f));
    rows.push(messageRow('**all**', r.messages.overall));
    out.push(table(['type', 'count', 'failures', 'msg/s', 'p50', 'p90', 'p99', 'max', 'mean', 'overhead p50', 'overhead p99', '→ Accepted p50 / p99'], rows));
    const fails = Object.entries(r.messages.failuresByCode);
    if (fails.length) out.push('', `Failures by cause: ${fails.map(([k, v]) => `${k} ${v}`).join(', ')}.`);
    out.push('');
  }
  return out.join('\n');
}

function referenceComparison(results: ResultFile[]): string {
  const withMsgs = results.filter((r) => r.messages);
  if (!withMsgs.length) return '';
  const head = ['', 'reference (Locust)', ...withMsgs.map((r) => `ChatFlow ${r.mode}`)];
  const k = (r: ResultFile, kind: string) => r.messages!.byKind[kind];
  const rows: string[][] = [
    ['requests (messages answered)', fmt(REFERENCE.requests, 0), ...withMsgs.map((r) => fmt(r.messages!.overall.answered, 0))],
    ['failures', fmt(REFERENCE.failures, 0), ...withMsgs.map((r) => fmt(r.messages!.overall.failures, 0))],
    ['requests/s', fmt(REFERENCE.requestsPerS, 2), ...withMsgs.map((r) => fmt(r.messages!.overall.throughputPerS, 2))],
    ['users admitted / total', `${REFERENCE.users} / ${REFERENCE.users} (no cap)`, ...withMsgs.map((r) => `${r.connections?.usersAdmitted ?? '–'} / ${(r.settings as { users?: number }).users ?? '–'}`)],
    ['avg response, ms', fmt(REFERENCE.avgMs, 2), ...withMsgs.map((r) => fmt(r.messages!.overall.latency.mean, 2))],
    ['text avg, ms', fmt(REFERENCE.avgByKindMs.text, 2), ...withMsgs.map((r) => fmt(k(r, 'text')?.latency.mean, 2))],
    ['audio avg, ms', fmt(REFERENCE.avgByKindMs.audio, 2), ...withMsgs.map((r) => fmt(k(r, 'audio')?.latency.mean, 2))],
    ['video avg, ms', fmt(REFERENCE.avgByKindMs.video, 2), ...withMsgs.map((r) => fmt(k(r, 'video')?.latency.mean, 2))],
    ['overhead, ms', `${REFERENCE.overheadMs} (avg)`, ...withMsgs.map((r) => `${fmt(r.messages!.overall.overhead.mean, 2)} avg, ${fmt(r.messages!.overall.overhead.p50, 2)} p50, ${fmt(r.messages!.overall.overhead.p99, 2)} p99`)],
  ];
  return ['## Against the reference', '', table(head, rows), '', 'The reference had no connection cap, so all its 100 users sent; ChatFlow serves 50 at a time, so it answers fewer messages in the same 2 minutes. The comparison that matters is the time per message above the simulated processing (overhead).'].join('\n');
}

function connectionsSection(results: ResultFile[]): string {
  const rows = results.filter((r) => r.connections).map((r) => {
    const c = r.connections!;
    return [
      r.mode, fmt(c.attempts, 0), fmt(c.admitted, 0), `${c.usersAdmitted} / ${c.usersAdmitted + c.usersNeverAdmitted}`,
      Object.entries(c.byStatus).map(([k, v]) => `${k} ${v}`).join(', '),
      pair(c.timeToAdmit, 'p50', 'p99'), pair(c.timeToReject, 'p50', 'p99'), c.waitForSlot.count ? `${pair(c.waitForSlot, 'p50', 'max')} (${c.waitForSlot.count})` : '–',
    ];
  });
  return ['## Connections', '', table(['mode', 'attempts', 'admitted', 'users admitted', 'outcomes by status', 'time to admit p50 / p99 (ms)', 'time to reject p50 / p99 (ms)', 'refused users: wait for a slot p50 / max (ms)'], rows)].join('\n');
}

function saturationSection(results: ResultFile[]): string {
  const rows = results.map((r) => {
    const f = (r.figures ?? {}) as SaturateFigures;
    const cpu = (r.clientCpu ?? []).map((c) => `${Math.round(c.coreShare * 100)} %`).join(', ');
    const perMessage = serverCpuPerMessageUs(r);
    return [r.mode, fmt(f.steadyPerS, 0), fmt(f.overallPerS, 0), fmt(f.processingPeak ?? NaN, 0), perMessage === null ? '–' : fmt(perMessage, 0), cpu || '–', f.echo ? fmt(f.echo.steadyPerS, 0) : '–', f.echoRatio == null ? '–' : `${fmt(f.echoRatio * 100, 1)} %`];
  });
  return [
    '## Capacity',
    '',
    table(['mode', 'capacity (steady, msg/s)', 'overall msg/s', `processing peak (cap ${GOALS.maxProcessing})`, 'server CPU per answered message (µs, all processes)', 'load-generator CPU (share of a core, per process)', 'echo baseline (steady, msg/s)', 'ChatFlow / echo'], rows),
    '',
    'Server CPU per answered message is the CPU time the server processes used during the run divided by the messages answered: on a machine shared with other work it moves much less than msg/s does, so it is the figure to compare between runs and commits.',
  ].join('\n');
}

/** Server CPU seconds (every process) per answered message, in µs; null without readings. */
export function serverCpuPerMessageUs(r: Pick<ResultFile, 'server' | 'messages'>): number | null {
  const seconds = (r.server?.cpu ?? []).reduce((a, c) => a + c.seconds, 0);
  const answered = r.messages?.overall.answered ?? 0;
  return seconds > 0 && answered > 0 ? (seconds / answered) * 1e6 : null;
}

type SaturateFigures = { steadyPerS?: number; overallPerS?: number; processingPeak?: number | null; echo?: { steadyPerS: number } | null; echoRatio?: number | null };
type ScaleFigures = {
  open: { attempts: number; admitted: number; wallMs: number; timeToAdmit: Summary };
  memory: { before: { rssMB: number; heapMB: number }; after: { rssMB: number; heapMB: number }; streamsHeld: number; rssBytesPerStream: number | null; heapBytesPerStream: number | null };
  probe: { attempts: number; byStatus: Record<string, number>; timeToReject: Summary; loopDelayMs?: { p99: number } };
  /** Since 2026-11-25: the same attempts from the runner holding every stream (before, `probe` was those). */
  runnerProbe?: { timeToReject: Summary; loopDelayMs: { p99: number } };
};
const kb = (bytes: number | null | undefined) => (bytes == null ? '–' : `${fmt(bytes / 1024, 1)} KB`);

function scaleSection(results: ResultFile[]): string {
  const out = ['## Streams, memory, refusal', ''];
  const rows = results.flatMap((r) => {
    const f = r.figures as ScaleFigures | undefined;
    if (!f?.memory) return [];
    return [[
      r.mode, `${fmt(f.memory.streamsHeld, 0)} of ${fmt(f.open.attempts, 0)}`, `${fmt(f.open.wallMs / 1000, 1)} s (admit p50/p99 ${pair(f.open.timeToAdmit, 'p50', 'p99')} ms)`,
      `${fmt(f.memory.before.rssMB)} → ${fmt(f.memory.after.rssMB)} MB`, kb(f.memory.rssBytesPerStream),
      `${fmt(f.memory.before.heapMB)} → ${fmt(f.memory.after.heapMB)} MB`, kb(f.memory.heapBytesPerStream),
      `${pair(f.probe.timeToReject, 'p50', 'p99')} / ${fmt(f.probe.timeToReject.max)}${f.probe.loopDelayMs ? ` (probe's loop delay p99 ${fmt(f.probe.loopDelayMs.p99)})` : ''}`,
      f.runnerProbe ? `${pair(f.runnerProbe.timeToReject, 'p50', 'p99')} / ${fmt(f.runnerProbe.timeToReject.max)} (runner's loop delay p99 ${fmt(f.runnerProbe.loopDelayMs.p99)})` : '–',
    ]];
  });
  out.push(table(['mode', 'streams held', 'open time', 'RSS before → after', 'RSS per stream', 'heap before → after', 'heap per stream', 'next client refused p50 / p99 / max (ms)', 'the same from the runner holding the streams'], rows));
  return out.join('\n');
}

function admissionSection(results: ResultFile[]): string {
  const out = ['## Admission', ''];
  for (const r of results) {
    const f = r.figures as {
      burst: { attempts: number; held: number; byStatus: Record<string, number>; wallMs: number; timeToAdmit: Summary; timeToReject: Summary; retryAfterMs: Record<string, number> };
      probe: { attempts: number; byStatus: Record<string, number>; timeToReject: Summary };
      reuse: { leavers: number; reused: number; admittedAfterMs: Summary; leaverStatusAfterMs: Summary; extraRefused: string };
    };
    if (!f?.burst) continue;
    out.push(`### ${r.mode}`, '');
    out.push(
      table(
        ['phase', 'attempts', 'held / admitted', 'outcomes', 'admit p50 / p99 / max (ms)', 'refuse p50 / p99 / max (ms)'],
        [
          ['burst', fmt(f.burst.attempts, 0), fmt(f.burst.held, 0), Object.entries(f.burst.byStatus).map(([k, v]) => `${k} ${v}`).join(', '), `${pair(f.burst.timeToAdmit, 'p50', 'p99')} / ${fmt(f.burst.timeToAdmit.max)}`, `${pair(f.burst.timeToReject, 'p50', 'p99')} / ${fmt(f.burst.timeToReject.max)}`],
          ['probe: 51st client, one at a time', fmt(f.probe.attempts, 0), fmt(f.probe.byStatus.OK ?? 0, 0), Object.entries(f.probe.byStatus).map(([k, v]) => `${k} ${v}`).join(', '), '–', `${pair(f.probe.timeToReject, 'p50', 'p99')} / ${fmt(f.probe.timeToReject.max)}`],
          ['reuse: 10 leave, 10 newcomers', fmt(f.reuse.leavers, 0), `${f.reuse.reused} of ${f.reuse.leavers}`, `next one: ${f.reuse.extraRefused}`, `${pair(f.reuse.admittedAfterMs, 'p50', 'max')} after the leave`, '–'],
        ],
      ),
    );
    out.push('', `Burst wall time ${fmt(f.burst.wallMs, 0)} ms; retry-after-ms on refusals: ${Object.entries(f.burst.retryAfterMs).map(([k, v]) => `${k} ms × ${v}`).join(', ')}.`, '');
  }
  return out.join('\n');
}

function soakSection(results: ResultFile[]): string {
  const out = ['## Drift', ''];
  const rows = results.map((r) => {
    const d = (r.figures as { drift?: { first: Record<string, number>; last: Record<string, number>; overheadSlopeMsPerMin: number } | null })?.drift;
    const s = r.server;
    return [
      r.mode,
      d ? `${fmt(d.first.overheadP50, 2)} / ${fmt(d.first.overheadP99, 2)} (${d.first.fromS}–${d.first.toS} s)` : '–',
      d ? `${fmt(d.last.overheadP50, 2)} / ${fmt(d.last.overheadP99, 2)} (${d.last.fromS}–${d.last.toS} s)` : '–',
      d ? fmt(d.overheadSlopeMsPerMin, 3) : '–',
      s ? `${fmt(s.rssMB.start, 0)} → ${fmt(s.rssMB.end, 0)} (max ${fmt(s.rssMB.max, 0)})` : '–',
    ];
  });
  out.push(table(['mode', 'overhead p50 / p99, first slice (ms)', 'last slice (ms)', 'overhead trend (ms per min)', 'server RSS MB start → end'], rows));
  return out.join('\n');
}

function ghzSection(results: ResultFile[]): string {
  const out = ['## ghz', '', 'Latency of a Chat call is the whole stream (open, 5 messages, every reply, close).', ''];
  const rows: string[][] = [];
  for (const r of results) {
    for (const g of ((r.figures as { ghz?: GhzFigures[] })?.ghz ?? [])) {
      rows.push([
        r.mode, g.call.split('/').pop()!, g.endpoint, fmt(g.count, 0), fmt(g.rps, 1), fmt(g.averageMs, 2),
        `${fmt(g.latencyMs.p50, 2)} / ${fmt(g.latencyMs.p90, 2)} / ${fmt(g.latencyMs.p99, 2)}`, fmt(g.slowestMs, 2),
        Object.entries(g.statusCodes).map(([k, v]) => `${k} ${v}`).join(', '), Object.entries(g.errors).map(([k, v]) => `${k.slice(0, 80)} × ${v}`).join('; ') || '–',
      ]);
    }
  }
  out.push(table(['mode', 'call', 'endpoint', 'count', 'calls/s', 'average (ms)', 'p50 / p90 / p99 (ms)', 'slowest (ms)', 'status codes', 'errors'], rows));
  return out.join('\n');
}

function serverSection(results: ResultFile[]): string {
  const rows = results.filter((r) => r.server).map((r) => {
    const s = r.server!;
    // Event-loop lag p99 as each process reports it (prom-client's monitor), median and worst of the readings.
    const lag = [...new Set(s.readings.map((x) => x.process))].map((p) => {
      const xs = s.readings.filter((x) => x.process === p && Number.isFinite(x.lagP99Ms)).map((x) => x.lagP99Ms).sort((a, b) => a - b);
      return xs.length ? `${p} ${fmt(xs[Math.floor(xs.length / 2)], 0)} / ${fmt(xs[xs.length - 1], 0)}` : `${p} –`;
    });
    return [
      r.mode, fmt(s.processingPeak ?? NaN, 0), `${fmt(s.rssMB.start, 0)} / ${fmt(s.rssMB.end, 0)} / ${fmt(s.rssMB.max, 0)}`,
      s.cpu.map((c) => `${c.process} ${Math.round(c.coreShare * 100)} %`).join(', '),
      lag.join(', '),
      (r.clientCpu ?? []).map((c) => `#${c.process} ${Math.round(c.coreShare * 100)} %`).join(', ') || 'in the runner',
      (r.clientCpu ?? []).map((c) => (c.loopDelayMs ? `#${c.process} ${fmt(c.loopDelayMs.p50, 1)} / ${fmt(c.loopDelayMs.p99, 1)} / ${fmt(c.loopDelayMs.max, 0)}` : `#${c.process} –`)).join(', ') || '–',
    ];
  });
  return [
    '## Server and load generator',
    '',
    table(['mode', 'processing peak', 'server RSS MB start / end / max', 'server CPU (share of one core)', 'event-loop lag p99, median / worst reading (ms)', 'load-generator CPU', 'load-generator loop delay p50 / p99 / max (ms)'], rows),
    '',
    'Event-loop lag: how late the server\'s timers fire (prom-client, read from /metrics every few seconds). A message that arrives while synchronous work holds the loop waits until that work ends; the p99 says how long that can be. The load generator\'s own loop delay (perf_hooks, whole run) counts in every time it records: a late client reads Accepted late.',
    ...stagesSection(results),
  ].join('\n');
}

/** Waiting that a CPU profile does not show: the servers' own histograms of log appends and media writes. */
function stagesSection(results: ResultFile[]): string[] {
  const rows = results.flatMap((r) => (r.server?.stages ?? []).map((st) => [r.mode, st.process, st.stage, fmt(st.count, 0), `≤ ${fmt(st.p50Ms ?? NaN, 1)}`, `≤ ${fmt(st.p99Ms ?? NaN, 1)}`]));
  if (rows.length === 0) return [];
  return [
    '',
    'Stages a message waits on, from each process\'s histograms over the whole run (`chatflow_log_append_seconds`: until the event log acknowledges an append — the embedded log\'s fsync, Kafka\'s acks=all; `chatflow_media_put_seconds`: storing an upload or a reply\'s voice/image, fsync or S3 PUT; `chatflow_mongo_command_seconds`: one MongoDB command, by name — count ÷ messages = commands per message; `chatflow_mongo_update_wait_seconds`: how long an update-shaped statement waited in the process for one of its `CHATFLOW_MONGO_UPDATE_CONCURRENCY` places; `chatflow_lease_renewal_seconds`, gateway: one renewal of its connection slots (its heartbeat), sent → answered; `chatflow_admission_seconds`, gateway: a Chat or Connect call from its arrival to its answer, by outcome (admitted, or the status it was refused with: RESOURCE_EXHAUSTED when the house is full); `chatflow_log_append_stage_seconds`, embedded log: queue = waiting for the batch being written before it, write = its batch\'s write + sync, settle = durable until its appender was told; `chatflow_message_stage_seconds`, gateway, per client message from its arrival: checked, stored (media durable), appended, accepted (Accepted handed to the stream), and append = requested → acknowledged; `chatflow_reply_stage_seconds`, after Accepted: worker taken (from the log) and started (claim and budget slot), then recorded / appended / told counted from the outcome\'s making, gateway delivered (the reply\'s event time → its frame handed to the stream); GC pause: each garbage collection, by kind, from perf_hooks). Figures are bucket upper bounds.',
    '',
    table(['mode', 'process', 'stage', 'count', 'p50 (ms)', 'p99 (ms)'], rows),
  ];
}

/**
 * node --cpu-prof writes one file per thread: CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile;
 * thread 0 is the event loop, the others are worker threads: the worker (CHATFLOW_WORKER_THREAD) and the
 * reply-media renderers, told apart by the ChatFlow code they ran.
 */
export function threadLabel(file: string, p?: Pick<ProfileSummary, 'chatflowInclusive'>): string {
  const m = /\.(\d+)\.\d+\.cpuprofile$/.exec(file);
  if (!m) return '';
  if (m[1] === '0') return ' (event loop)';
  const ran = p?.chatflowInclusive.map((f) => f.where).join(' ') ?? '';
  const role = /src\/worker\//.test(ran) ? ': the worker' : /src\/media\/render-thread/.test(ran) ? ': a media renderer' : '';
  return ` (worker thread ${m[1]}${role})`;
}

function profileSection(mode: string, p: ProfileSummary): string {
  const out = [`### ${mode}: ${p.file.split('/').slice(-2).join('/')}${threadLabel(p.file, p)}`, ''];
  out.push(`${p.window === 'load' ? 'Samples taken while the load ran' : 'The whole process life (startup included)'}: ${fmt(p.durationMs / 1000, 1)} s, busy ${fmt(p.busyMs / 1000, 1)} s (${fmt(p.busyPct, 1)} % of one core), idle ${fmt(p.idleMs / 1000, 1)} s.`, '');
  const top = p.byArea.filter((a) => a.area !== '(program)').slice(0, 3);
  out.push(`In short: ${top.map((a) => `${a.area} ${fmt(a.pct, 1)} %`).join(', ')} of the busy time; heaviest ChatFlow paths: ${p.chatflowInclusive.slice(0, 3).map((f) => `\`${f.fn}\` (${f.where}) ${fmt(f.pct, 1)} %`).join(', ') || '–'}.`, '');
  out.push('Self time by area (share of busy time):', '');
  out.push(table(['area', 'self ms', '%'], p.byArea.slice(0, 15).map((a) => [a.area, fmt(a.ms, 0), fmt(a.pct, 1)])));
  out.push('', 'Top functions by self time:', '');
  out.push(table(['function', 'where', 'self ms', '%'], p.bySelf.slice(0, 20).map((f) => [`\`${f.fn}\``, f.where, fmt(f.ms, 0), fmt(f.pct, 1)])));
  if (p.chatflowInclusive.length) {
    out.push('', 'ChatFlow functions by inclusive time (what they and everything they call cost):', '');
    out.push(table(['function', 'where', 'inclusive ms', '%'], p.chatflowInclusive.slice(0, 15).map((f) => [`\`${f.fn}\``, f.where, fmt(f.ms, 0), fmt(f.pct, 1)])));
  }
  return out.join('\n');
}

/** One line per (scenario, mode): the headline figure and the targets. */
export function headline(r: ResultFile): string[] {
  const checks = r.checks.length ? r.checks.map((c: GoalCheck) => `${c.name} ${c.hit ? '✅' : '❌'}`).join(', ') : '–';
  let figure = '–';
  const o = r.messages?.overall;
  switch (r.scenario) {
    case 'reference':
    case 'soak':
      if (o) figure = `${fmt(o.answered, 0)} answered, ${o.failures} failed, ${fmt(o.throughputPerS, 1)} msg/s, latency p50/p99 ${fmt(o.latency.p50, 0)}/${fmt(o.latency.p99, 0)} ms, overhead p50/p99 ${fmt(o.overhead.p50, 2)}/${fmt(o.overhead.p99, 2)} ms`;
      break;
    case 'saturate': {
      const f = r.figures as SaturateFigures;
      figure = `${fmt(f.steadyPerS, 0)} msg/s, processing peak ${fmt(f.processingPeak ?? NaN, 0)}`;
      if (f.echo) figure += `; echo baseline ${fmt(f.echo.steadyPerS, 0)} msg/s, ChatFlow at ${fmt((f.echoRatio ?? NaN) * 100, 1)} % of it`;
      break;
    }
    case 'admission': {
      const f = r.figures as { burst: { held: number; attempts: number }; probe: { timeToReject: Summary }; reuse: { reused: number; leavers: number } };
      figure = `${f.burst.held} held of ${f.burst.attempts}, 51st refused p99 ${fmt(f.probe.timeToReject.p99, 2)} ms, ${f.reuse.reused}/${f.reuse.leavers} slots reused`;
      break;
    }
    case 'voice': {
      const v = (r.figures as { voice: VoiceFigures }).voice;
      figure = `${v.messages} voice messages, ${v.failed} failed; first voice chunk p50/p99 ${fmt(v.firstChunkMs.p50, 0)}/${fmt(v.firstChunkMs.p99, 0)} ms, transcript p50/p99 ${fmt(v.transcriptMs.p50, 0)}/${fmt(v.transcriptMs.p99, 0)} ms, whole voice p50/p99 ${fmt(v.replyMs.p50, 0)}/${fmt(v.replyMs.p99, 0)} ms, transcript WER ${fmt(v.meanWer ?? NaN, 2)}`;
      break;
    }
    case 'scale': {
      const f = r.figures as ScaleFigures;
      figure = `${fmt(f.memory.streamsHeld, 0)} streams held, ${kb(f.memory.rssBytesPerStream)} RSS / ${kb(f.memory.heapBytesPerStream)} heap per idle stream, next client refused p99 ${fmt(f.probe.timeToReject.p99, 2)} ms`;
      break;
    }
    default: {
      const g = (r.figures as { ghz?: GhzFigures[] })?.ghz ?? [];
      figure = g.map((x) => `${x.call.split('/').pop()} ${fmt(x.rps, 0)}/s p99 ${fmt(x.latencyMs.p99, 1)} ms`).join('; ');
    }
  }
  return [r.scenario, r.mode, r.date, figure, checks, load(r.machine.loadavgStart)];
}

/** The headline table: one row per (scenario, mode) of the latest results. */
function headlineTable(latest: { scenario: string; date: string; results: ResultFile[] }[]): string {
  return table(['scenario', 'mode', 'date', 'figures', 'targets', 'load avg at start'], latest.flatMap((l) => l.results.map((r) => headline(r))));
}

export function indexReport(latest: { scenario: string; date: string; results: ResultFile[] }[]): string {
  const out = ['# Load-test results (latest)', '', 'Generated by `npm run loadtest`; one report per scenario and date in [results/](results/). How to run: [README.md](README.md).', ''];
  out.push(headlineTable(latest));
  out.push('');
  out.push('Reports:', '');
  for (const l of latest) out.push(`- [${l.scenario} — ${l.date}](results/${l.date}-${l.scenario}.md)`);
  const charts = latest.flatMap((l) => l.results.flatMap((r) => figuresOf(r).filter((f) => /latency-(time|hist)|connect-hist|throughput/.test(f.file)).map((f) => ({ f, r }))));
  if (charts.length) {
    out.push('', '## Charts', '');
    for (const { f, r } of charts) out.push(`**${r.scenario}, ${r.mode}** — ${f.caption}\n\n![${f.caption}](results/${f.file})\n`);
  }
  return out.join('\n') + '\n';
}

/**
 * The "Latest results" block of loadtest/README.md and of the root README: the
 * headline table, links to every chart, and the reference scenario's latency
 * charts inline. `base` is the path from the README to loadtest/.
 */
export function latestBlock(latest: { scenario: string; date: string; results: ResultFile[] }[], base = ''): string {
  const out = [headlineTable(latest), ''];
  // A mode whose latest run is older than the scenario's newest report links its own day's report.
  const older = (l: (typeof latest)[number]) =>
    l.results.filter((r) => r.date !== l.date).map((r) => ` (${r.mode}: [${r.date}](${base}results/${r.date}-${l.scenario}.md))`).join('');
  out.push(`Reports: ${latest.map((l) => `[${l.scenario}](${base}results/${l.date}-${l.scenario}.md)${older(l)}`).join(' · ')} · [all latest](${base}REPORT.md)`, '');
  for (const l of latest) {
    for (const r of l.results) {
      const figs = figuresOf(r).filter((f) => /latency-time|latency-hist|throughput-time|connect-hist/.test(f.file));
      if (figs.length) out.push(`${r.scenario} (${r.mode}): ${figs.map((f) => `[${f.file.replace(/^.*-(\w+-\w+)\.svg$/, '$1')}](${base}results/${f.file})`).join(' · ')}`, '');
    }
  }
  for (const r of latest.find((l) => l.scenario === 'reference')?.results ?? []) {
    for (const f of figuresOf(r).filter((x) => /latency-(time|hist)\.svg$/.test(x.file))) out.push(`![reference, ${r.mode}: ${f.caption}](${base}results/${f.file})`, '');
  }
  return out.join('\n');
}

/** Replaces what is between the markers in `text` (unchanged if they are missing). */
export function replaceBlock(text: string, start: string, end: string, body: string): string {
  const a = text.indexOf(start), b = text.indexOf(end);
  if (a < 0 || b < a) return text;
  return `${text.slice(0, a + start.length)}\n${body.trim()}\n${text.slice(b)}`;
}
