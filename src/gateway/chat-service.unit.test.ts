import { EventEmitter } from 'node:events';
import { Metadata, status } from '@grpc/grpc-js';
import pino from 'pino';
import { loadConfig } from '../config/config';
import { createMetrics } from '../metrics';
import { ChatFlowError } from '../domain/errors';
import { leaseTiming } from '../domain/lease';
import { MemoryConnectionRegistry } from '../connections/memory';
import { ChatGateway } from './chat-service';
import type { GatewayDeps } from './deps';

/** A Chat stream as grpc-js hands it to the handler: whether its input is read shows in its `data` listeners. */
class FakeChatCall extends EventEmitter {
  readonly metadata = new Metadata();
  cancelled = false;
}

/** chatflow_admission_seconds: how many admissions were timed, by outcome. */
const admissionsTimed = async (deps: GatewayDeps) =>
  Object.fromEntries((await deps.metrics.admissionSeconds.get()).values.filter((v) => (v as { metricName?: string }).metricName?.endsWith('_count')).map((v) => [v.labels.outcome, v.value]));

describe('ChatGateway: a stream\'s input is read only once it is admitted', () => {
  it('given a Chat stream whose admission is still being decided, then none of its frames is read (each can be 17 MiB), and a refused one is never read', async () => {
    let decide!: (outcome: Error) => void;
    const deps = {
      config: loadConfig({}),
      gatewayId: 'gw-1',
      registry: { deadHolderMs: undefined },
      metrics: createMetrics(),
      clock: Date.now,
      steady: Date.now,
      leaseClock: Date.now,
      // Admission waits here first (the token's check), as it can wait later for the log, the registry or a replay.
      auth: { identify: () => new Promise((_, reject) => (decide = reject)) },
    } as unknown as GatewayDeps;
    const gateway = new ChatGateway(deps, pino({ level: 'silent' }));
    const call = new FakeChatCall();
    const refused = new Promise<{ code: number }>((r) => call.once('error', r));
    gateway.service.chat(call as never);
    await new Promise((r) => setImmediate(r));
    expect(call.listenerCount('data')).toBe(0);
    decide(new ChatFlowError('UNAUTHENTICATED', 'no token'));
    expect((await refused).code).toBe(status.UNAUTHENTICATED);
    expect(call.listenerCount('data')).toBe(0);
    expect(await admissionsTimed(deps)).toEqual({ UNAUTHENTICATED: 1 });
  });
});

describe('ChatGateway: a slot claimed too late to be safe is given back', () => {
  /**
   * One Chat call on a gateway (lease 1 s) whose registry answers a claim only after longer than the trust window,
   * with two of the gateway's renewals through meanwhile; `stampedWhenSent`: the claim is stamped when the
   * registry sent it (after that wait), else when the admission began. What the call got, and the registry.
   */
  const admitWithSlowClaim = async (stampedWhenSent: boolean) => {
    const config = loadConfig({ CHATFLOW_LEASE_MS: '1000' });
    const timing = leaseTiming(config.leaseMs);
    let now = 1_000_000;
    const registry = new MemoryConnectionRegistry();
    const renewals: (() => void)[] = [];
    const renew = registry.renew.bind(registry);
    registry.renew = async (...args) => {
      const renewed = await renew(...args);
      for (const done of renewals.splice(0)) done();
      return renewed;
    };
    const acquire = registry.acquire.bind(registry);
    registry.acquire = async (r) => {
      now += timing.trustMs + timing.sweepEveryMs;
      await new Promise<void>((resolve) => renewals.push(resolve));
      await new Promise<void>((resolve) => renewals.push(resolve));
      return acquire(stampedWhenSent ? { ...r, now } : r);
    };
    const bus = {
      serve: () => ({ unsubscribe: () => undefined }),
      subscribe: () => ({ unsubscribe: () => undefined }),
      onReconnect: () => ({ unsubscribe: () => undefined }),
      flush: async () => undefined,
    };
    const deps = {
      config,
      gatewayId: 'gw-1',
      registry,
      bus,
      log: { append: async (e: unknown) => ({ event: e, seq: 1 }) },
      metrics: createMetrics(),
      clock: () => now,
      steady: () => now,
      leaseClock: () => now,
      newId: () => 'e-1',
      auth: { identify: async () => 'alice' },
      readModelsSettled: async () => true,
    } as unknown as GatewayDeps;
    const gateway = new ChatGateway(deps, pino({ level: 'silent' }));
    gateway.start();
    try {
      let welcomed!: (frame: unknown) => void;
      const admitted = new Promise<unknown>((r) => (welcomed = r));
      const call = Object.assign(new FakeChatCall(), { write: (f: unknown) => (welcomed(f), true), end: () => undefined });
      call.metadata.set('x-timezone', 'UTC');
      const refused = new Promise<{ code: number; details: string }>((r) => call.once('error', r));
      gateway.service.chat(call as never);
      const outcome = await Promise.race([refused, admitted.then(() => 'admitted' as const)]);
      return { outcome, slots: await registry.count(), refusals: (await deps.metrics.admissionsRefused.get()).values, timed: await admissionsTimed(deps) };
    } finally {
      gateway.beginDrain();
    }
  };

  /*
   * The registry outage of 2026-11-27's CI: claims sent while the database was down waited in the driver and were
   * stored once it came back, stamped with the time they were sent. Until another gateway sees this one's heartbeat
   * renewed after such a claim, it judges the claim on its own expiry — already past — and its sweep frees it under a
   * live stream, and the client is admitted a second time elsewhere. This gateway's renewals worked again by then,
   * so it trusted its slots and kept the stream.
   */
  it('given renewals that work again, when a claim comes back more than the trust window after it was sent, then the client is told to retry and the slot is given back', async () => {
    const { outcome, slots, refusals, timed } = await admitWithSlowClaim(false);
    expect(outcome).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(/^the connection registry answered too late to keep your slot; retry in \d+ ms$/) });
    expect(slots).toBe(0);
    expect(refusals).toEqual([expect.objectContaining({ labels: { reason: 'registry_late' }, value: 1 })]);
    expect(timed).toEqual({ UNAVAILABLE: 1 });
  });

  it('given an admission that tried for longer than the trust window, when its last attempt\'s claim comes back in time, then the client is admitted (the claim is judged on its own stamp)', async () => {
    // Issue 15, the stack's scale run (2026-11-27): near a full house a few admissions took 5–8 s before their
    // claim was sent (lost races, reads of the slots, a wait for a write place); it came back at once, yet the
    // gateway judged it on the time the admission began and gave the slot back (registry_late). The registry
    // stamps a claim when it sends it (MongoConnectionRegistry.acquire), and that stamp is what another gateway judges.
    const { outcome, slots, refusals, timed } = await admitWithSlowClaim(true);
    expect(outcome).toBe('admitted');
    expect(slots).toBe(1);
    expect(refusals).toEqual([]);
    expect(timed).toEqual({ admitted: 1 });
  });
});

describe('ChatGateway: a stream taken over on another gateway (x-replaces-session)', () => {
  it('given a client with messages unanswered on gateway 1, when it takes its stream over on gateway 2, then gateway 2 counts them among its unanswered messages', async () => {
    const { MemoryBus } = await import('../bus/memory');
    const config = loadConfig({ CHATFLOW_UNANSWERED_PER_CLIENT: '2' });
    const registry = new MemoryConnectionRegistry();
    const bus = new MemoryBus();
    let seq = 0;
    const gatewayOn = (gatewayId: string) => {
      const deps = {
        config, gatewayId, registry, bus,
        log: { append: async (e: unknown) => ({ event: e, seq: ++seq }) },
        media: { put: async () => undefined },
        messages: { get: async () => null },
        metrics: createMetrics(),
        clock: Date.now,
        steady: Date.now,
        leaseClock: Date.now,
        newId: () => `e-${seq}`,
        auth: { identify: async () => 'alice' },
        readModelsSettled: async () => true,
      } as unknown as GatewayDeps;
      const g = new ChatGateway(deps, pino({ level: 'silent' }));
      g.start();
      return g;
    };
    /** A Chat call whose frames are kept, and whose input the gateway pauses and resumes. */
    const chatCall = (md: Record<string, string>) => {
      const frames: { frame?: { $case: string; welcome?: { sessionId: string } } }[] = [];
      const call = Object.assign(new FakeChatCall(), {
        paused: false,
        write: (f: (typeof frames)[number]) => (frames.push(f), true),
        end: () => undefined,
        pause: () => void (call.paused = true),
        resume: () => void (call.paused = false),
      });
      call.metadata.set('x-timezone', 'UTC');
      for (const [k, v] of Object.entries(md)) call.metadata.set(k, v);
      const ended = new Promise<{ code: number; details: string }>((r) => call.once('error', r));
      return { call, frames, ended };
    };
    const until = async (what: () => boolean) => {
      for (const end = Date.now() + 5_000; !what() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 5));
      expect(what()).toBe(true);
    };
    const [one, two] = [gatewayOn('gw-1'), gatewayOn('gw-2')];
    try {
      const first = chatCall({});
      one.service.chat(first.call as never);
      await until(() => first.frames.some((f) => f.frame?.$case === 'welcome'));
      const sessionId = first.frames[0].frame!.welcome!.sessionId;
      for (const id of ['m1', 'm2']) first.call.emit('data', { frame: { $case: 'message', message: { clientMessageId: id, content: { $case: 'text', text: id } } } });
      await until(() => first.frames.filter((f) => f.frame?.$case === 'accepted').length === 2);
      await until(() => first.call.paused); // two unanswered: the most one client may have

      const back = chatCall({ 'x-replaces-session': sessionId });
      two.service.chat(back.call as never);
      await until(() => back.frames.some((f) => f.frame?.$case === 'welcome'));
      expect((await first.ended).code).toBe(status.ALREADY_EXISTS);
      // Its two messages still unanswered: the new stream's input is held as the old one's was.
      await until(() => back.call.paused);
      back.call.emit('cancelled'); // its timers (the first-message deadline) end with it, not in a later suite
    } finally {
      one.beginDrain();
      two.beginDrain();
    }
  });
});
