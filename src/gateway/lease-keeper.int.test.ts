import pino from 'pino';
import { MemoryConnectionRegistry } from '../connections/memory';
import type { ConnectionRegistry, Renewal } from '../connections/port';
import { leaseTiming } from '../domain/lease';
import { LeaseKeeper } from './lease-keeper';

/** A registry whose store can be taken away, as a database outage would. */
class FlakyRegistry extends MemoryConnectionRegistry {
  down = false;
  override async renew(gatewayId: string, now: number, leaseMs: number): Promise<Renewal> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:27017');
    return super.renew(gatewayId, now, leaseMs);
  }
  override async release(sessionId: string): Promise<boolean> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:27017');
    return super.release(sessionId);
  }
  override async releaseHolder(holder: string): Promise<number> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:27017');
    return super.releaseHolder(holder);
  }
}

describe('LeaseKeeper: no stream outlives its slot', () => {
  const leaseMs = 10_000;
  const t = leaseTiming(leaseMs);
  let now: number;
  let registry: FlakyRegistry;
  let open: Map<string, number>;
  let closed: { id: string; detail: string }[];
  let keeper: LeaseKeeper;

  const admit = async (registryOf: ConnectionRegistry, clientId: string, gatewayId = 'g1') => {
    const sessionId = `s-${clientId}`;
    const r = await registryOf.acquire({ clientId, sessionId, gatewayId, conversationId: `c-${clientId}`, now, leaseMs: t.ttlMs, maxClients: 50 });
    expect(r.ok).toBe(true);
    if (gatewayId === 'g1') open.set(sessionId, now);
    return sessionId;
  };

  beforeEach(() => {
    now = 1_000_000;
    registry = new FlakyRegistry();
    open = new Map();
    closed = [];
    keeper = new LeaseKeeper({
      registry, holder: 'g1', clock: () => now, timing: t, logger: pino({ level: 'silent' }),
      held: () => [...open].map(([sessionId, admittedAt]) => ({ sessionId, admittedAt, claimedAt: admittedAt })),
      heldCount: () => open.size,
      holds: (id) => open.has(id),
      close: (ids, detail) => {
        for (const id of ids) {
          open.delete(id);
          closed.push({ id, detail });
        }
      },
    });
  });

  it('keeps every session while renewals work', async () => {
    await admit(registry, 'a');
    await admit(registry, 'b');
    for (let i = 0; i < 20; i++) {
      now += t.renewEveryMs;
      await keeper.renew();
      keeper.check();
    }
    expect(closed).toEqual([]);
    expect(await registry.expire(now)).toEqual([]);
  });

  it('closes its sessions before their leases can be swept when the store is unreachable, and never earlier than the trust window', async () => {
    await admit(registry, 'a');
    await keeper.renew();
    const lastGood = now;
    registry.down = true;
    // Failing renewals and checks, one sweep period at a time, as the timers would run them.
    while (open.size > 0) {
      now += t.sweepEveryMs;
      await keeper.renew();
      keeper.check();
      if (open.size > 0) expect(now - lastGood).toBeLessThan(t.trustMs);
    }
    expect(closed).toEqual([{ id: 's-a', detail: expect.stringContaining('unreachable') }]);
    // Closed before any other gateway's sweep could free the slot and admit the client again.
    expect(now).toBeLessThan(lastGood + t.ttlMs);
    expect(now - lastGood).toBeGreaterThanOrEqual(t.trustMs);
  });

  it('keeps sessions through an outage shorter than the trust window', async () => {
    await admit(registry, 'a');
    await keeper.renew();
    registry.down = true;
    now += t.trustMs - t.sweepEveryMs;
    await keeper.renew();
    keeper.check();
    registry.down = false;
    now += 100;
    await keeper.renew();
    now += t.sweepEveryMs;
    keeper.check();
    expect(closed).toEqual([]);
  });

  it('closes a session whose lease another gateway swept (a long pause), and only that one', async () => {
    const a = await admit(registry, 'a');
    now += t.ttlMs + 1;
    // Another gateway's sweep took the expired slot, the client connected there.
    expect((await registry.expire(now)).map((l) => l.sessionId)).toEqual([a]);
    await admit(registry, 'a', 'g2');
    const b = await admit(registry, 'b');
    await keeper.renew();
    expect(closed).toEqual([{ id: a, detail: expect.stringContaining('slot lost') }]);
    expect([...open.keys()]).toEqual([b]);
  });

  it('gives back, once the store answers again, a slot it could not give back while the store was down (its holder lives on, so no sweep would)', async () => {
    const a = await admit(registry, 'a');
    registry.down = true;
    open.delete(a); // the session ended during the outage
    expect(await keeper.release(a)).toBe(false);
    expect(await registry.count()).toBe(1);
    registry.down = false;
    now += t.renewEveryMs;
    await keeper.renew();
    expect(await registry.count()).toBe(0);
    expect(closed).toEqual([]);
  });

  it('at shutdown gives back all of its slots in one go, those it owed included, and no other gateway\'s; a store that is down leaves them to lapse, without failing the shutdown', async () => {
    await admit(registry, 'a');
    const owedOne = await admit(registry, 'b');
    await admit(registry, 'c', 'g2');
    registry.down = true;
    expect(await keeper.release(owedOne)).toBe(false); // owed: the store could not take it
    await keeper.releaseAll(); // still down: logged, not thrown
    expect(await registry.count()).toBe(3);
    registry.down = false;
    await keeper.releaseAll();
    expect(await registry.count()).toBe(1);
    expect(await registry.release('s-a')).toBe(false);
    // Nothing owed is left to repay: the next good renewal releases nothing more.
    const releases = jest.spyOn(registry, 'release');
    await keeper.renew();
    expect(releases).not.toHaveBeenCalled();
  });

  it('sends one renewal at a time: a renewal asked for while one is out waits for its answer (a slow store gets no pile of them)', async () => {
    await admit(registry, 'a');
    let inFlight = 0;
    let most = 0;
    const gates: (() => void)[] = [];
    const renew = registry.renew.bind(registry);
    registry.renew = async (...args) => {
      most = Math.max(most, ++inFlight);
      await new Promise<void>((r) => gates.push(r));
      inFlight--;
      return renew(...args);
    };
    const renewals = [keeper.renew(), keeper.renew(), keeper.renew()];
    while (gates.length > 0 || inFlight > 0) {
      await new Promise((r) => setImmediate(r));
      gates.shift()?.();
    }
    await Promise.all(renewals);
    expect(most).toBe(1);
    expect(closed).toEqual([]);
  });
});
