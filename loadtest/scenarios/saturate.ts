// `saturate`: simulated delay 0, every client (50) keeps a window of messages
// outstanding, so the pipeline runs as fast as it can: its capacity in
// messages/s. The 500 cap is verified from the server's own processing peak
// (/metrics `chatflow_messages_processing_peak`).
// Then the same load client drives the echo baseline (loadtest/echo/server.ts,
// a bare grpc-js Chat server) with the same plan, and the report states both
// rates and ChatFlow's share of the echo's: the transport's ceiling, measured
// in the same run on the same machine.
import { chartData, connectionReport, messageReport } from '../analyze';
import type { DriverPlan } from '../engine/driver';
import { runFleet } from '../engine/fleet';
import type { MessageRecords } from '../engine/records';
import { echoRatioCheck, GOALS, saturationChecks } from '../goals';
import { startEcho } from '../target/echo';
import { minOf, round } from '../stats';
import type { RunContext, ScenarioOutput } from './context';

/** Replies per second completed in the middle 80 % of the sending period (steady state). */
export function steadyRate(rec: MessageRecords, durationMs: number): number {
  const origin = minOf(rec.sent);
  const from = origin + durationMs * 0.1, to = origin + durationMs * 0.9;
  let mid = 0;
  for (let i = 0; i < rec.response.length; i++) if (rec.error[i] === '' && rec.response[i]! >= from && rec.response[i]! < to) mid++;
  return round(mid / ((to - from) / 1000), 1);
}

export async function saturate(ctx: RunContext): Promise<ScenarioOutput> {
  const { opts } = ctx;
  const clients = Math.min(opts.users, opts.maxClients);
  const plan = (grpc: string[], prefix: string): DriverPlan => {
    const t0 = Date.now() + 300;
    return {
      mode: 'window',
      grpc,
      users: Array.from({ length: clients }, (_, i) => i),
      clientIdPrefix: prefix,
      timeZone: opts.timeZone,
      t0,
      rampPerSec: 0,
      sendUntil: t0 + opts.durationMs,
      drainMs: 30_000,
      thinkMs: [0, 0],
      window: opts.window,
      mix: opts.mix,
      channelsPerEndpoint: opts.channels,
      defaultRetryMs: 200,
    };
  };
  const fleet = await runFleet(plan(ctx.target.grpc, `sat-${ctx.runId}`), opts.clientProcs, (p) => ctx.progress(p));
  const { messages: rec, attempts } = fleet.result;
  const messages = messageReport(rec);
  const charts = chartData(rec, minOf(rec.sent), messages.spanS);
  const steadyPerS = steadyRate(rec, opts.durationMs);
  const peaks = ctx.watch.latest().filter((r) => !Number.isNaN(r.processingPeak));
  const peak = peaks.length ? peaks.reduce((a, r) => a + r.processingPeak, 0) : null;
  const workers = ctx.target.processes.filter((p) => p.role === 'worker' || p.role === 'all').length;

  // The echo baseline, same client, same plan, right after (ChatFlow is idle by then).
  let echo: { steadyPerS: number; overallPerS: number; failures: number; clientCpu: number[] } | null = null;
  if (opts.echo) {
    ctx.log(`echo baseline: the same ${clients} clients × ${opts.window} against a bare grpc-js Chat server for ${opts.durationMs / 1000} s`);
    const server = await startEcho(ctx.logDir);
    try {
      const e = await runFleet(plan([server.grpc], `echo-${ctx.runId}`), opts.clientProcs, (p) => ctx.progress(p));
      const er = messageReport(e.result.messages);
      echo = { steadyPerS: steadyRate(e.result.messages, opts.durationMs), overallPerS: er.overall.throughputPerS, failures: er.overall.failures, clientCpu: e.clientCpu.map((c) => c.coreShare) };
    } finally {
      await server.stop();
    }
  }
  const ratio = echo && echo.steadyPerS > 0 ? round(steadyPerS / echo.steadyPerS, 3) : null;
  const notes = [
    `${clients} clients × ${opts.window} messages outstanding, ${opts.mix.join('/')} messages, simulated delay 0, fsync ${opts.fsync ? 'on' : 'off'}; load generator: ${opts.clientProcs || 'in-runner'} client process(es) on the same machine.`,
    `Capacity = replies per second in the middle 80 % of the sending period (steady state); overall = all replies / first send → last reply.`,
    workers > 1
      ? `Processing peak = sum of the ${workers} workers' own peaks: an upper bound of the global peak (the cap holds if the sum does).`
      : `Processing peak read from the server's /metrics after the run.`,
    opts.echo
      ? `Echo baseline: loadtest/echo/server.ts, a bare grpc-js server of ChatService.Chat in its own process (Welcome, then Accepted + BotResponse per message; no log, no fsync, no worker), driven right after ChatFlow by the same client with the same plan; ratio = ChatFlow's steady msg/s / the echo's.`
      : `Echo baseline not run (--echo false).`,
  ];
  return {
    settings: { clients, window: opts.window, durationS: opts.durationMs / 1000, mix: opts.mix, delayScale: 0, fsync: opts.fsync, clientProcs: opts.clientProcs, channelsPerEndpoint: opts.channels },
    messages,
    connections: connectionReport(attempts, clients),
    charts,
    figures: { steadyPerS, overallPerS: messages.overall.throughputPerS, processingPeak: peak, processingCap: GOALS.maxProcessing, echo, echoRatio: ratio },
    checks: [...saturationChecks(ctx.mode, steadyPerS, peak, messages.overall.failures), ...(echo ? echoRatioCheck(ctx.mode, ratio) : [])],
    clientCpu: fleet.clientCpu,
    notes,
  };
}
