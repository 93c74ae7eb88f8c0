// `reference`: the Locust load test of the implementation ChatFlow replaces,
// reproduced: 100 users ramping at 5/s for 2 minutes; each holds one Chat
// stream and sends text, audio or video (chosen at random) every 1–3 s;
// simulated processing at the reference delays (scale 1). ChatFlow admits 50
// clients: the other users are refused with RESOURCE_EXHAUSTED and retry after
// `retry-after-ms`, which the report counts.
// `soak` is the same load for longer, watching memory and latency drift.
import { chartData, connectionReport, messageReport } from '../analyze';
import { runFleet } from '../engine/fleet';
import { overheadChecks, REFERENCE } from '../goals';
import { PAYLOAD_SIZES } from '../payloads';
import { maxOf, minOf, round, slope, summarize } from '../stats';
import type { RunContext, ScenarioOutput } from './context';

export async function reference(ctx: RunContext): Promise<ScenarioOutput> {
  const { opts } = ctx;
  const t0 = Date.now() + 500;
  const users = Array.from({ length: opts.users }, (_, i) => i);
  const fleet = await runFleet(
    {
      mode: 'paced',
      grpc: ctx.target.grpc,
      users,
      clientIdPrefix: `lt-${ctx.runId}`,
      timeZone: opts.timeZone,
      t0,
      rampPerSec: opts.rampPerSec,
      sendUntil: t0 + opts.durationMs,
      drainMs: 15_000,
      thinkMs: opts.thinkMs,
      window: 1,
      mix: opts.mix,
      channelsPerEndpoint: opts.channels,
      defaultRetryMs: 2000,
    },
    opts.clientProcs,
    (p) => ctx.progress(p),
  );
  const { messages: rec, attempts } = fleet.result;
  const messages = messageReport(rec);
  const connections = connectionReport(attempts, opts.users);
  const origin = minOf(rec.sent, attempts.start);
  const charts = chartData(rec, origin, messages.spanS);
  const o = messages.overall;
  const notes = [
    `Users send every ${opts.thinkMs[0] / 1000}–${opts.thinkMs[1] / 1000} s whether or not the previous reply came (as the reference's users did: ${REFERENCE.requestsPerS} req/s from ${REFERENCE.users} users).`,
    `ChatFlow holds at most ${opts.maxClients} clients: of ${opts.users} users, ${connections.usersAdmitted} were admitted; the others were refused and retried every retry-after-ms (+0–10 % jitter) for the whole run, so fewer messages are sent than by the reference's uncapped ${REFERENCE.users} users.`,
    `Payloads: text ${PAYLOAD_SIZES.text.minChars}–${PAYLOAD_SIZES.text.maxChars} chars; audio WAV 16 kHz mono 16-bit ${PAYLOAD_SIZES.audio.minSeconds}–${PAYLOAD_SIZES.audio.maxSeconds} s (${Math.round((PAYLOAD_SIZES.audio.minSeconds * PAYLOAD_SIZES.audio.bytesPerSecond) / 1024)}–${Math.round((PAYLOAD_SIZES.audio.maxSeconds * PAYLOAD_SIZES.audio.bytesPerSecond) / 1024)} KiB); video MP4 container ${PAYLOAD_SIZES.video.minBytes / 1024}–${PAYLOAD_SIZES.video.maxBytes / 1024} KiB.`,
  ];
  const out: ScenarioOutput = {
    settings: {
      users: opts.users, rampPerSec: opts.rampPerSec, durationS: opts.durationMs / 1000, thinkMs: opts.thinkMs, mix: opts.mix,
      delayScale: opts.delayScale, maxClients: opts.maxClients, clientProcs: opts.clientProcs, channelsPerEndpoint: opts.channels, fsync: opts.fsync,
    },
    messages,
    connections,
    charts,
    checks: overheadChecks(ctx.mode, o.overhead.p50, o.overhead.p99, o.failures, o.toAccepted.p99),
    clientCpu: fleet.clientCpu,
    notes,
  };
  if (ctx.opts.scenario === 'soak') out.figures = { drift: drift(rec.response, rec.sent, rec.processingMs, rec.error, origin) };
  return out;
}

/** Latency / overhead of the first and the last tenth of the run (min. 60 s each when the run allows). */
function drift(response: number[], sent: number[], processing: number[], error: string[], origin: number) {
  const ok = response.map((_, i) => i).filter((i) => error[i] === '' && response[i]! > 0);
  if (ok.length === 0) return null;
  const end = maxOf(ok.map((i) => response[i]!));
  const span = end - origin;
  const slice = Math.min(span / 2, Math.max(span / 10, 60_000));
  const part = (from: number, to: number) => {
    const idx = ok.filter((i) => response[i]! >= from && response[i]! < to);
    const s = summarize(idx.map((i) => response[i]! - sent[i]!));
    const ov = summarize(idx.map((i) => response[i]! - sent[i]! - processing[i]!));
    return { fromS: round((from - origin) / 1000, 1), toS: round((to - origin) / 1000, 1), count: s.count, latencyP50: round(s.p50 ?? NaN), latencyP99: round(s.p99 ?? NaN), overheadP50: round(ov.p50 ?? NaN), overheadP99: round(ov.p99 ?? NaN) };
  };
  // Overhead trend: least-squares slope of per-message overhead over time, ms per minute.
  const xs = ok.map((i) => (response[i]! - origin) / 60_000);
  const ys = ok.map((i) => response[i]! - sent[i]! - processing[i]!);
  return { first: part(origin, origin + slice), last: part(end - slice, end + 1), overheadSlopeMsPerMin: round(slope(xs, ys) ?? 0, 3) };
}
