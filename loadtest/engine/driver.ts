// Simulated users in one process. Two ways to send:
//   paced  — the reference: one message, then a think time of 1–3 s, again,
//            whether or not the reply came (as the reference's users did);
//   window — saturation: keep `window` messages outstanding per user, send
//            the next as soon as a reply arrives (or `pauseMs` after it:
//            with a window of 1, one message at a time on an otherwise idle
//            machine, as loadtest/latency-floor.ts sends).
// A user holds one Chat stream; refused (e.g. RESOURCE_EXHAUSTED when the 50
// slots are taken) it waits the server's `retry-after-ms` (+0–10 % jitter)
// and tries again until the sending period ends.
import { status } from '@grpc/grpc-js';
import type { ServerFrame } from '../../src/gen/chatflow/v1/chat';
import { KINDS, Payloads, type Kind } from '../payloads';
import { Channels, openChat, type ChatCall } from './connect';
import { lateness, monitorLoop, type LoopDelay } from './loop-delay';
import { addAttempt, addMessage, emptyAttempts, emptyMessages, emptyProgress, now, type AttemptRecords, type MessageRecords, type Progress } from './records';

export interface DriverPlan {
  mode: 'paced' | 'window';
  grpc: string[];
  /** Global indices of the users this driver runs (user i → client id `${clientIdPrefix}-${i}`). */
  users: number[];
  clientIdPrefix: string;
  timeZone: string;
  /** Epoch ms; user i starts at t0 + i·1000/rampPerSec. */
  t0: number;
  /** Users started per second (0 or Infinity = all at once). */
  rampPerSec: number;
  /** Epoch ms after which no message is sent (and no connection tried). */
  sendUntil: number;
  /** How long after `sendUntil` outstanding replies are awaited before they count as NO_REPLY. */
  drainMs: number;
  /** paced: think time between sends, uniform in [min, max) ms. */
  thinkMs: [number, number];
  /** window: messages outstanding per user. */
  window: number;
  /** window: the wait before each send, after the reply that frees its place (default 0: at once). */
  pauseMs?: number;
  /** At most this many messages per stream; it half-closes once they are answered (default: until `sendUntil`). */
  messagesPerUser?: number;
  /** Kinds a user picks from, uniformly. */
  mix: Kind[];
  /** Channels (TCP connections) per gRPC endpoint in this process. */
  channelsPerEndpoint: number;
  /** Used when a refusal carries no retry-after-ms. */
  defaultRetryMs: number;
}

export interface DriverResult {
  messages: MessageRecords;
  attempts: AttemptRecords;
  /** CPU time this process used while the users ran, ms (user + system), and the wall time. */
  cpuMs: number;
  wallMs: number;
  /**
   * How late this process's own event loop ran while the users ran (ms, p50 / p99 / max): a late client reads
   * Accepted and replies late, and that counts in every latency it records.
   */
  loopDelayMs?: LoopDelay;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

export async function runDriver(plan: DriverPlan, onProgress?: (p: Progress) => void, progressEveryMs = 1000): Promise<DriverResult> {
  const messages = emptyMessages();
  const attempts = emptyAttempts();
  const progress = emptyProgress();
  progress.users = plan.users.length;
  const payloads = new Payloads();
  const channels = new Channels(plan.grpc, plan.channelsPerEndpoint);
  await channels.warm().catch(() => undefined); // a dead endpoint shows up as failed attempts
  const kindIndex = new Map(KINDS.map((k, i) => [k, i]));
  const cpu0 = process.cpuUsage();
  const wall0 = now();
  const loop = monitorLoop();
  const timer = onProgress ? setInterval(() => onProgress({ ...progress }), progressEveryMs) : undefined;
  const startOf = (u: number) => plan.t0 + (plan.rampPerSec > 0 && Number.isFinite(plan.rampPerSec) ? (u * 1000) / plan.rampPerSec : 0);

  const runUser = async (u: number): Promise<void> => {
    await sleep(startOf(u) - Date.now());
    const clientId = `${plan.clientIdPrefix}-${u}`;
    while (Date.now() < plan.sendUntil) {
      const o = await openChat(channels.pick(u), clientId, plan.timeZone);
      progress.attempts++;
      addAttempt(attempts, u, o.start, o.end, o.ok ? 'OK' : o.code);
      if (!o.ok) {
        progress.refused++;
        const wait = (o.retryAfterMs ?? plan.defaultRetryMs) * (1 + Math.random() * 0.1);
        await sleep(Math.min(wait, plan.sendUntil - Date.now()));
        continue;
      }
      progress.connected++;
      const ended = await session(o.call);
      progress.connected--;
      if (ended === 'done') return;
      // The stream broke before the end: connect again (the loop re-checks the time).
    }
  };

  /** One admitted stream: sends until `sendUntil`, drains, half-closes. 'done', or 'broken' if the stream died early. */
  const session = (call: ChatCall): Promise<'done' | 'broken'> =>
    new Promise((resolve) => {
      const byCmid = new Map<string, number>();
      const byMessageId = new Map<string, number>();
      let outstanding = 0;
      let n = 0;
      let finished = false;
      let thinkTimer: NodeJS.Timeout | undefined;
      let pauseTimer: NodeJS.Timeout | undefined;
      let drainTimer: NodeJS.Timeout | undefined;
      let stopTimer: NodeJS.Timeout | undefined;

      const send = () => {
        const kind = plan.mix[Math.floor(Math.random() * plan.mix.length)]!;
        const cmid = `m${n++}`;
        const idx = addMessage(messages, kindIndex.get(kind)!, now());
        byCmid.set(cmid, idx);
        outstanding++;
        progress.sent++;
        call.write({ frame: { $case: 'message', message: { clientMessageId: cmid, content: payloads.content(kind) } } });
      };
      const settle = (idx: number, error: string, processingMs: number) => {
        if (messages.response[idx] !== -1 || messages.error[idx] !== '') return;
        messages.response[idx] = now();
        messages.processingMs[idx] = processingMs;
        messages.error[idx] = error;
        outstanding--;
        if (error) progress.failed++;
        else progress.answered++;
      };
      const allSent = () => plan.messagesPerUser !== undefined && n >= plan.messagesPerUser;
      const canSend = () => !finished && Date.now() < plan.sendUntil && !allSent();
      /** window: the next message, at once or after the pause. */
      const sendNext = () => {
        if (!plan.pauseMs) return send();
        pauseTimer = setTimeout(() => canSend() && send(), plan.pauseMs);
      };
      const schedulePaced = () => {
        const [lo, hi] = plan.thinkMs;
        thinkTimer = setTimeout(() => {
          if (!canSend()) return;
          send();
          schedulePaced();
        }, lo + Math.random() * (hi - lo));
      };
      const finish = (how: 'done' | 'broken', code?: string) => {
        if (finished) return;
        finished = true;
        clearTimeout(thinkTimer);
        clearTimeout(pauseTimer);
        clearTimeout(drainTimer);
        clearTimeout(stopTimer);
        for (const idx of byCmid.values()) if (messages.response[idx] === -1 && messages.error[idx] === '') settle(idx, code ?? 'NO_REPLY', -1);
        resolve(how);
      };
      const maybeEnd = () => {
        if (finished || (Date.now() < plan.sendUntil && !allSent()) || outstanding > 0) return;
        // Everything answered after the sending period (or the last message): half-close; the server ends the stream with OK.
        call.end();
        stopTimer ??= setTimeout(() => {
          call.cancel();
          finish('done');
        }, 5000);
      };

      call.on('data', (f: ServerFrame) => {
        const fr = f.frame;
        switch (fr?.$case) {
          case 'accepted': {
            const idx = byCmid.get(fr.accepted.clientMessageId);
            if (idx === undefined) return;
            if (messages.accepted[idx] === -1) messages.accepted[idx] = now();
            byMessageId.set(fr.accepted.messageId, idx);
            return;
          }
          case 'response': {
            const idx = byMessageId.get(fr.response.inReplyTo);
            if (idx === undefined) return;
            settle(idx, '', fr.response.processingMs);
            if (plan.mode === 'window' && canSend()) sendNext();
            maybeEnd();
            return;
          }
          case 'error': {
            const idx = byMessageId.get(fr.error.inReplyTo) ?? byCmid.get(fr.error.inReplyTo);
            if (idx === undefined) return;
            settle(idx, fr.error.code || 'CHAT_ERROR', -1);
            if (plan.mode === 'window' && canSend()) sendNext();
            maybeEnd();
            return;
          }
          default:
            return;
        }
      });
      call.on('status', (s) => {
        const early = Date.now() < plan.sendUntil && !allSent();
        finish(early ? 'broken' : 'done', `STREAM_${statusName(s.code)}`);
      });
      call.resume();

      // Start sending.
      if (plan.mode === 'paced') {
        send();
        schedulePaced();
      } else {
        for (let i = 0; i < plan.window && canSend(); i++) sendNext();
      }
      // After the sending period: drain, then half-close (or give up on what is missing).
      const untilEnd = plan.sendUntil - Date.now();
      drainTimer = setTimeout(() => {
        maybeEnd();
        drainTimer = setTimeout(() => {
          call.end();
          call.cancel();
          finish('done', 'NO_REPLY');
        }, plan.drainMs);
      }, Math.max(0, untilEnd) + 5);
    });

  try {
    await Promise.all(plan.users.map((u) => runUser(u)));
  } finally {
    clearInterval(timer);
    loop.disable();
    channels.close();
  }
  const cpu = process.cpuUsage(cpu0);
  onProgress?.({ ...progress });
  const loopDelayMs = lateness(loop);
  return { messages, attempts, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: now() - wall0, loopDelayMs };
}

function statusName(code: number): string {
  return status[code] ?? String(code);
}
