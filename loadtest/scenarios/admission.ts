// `admission`: the connection cap under a burst.
//   1. burst — 1,000 distinct clients open a Chat stream at once: exactly 50
//      must be held, every other refused (RESOURCE_EXHAUSTED), quickly;
//   2. probe — with the server full, a 51st client arrives, one at a time,
//      200 times: the refusal latency the target is about (p99 ≤ 20 ms);
//   3. reuse — 10 held clients leave (5 half-close, 5 cancel); 10 newcomers
//      retrying every 10 ms must take exactly those slots, and one more must
//      still be refused.
import { summarize, roundSummary, countBy, round, logHistogram } from '../stats';
import { admissionChecks } from '../goals';
import { Channels, openChat, type ChatCall, type OpenOutcome } from '../engine/connect';
import { emptyProgress, now } from '../engine/records';
import type { RunContext, ScenarioOutput } from './context';

const PROBES = 200;
const LEAVERS = 10;

export async function admission(ctx: RunContext): Promise<ScenarioOutput> {
  const { opts } = ctx;
  const channels = new Channels(ctx.target.grpc, opts.channels);
  await channels.warm();
  const id = (k: string, i: number) => `adm-${ctx.runId}-${k}-${i}`;
  const progress = emptyProgress();
  progress.users = opts.burst;
  const held: ChatCall[] = [];
  const keep = (o: OpenOutcome) => {
    if (!o.ok) return;
    held.push(o.call);
    // Every client must send a message within the first-message deadline.
    o.call.on('data', () => undefined);
    o.call.resume();
    o.call.write({ frame: { $case: 'message', message: { clientMessageId: 'hello', content: { $case: 'text', text: 'hello' } } } });
  };
  try {
    // 1. Burst.
    ctx.log(`burst: ${opts.burst} connection attempts at once`);
    const t0 = now();
    const burst = await Promise.all(
      Array.from({ length: opts.burst }, (_, i) =>
        openChat(channels.pick(i), id('burst', i), opts.timeZone).then((o) => {
          progress.attempts++;
          if (o.ok) progress.connected++;
          else progress.refused++;
          ctx.progress(progress);
          keep(o);
          return o;
        }),
      ),
    );
    const burstWallMs = now() - t0;
    const heldAfterBurst = burst.filter((o) => o.ok).length;
    const byStatus = countBy(burst, (o) => (o.ok ? 'OK' : o.code));
    const admitMs = burst.filter((o) => o.ok).map((o) => o.end - o.start);
    const rejectMs = burst.filter((o) => !o.ok).map((o) => o.end - o.start);
    const retryAfter = countBy(burst.filter((o): o is Extract<OpenOutcome, { ok: false }> => !o.ok), (o) => String(o.retryAfterMs ?? 'none'));

    // 2. Probe: the 51st client, one at a time.
    ctx.log(`probe: ${PROBES} single attempts at a full server`);
    const probe: OpenOutcome[] = [];
    for (let i = 0; i < PROBES; i++) {
      const o = await openChat(channels.pick(i), id('probe', i), opts.timeZone);
      keep(o);
      probe.push(o);
      progress.attempts++;
      if (!o.ok) progress.refused++;
      ctx.progress(progress);
      await new Promise((r) => setTimeout(r, 5));
    }
    const probeRejectMs = probe.filter((o) => !o.ok).map((o) => o.end - o.start);

    // 3. Reuse: 10 leave, 10 newcomers take their slots, an 11th is refused.
    ctx.log(`reuse: ${LEAVERS} held clients leave; ${LEAVERS} newcomers retry until admitted`);
    const leaving = held.splice(0, LEAVERS);
    const left = leaving.map(
      (call, i) =>
        new Promise<number>((resolve) => {
          call.on('status', () => resolve(now()));
          if (i % 2 === 0) call.end();
          else call.cancel();
        }),
    );
    const leaveStart = now();
    const newcomers = await Promise.all(
      Array.from({ length: LEAVERS }, async (_, i) => {
        let tries = 0;
        for (;;) {
          const o = await openChat(channels.pick(i), id('reuse', i), opts.timeZone);
          tries++;
          if (o.ok || o.code !== 'RESOURCE_EXHAUSTED' || now() - leaveStart > 10_000) {
            keep(o);
            return { ok: o.ok, code: o.ok ? 'OK' : o.code, tries, admittedAfterMs: o.end - leaveStart };
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      }),
    );
    const leftAt = await Promise.all(left.map((p) => Promise.race([p, new Promise<number>((r) => setTimeout(() => r(NaN), 5000))])));
    const extra = await openChat(channels.pick(0), id('extra', 0), opts.timeZone);
    keep(extra);
    const reused = newcomers.filter((n) => n.ok).length;
    const reuseOk = reused === LEAVERS && !extra.ok && extra.code === 'RESOURCE_EXHAUSTED';

    const burstReject = roundSummary(summarize(rejectMs));
    const probeReject = roundSummary(summarize(probeRejectMs));
    const allRefusals = { ...byStatus };
    for (const o of probe) allRefusals[o.ok ? 'OK' : o.code] = (allRefusals[o.ok ? 'OK' : o.code] ?? 0) + 1;
    return {
      settings: { burst: opts.burst, probes: PROBES, leavers: LEAVERS, maxClients: opts.maxClients, channelsPerEndpoint: opts.channels, endpoints: ctx.target.grpc.length },
      figures: {
        burst: {
          attempts: opts.burst, held: heldAfterBurst, byStatus, wallMs: round(burstWallMs),
          timeToAdmit: roundSummary(summarize(admitMs)), timeToReject: burstReject, retryAfterMs: retryAfter,
        },
        probe: { attempts: PROBES, byStatus: countBy(probe, (o) => (o.ok ? 'OK' : o.code)), timeToReject: probeReject },
        reuse: {
          leavers: LEAVERS,
          reused,
          newcomers: newcomers.map((n) => ({ code: n.code, tries: n.tries, admittedAfterMs: round(n.admittedAfterMs) })),
          admittedAfterMs: roundSummary(summarize(newcomers.filter((n) => n.ok).map((n) => n.admittedAfterMs))),
          leaverStatusAfterMs: roundSummary(summarize(leftAt.filter((t) => !Number.isNaN(t)).map((t) => t - leaveStart))),
          extraRefused: extra.ok ? 'admitted (cap exceeded!)' : extra.code,
        },
        hist: {
          'burst: refused': logHistogram(rejectMs),
          'burst: admitted': logHistogram(admitMs),
          'probe (51st): refused': logHistogram(probeRejectMs),
        },
      },
      checks: admissionChecks(heldAfterBurst, Math.min(opts.maxClients, opts.burst), probeReject.p99, allRefusals, reuseOk),
      notes: [
        `The "51st refused" target is measured by the probe (one attempt at a time while ${opts.maxClients} clients are held); the burst's refusal times include queueing behind ${opts.burst} simultaneous stream openings on one process.`,
        `Latency = client-side time from opening the stream to its Welcome frame or refusal status, over ${opts.channels} channel(s) per gateway, on the same machine.`,
        `Reuse: newcomers retry every 10 ms after the leavers went (half with a half-close, half with a cancel); admittedAfterMs counts from the leave.`,
      ],
      clientCpu: undefined,
    };
  } finally {
    for (const c of held) c.cancel();
    channels.close();
  }
}
