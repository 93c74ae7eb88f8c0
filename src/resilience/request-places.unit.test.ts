import { loadConfig } from '../config/config';
import { callPlaces, sendPlaces, RequestPlaces, type Place } from './request-places';

describe('RequestPlaces: requests that carry uploads, read a few at a time', () => {
  const opts = { atOnce: 3, perClient: 2, waitMs: 1_000, maxWaiting: 2, retryAfterMs: 500, busy: 'too many uploads are being received; send again' };
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());
  const state = (place: Place) => {
    let s = 'waiting';
    (place.wait ?? Promise.resolve()).then(() => (s = 'granted'), (e: { kind: string; message: string }) => (s = `${e.kind}: ${e.message}`));
    return () => s;
  };
  const settle = () => jest.advanceTimersByTimeAsync(0);

  it('given places free, then a request gets one at once, and no client more than its share', async () => {
    const places = new RequestPlaces(opts);
    const [a1, a2, a3, b1] = ['a', 'a', 'a', 'b'].map((c) => state(places.take(c)));
    await settle();
    expect([a1!(), a2!(), a3!(), b1!()]).toEqual(['granted', 'granted', 'waiting', 'granted']);
    expect(places.inUse).toBe(3);
  });

  it('given every place held, when one is released, then the first waiting request that may take it gets it (a client at its share is skipped)', async () => {
    const places = new RequestPlaces(opts);
    const a = places.take('a');
    places.take('a');
    const b = places.take('b');
    expect([a.wait, b.wait]).toEqual([undefined, undefined]); // held at once
    const a3 = state(places.take('a'));
    const c1 = state(places.take('c'));
    b.end();
    await settle();
    expect([a3(), c1()]).toEqual(['waiting', 'granted']);
    a.end();
    a.end(); // a release is counted once
    await settle();
    expect(a3()).toBe('granted');
    expect(places.inUse).toBe(3);
  });

  it('given a request that waited waitMs, then it is refused RESOURCE_EXHAUSTED with when to send again, and leaves the queue', async () => {
    const places = new RequestPlaces(opts);
    for (const c of ['a', 'b', 'c']) places.take(c);
    const d = state(places.take('d'));
    await jest.advanceTimersByTimeAsync(999);
    expect(d()).toBe('waiting');
    await jest.advanceTimersByTimeAsync(1);
    expect(d()).toBe('RESOURCE_EXHAUSTED: too many uploads are being received; send again in 500 ms');
    const e = state(places.take('e'));
    const f = state(places.take('f'));
    await settle();
    expect([e(), f()]).toEqual(['waiting', 'waiting']);
  });

  it('given maxWaiting requests waiting, then the next is refused at once', async () => {
    const places = new RequestPlaces(opts);
    for (const c of ['a', 'b', 'c']) places.take(c);
    const waiting = ['d', 'e'].map((c) => state(places.take(c)));
    const refused = places.take('f').wait!.catch((e: unknown) => e);
    await settle();
    expect(waiting.map((w) => w())).toEqual(['waiting', 'waiting']);
    expect(await refused).toMatchObject({ kind: 'RESOURCE_EXHAUSTED', trailers: { 'retry-after-ms': '500' } });
  });

  it('given a request that ends while it waits, then it leaves the queue, and one that ends while it holds a place gives it back', async () => {
    const places = new RequestPlaces(opts);
    const held = ['a', 'b', 'c'].map((c) => places.take(c));
    const gone = places.take('d');
    const d = state(gone);
    const e = state(places.take('e'));
    gone.end();
    gone.end(); // leaves the queue once
    const f = state(places.take('f'));
    await settle();
    expect([d(), e(), f()]).toEqual(['granted', 'waiting', 'waiting']);
    held[0]!.end();
    await settle();
    expect([e(), f()]).toEqual(['granted', 'waiting']);
    expect(places.inUse).toBe(3);
  });

  it('given a request refused after waiting, then its end changes nothing (another\'s place is not given back)', async () => {
    const places = new RequestPlaces(opts);
    for (const c of ['a', 'b', 'c']) places.take(c);
    const late = places.take('d');
    const e = state(places.take('e'));
    await jest.advanceTimersByTimeAsync(1_000);
    await expect(late.wait).rejects.toMatchObject({ kind: 'RESOURCE_EXHAUSTED' });
    const f = state(places.take('f'));
    late.end(); // the queue holds f now: it stays there
    await settle();
    expect([e(), f()]).toEqual([expect.stringMatching(/^RESOURCE_EXHAUSTED/), 'waiting']);
    expect(places.inUse).toBe(3);
  });

  describe("a process's places for Sends (sendPlaces)", () => {
    /** How many Sends wait (after CHATFLOW_SENDS_AT_ONCE read) before the next is refused at once. */
    async function waitingBound(env: Record<string, string>): Promise<number> {
      const places = sendPlaces(loadConfig(env), () => undefined);
      let waiting = 0;
      for (let i = 0; ; i++) {
        const s = state(places.take(`client-${i}`));
        await settle();
        if (s() === 'waiting') waiting++;
        else if (s() !== 'granted') return waiting;
      }
    }

    it('given the gateway\'s receive window, then the Sends that wait unread hold at most 64 MiB of it together (each holds its stream\'s window)', async () => {
      expect(await waitingBound({ CHATFLOW_GRPC_WINDOW_BYTES: String(1024 * 1024) })).toBe(64);
      expect(await waitingBound({ CHATFLOW_GRPC_WINDOW_BYTES: String(256 * 1024) })).toBe(256);
      expect(await waitingBound({ CHATFLOW_GRPC_WINDOW_BYTES: '65535' })).toBe(1_000);
      expect(await waitingBound({ CHATFLOW_GRPC_WINDOW_BYTES: String(2 ** 31 - 1) })).toBe(1);
    });
  });

  describe("a process's places for calls (callPlaces)", () => {
    it('given CHATFLOW_CALLS_AT_ONCE and CHATFLOW_CALLS_PER_CLIENT, then a caller holds its share, all callers the whole, as many wait, and the one past them is told calls are busy', async () => {
      const places = callPlaces(loadConfig({ CHATFLOW_CALLS_AT_ONCE: '4', CHATFLOW_CALLS_PER_CLIENT: '2' }), () => undefined);
      const mine = [0, 1, 2].map(() => state(places.take('address 127.0.0.1')));
      const others = ['b', 'c', 'd', 'e', 'f'].map((c) => state(places.take(c)));
      await settle();
      expect(mine.map((s) => s())).toEqual(['granted', 'granted', 'waiting']);
      expect(others.map((s) => s())).toEqual(['granted', 'granted', 'waiting', 'waiting', 'waiting']);
      // Four wait (as many as may hold a place): the next is refused at once.
      const past = state(places.take('g'));
      await settle();
      expect(past()).toBe('RESOURCE_EXHAUSTED: too many calls are open; call again in 2000 ms');
      // A waiting call is refused after 1 s.
      await jest.advanceTimersByTimeAsync(1_000);
      expect(mine[2]!()).toBe('RESOURCE_EXHAUSTED: too many calls are open; call again in 2000 ms');
    });
  });
});
