// `saturate`: simulated delay 0, every client (50) keeps a window of messages
// outstanding, so the pipeline runs as fast as it can: its capacity in
// messages/s. The 500 cap is verified from the server's own processing peak
// (/metrics `chatflow_messages_processing_peak`).
import { chartData, connectionReport, messageReport } from '../analyze';
import { runFleet } from '../engine/fleet';
import { GOALS, saturationChecks } from '../goals';
import { minOf, round } from '../stats';
import type { RunContext, ScenarioOutput } from './context';

export async function saturate(ctx: RunContext): Promise<ScenarioOutput> {
  const { opts } = ctx;
  const clients = Math.min(opts.users, opts.maxClients);
  const t0 = Date.now() + 300;
  const fleet = await runFleet(
    {
      mode: 'window',
      grpc: ctx.target.grpc,
      users: Array.from({ length: clients }, (_, i) => i),
      clientIdPrefix: `sat-${ctx.runId}`,
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
    },
    opts.clientProcs,
    (p) => ctx.progress(p),
  );
  const { messages: rec, attempts } = fleet.result;
  const messages = messageReport(rec);
  const origin = minOf(rec.sent);
  const charts = chartData(rec, origin, messages.spanS);
  // Steady state: replies completed in the middle 80 % of the sending period.
  const from = origin + opts.durationMs * 0.1, to = origin + opts.durationMs * 0.9;
  let mid = 0;
  for (let i = 0; i < rec.response.length; i++) if (rec.error[i] === '' && rec.response[i]! >= from && rec.response[i]! < to) mid++;
  const steadyPerS = round(mid / ((to - from) / 1000), 1);
  const peaks = ctx.watch.latest().filter((r) => !Number.isNaN(r.processingPeak));
  const peak = peaks.length ? peaks.reduce((a, r) => a + r.processingPeak, 0) : null;
  const workers = ctx.target.processes.filter((p) => p.role === 'worker' || p.role === 'all').length;
  const notes = [
    `${clients} clients × ${opts.window} messages outstanding, ${opts.mix.join('/')} messages, simulated delay 0, fsync ${opts.fsync ? 'on' : 'off'}; load generator: ${opts.clientProcs || 'in-runner'} client process(es) on the same machine.`,
    `Capacity = replies per second in the middle 80 % of the sending period (steady state); overall = all replies / first send → last reply.`,
    workers > 1
      ? `Processing peak = sum of the ${workers} workers' own peaks: an upper bound of the global peak (the cap holds if the sum does).`
      : `Processing peak read from the server's /metrics after the run.`,
  ];
  return {
    settings: { clients, window: opts.window, durationS: opts.durationMs / 1000, mix: opts.mix, delayScale: 0, fsync: opts.fsync, clientProcs: opts.clientProcs, channelsPerEndpoint: opts.channels },
    messages,
    connections: connectionReport(attempts, clients),
    charts,
    figures: { steadyPerS, overallPerS: messages.overall.throughputPerS, processingPeak: peak, processingCap: GOALS.maxProcessing },
    checks: saturationChecks(ctx.mode, steadyPerS, peak, messages.overall.failures),
    clientCpu: fleet.clientCpu,
    notes,
  };
}
