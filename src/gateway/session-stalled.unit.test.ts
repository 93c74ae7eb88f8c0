import { EventEmitter } from 'node:events';
import pino from 'pino';
import { loadConfig } from '../config/config';
import { createMetrics } from '../metrics';
import { DisconnectReason, type Event } from '../gen/chatflow/v1/events';
import type { ServerFrame } from '../gen/chatflow/v1/chat';
import type { SessionDeps } from './deps';
import { Outbound, DEFAULT_FLOW, type WritableCall } from './outbound';
import { GatewaySession } from './session';

/*
 * Issue 10's careless client during a resume's second replay pass: the read
 * models were behind at the resume, so the replies are replayed again once
 * they catch up (replayWhenSettled), hundreds of them, to a client that never
 * reads. Expected: the server holds a bounded backlog for it (pages wait for
 * the client), cuts it off as a stalled client (RESOURCE_EXHAUSTED) after
 * CHATFLOW_SLOW_CLIENT_TIMEOUT_MS, frees its slot and reads no further page;
 * a client that reads, resuming meanwhile or later, gets every reply.
 */

const REPLIES = 600; // more than two replay pages
const TRANSPORT_TAKES = 16; // frames the transport buffers before write() says "wait for drain"
const STALL_MS = 200;

/** A stream whose client reads (every write taken) or never does (the transport fills, no 'drain' ever). */
class FakeCall extends EventEmitter {
  written: ServerFrame[] = [];
  ended?: { code: number; details: string };
  cancelled = false;
  constructor(private readonly reads: boolean) {
    super();
    this.on('error', (s: { code: number; details: string }) => (this.ended = s));
  }
  write(f: ServerFrame): boolean {
    this.written.push(f);
    return this.reads || this.written.length < TRANSPORT_TAKES;
  }
  end(): void {
    this.ended = { code: 0, details: '' };
  }
}

/** An Outbound that notes the largest backlog it ever held (what the server keeps in memory for its client). */
class WatchedOutbound extends Outbound {
  peak = 0;
  override write(frame: ServerFrame): void {
    super.write(frame);
    this.peak = Math.max(this.peak, this.backlog);
  }
}

const doc = (n: number) => ({ _id: `r${n}`, conversationId: 'c1', author: 'bot', inReplyTo: `m${n}`, seq: 10 + n, time: Date.now(), text: `reply ${n}` });
const responses = (call: FakeCall) => call.written.flatMap((f) => (f.frame?.$case === 'response' ? [f.frame.response.inReplyTo] : []));

function world() {
  // The read model has one reply when a resume first looks, all of them from the second look on.
  let projected = [doc(1)];
  let looks = 0;
  /** The read-model pages each session read, and how many of them after it had closed. */
  const finds: string[] = [];
  const findsAfterClose: string[] = [];
  const released: string[] = [];
  const appended: Event[] = [];
  const deps = {
    config: loadConfig({ CHATFLOW_READ_YOUR_WRITES_MS: '20' }),
    gatewayId: 'gw-1',
    releaseSlot: async (id: string) => void released.push(id),
    metrics: createMetrics(),
    clock: Date.now,
    steady: Date.now,
    leaseClock: Date.now,
    newId: () => `e-${appended.length}`,
    log: { append: async (e: Event) => (appended.push(e), { event: e, seq: appended.length }) },
    messages: {
      find: async ({ range }: { range: { gt: number } }) => projected.filter((d) => d.seq > range.gt).slice(0, 256),
      get: async () => null,
    },
    readModelsSettled: async () => {
      await new Promise((r) => setTimeout(r, 5));
      if (looks++ === 0) return false;
      projected = Array.from({ length: REPLIES }, (_, i) => doc(i + 1));
      return true;
    },
    frames: {
      replyFrame: async (u: { inReplyTo: string; update: { $case: string; ready: { seq: number } } }) => ({ frame: { $case: 'response', response: { inReplyTo: u.inReplyTo, seq: u.update.ready.seq } } }),
    },
  } as unknown as SessionDeps;
  const closed: string[] = [];
  const open = async (sessionId: string, reads: boolean) => {
    const call = new FakeCall(reads);
    let out!: WatchedOutbound;
    const session: GatewaySession = new GatewaySession(
      { sessionId, clientId: `client-${sessionId}`, conversationId: 'c1', timeZone: 'UTC', admittedAt: Date.now() },
      { ...deps, messages: { ...deps.messages, find: (q: { range: { gt: number } }) => (finds.push(sessionId), closed.includes(sessionId) && findsAfterClose.push(sessionId), deps.messages.find(q as never)) } } as SessionDeps,
      // As the gateway builds it (chat-service.ts): a stalled client closes its session.
      (out = new WatchedOutbound(call as unknown as WritableCall, {
        onStalled: (err) => void session.close(DisconnectReason.DISCONNECT_REASON_ERROR, err, 'client read nothing'),
        onPressure: (high) => session.onOutboundPressure(high),
      }, { ...DEFAULT_FLOW, stallMs: STALL_MS })),
      pino({ level: 'silent' }),
      (s) => closed.push(s.id),
    );
    await session.start({ frame: { $case: 'welcome' } } as never, 10, { subscribe: () => ({ unsubscribe: () => undefined }) as never, flush: async () => undefined });
    return { session, call, out };
  };
  return { open, finds, findsAfterClose, released, closed, appended };
}

async function until(what: string, f: () => boolean, timeoutMs = 5_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !f(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
  }
}

describe('GatewaySession: a client that never reads during a resume\'s second replay pass', () => {
  it('given hundreds of replies replayed once the read models catch up, when the client reads none, then the backlog stays bounded, the session is cut off as stalled with its slot freed, and a reading client gets them all', async () => {
    const w = world();
    const stalled = await w.open('stalled', false);
    // The second pass runs: its first page reaches the stream, the client takes nothing.
    await until('the second pass to write', () => stalled.call.written.length >= TRANSPORT_TAKES);
    // A client that reads, resuming meanwhile from the same place, is served in full.
    const reader = await w.open('reader', true);
    await until('every reply on the reading stream', () => responses(reader.call).length === REPLIES);

    // Cut off as a stalled client: RESOURCE_EXHAUSTED, its slot released, ClientDisconnected recorded.
    await until('the stalled session to close', () => w.closed.includes('stalled') && w.released.includes('stalled'));
    expect(stalled.call.ended).toMatchObject({ code: 8, details: expect.stringMatching(/read nothing.*x-resume-after/) });
    await until('the disconnect recorded', () => w.appended.some((e) => e.payload?.$case === 'clientDisconnected' && e.sessionId === 'stalled'));
    expect(w.released.filter((id) => id === 'stalled')).toEqual(['stalled']);
    // What the server kept for it: at most a page above the low-water mark, never the whole replay.
    expect(stalled.out.peak).toBeLessThanOrEqual(DEFAULT_FLOW.lowWater + 256);
    expect(stalled.out.backlog).toBe(0); // dropped with the stream
    // Its replay read no page after it was cut off (each page costs a read-model query and a frame per reply).
    await new Promise((r) => setTimeout(r, 100));
    expect(w.findsAfterClose).toEqual([]);
    expect(w.finds.filter((id) => id === 'stalled').length).toBeLessThanOrEqual(3); // the first pass's page, the second pass's first two

    // Nothing was lost: the same client resuming again, reading this time, gets every reply once.
    const back = await w.open('back', true);
    await until('every reply after the resume', () => responses(back.call).length >= REPLIES);
    expect(responses(back.call)).toEqual(Array.from({ length: REPLIES }, (_, i) => `m${i + 1}`));
    expect(reader.call.ended).toBeUndefined();
    await reader.session.close(DisconnectReason.DISCONNECT_REASON_CLIENT, null);
    await back.session.close(DisconnectReason.DISCONNECT_REASON_CLIENT, null);
  });
});
