// kafkajs 2.2.4's RequestQueue, as patched by patches/kafkajs+2.2.4.patch
// (kafkajs#1556, #1704): once a response had come back, its check of pending
// requests rescheduled itself with a negative delay forever, a 1 ms timer
// loop on every broker connection of every process, idle or not (3–4 % of a
// core per idle ChatFlow process, loadtest/idle-cpu.ts).
/* eslint-disable @typescript-eslint/no-require-imports */
const RequestQueue = require('kafkajs/src/network/requestQueue') as new (opts: object) => Queue;

interface Queue {
  push(r: { entry: { correlationId: number; resolve(v: unknown): void; reject(e: Error): void }; expectResponse: boolean; sendRequest(): void; requestTimeout?: number }): void;
  fulfillRequest(r: { correlationId: number; payload: Buffer | null; size: number }): void;
  maybeThrottle(ms: number): void;
  destroy(): void;
  throttleCheckTimeoutId: unknown;
  pending: unknown[];
}

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function queue(maxInFlightRequests: number | null = null): Queue {
  return new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 'test', broker: 'b:9092', logger: silent });
}

function request(correlationId: number, sent: number[]) {
  return { entry: { correlationId, resolve: () => {}, reject: () => {} }, expectResponse: true, sendRequest: () => void sent.push(correlationId) };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kafkajs RequestQueue (patched)', () => {
  let q: Queue;
  afterEach(() => q.destroy());

  it('given a response came back and nothing waits, then no check stays scheduled (no timer loop)', async () => {
    q = queue();
    const sent: number[] = [];
    q.push(request(1, sent));
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    expect(q.throttleCheckTimeoutId === null).toBe(true); // (a timer object, dumped whole, on the unpatched queue)
    await tick(20);
    expect([sent, q.throttleCheckTimeoutId === null]).toEqual([[1], true]);
  });

  it('given more requests than may be in flight, then each waiting one is sent when one in flight is answered', async () => {
    q = queue(1);
    const sent: number[] = [];
    for (const id of [1, 2, 3]) q.push(request(id, sent));
    expect(sent).toEqual([1]);
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    expect(sent).toEqual([1, 2]);
    q.fulfillRequest({ correlationId: 2, payload: null, size: 0 });
    q.fulfillRequest({ correlationId: 3, payload: null, size: 0 });
    expect([sent, q.pending.length]).toEqual([[1, 2, 3], 0]);
    await tick(30); // the one check scheduled while requests waited runs, and schedules nothing more
    expect(q.throttleCheckTimeoutId === null).toBe(true);
  });

  it('given the broker throttles the client, then a request waits out the throttle and is sent by itself', async () => {
    q = queue();
    const sent: number[] = [];
    q.maybeThrottle(40);
    q.push(request(7, sent));
    expect(sent).toEqual([]);
    await tick(15);
    expect(sent).toEqual([]);
    for (let waited = 0; sent.length === 0 && waited < 1000; waited += 10) await tick(10);
    expect(sent).toEqual([7]);
    await tick(20);
    expect(q.throttleCheckTimeoutId === null).toBe(true); // (a timer object, dumped whole, on the unpatched queue)
  });
});
