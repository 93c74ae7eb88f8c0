import { EventEmitter } from 'node:events';
import { status } from '@grpc/grpc-js';
import { Outbound, type WritableCall } from './outbound';

/** A call whose transport takes `room` frames, then waits for drain(). */
class FakeCall extends EventEmitter {
  written: unknown[] = [];
  cancelled = false;
  room = 0;
  ended: unknown[] = [];
  write(f: unknown): boolean {
    this.written.push(f);
    return this.room-- > 0;
  }
  end(): void {
    this.ended.push('OK');
  }
  drain(room: number): void {
    this.room = room;
    this.emit('drain');
  }
}

const frame = (n: number) => ({ frame: { $case: 'pong' as const, pong: { nonce: n, serverTime: undefined } } });

describe('Outbound flow control', () => {
  afterEach(() => jest.useRealTimers());

  it('given a client behind, when the backlog crosses high water, then pressure on; when it drains to low water, then off; nothing is dropped', () => {
    const call = new FakeCall();
    const pressure: boolean[] = [];
    const out = new Outbound(call as unknown as WritableCall, { onStalled: () => undefined, onPressure: (h) => pressure.push(h) }, { highWater: 4, lowWater: 1, stallMs: 60_000 });
    for (let i = 0; i < 10; i++) out.write(frame(i));
    expect(out.backlog).toBe(9);
    expect(pressure).toEqual([true]);
    call.drain(100);
    expect(out.backlog).toBe(0);
    expect(pressure).toEqual([true, false]);
    expect(call.written).toHaveLength(10);
  });

  it('given a client that takes nothing for stallMs, then it is cut off with RESOURCE_EXHAUSTED saying so', () => {
    jest.useFakeTimers();
    const call = new FakeCall();
    const errors: { code: number; details: string }[] = [];
    call.on('error', (e) => errors.push(e));
    const stalled: string[] = [];
    const out = new Outbound(call as unknown as WritableCall, { onStalled: (err) => stalled.push(err.message) }, { highWater: 4, lowWater: 1, stallMs: 1_000 });
    out.write(frame(1));
    out.write(frame(2));
    jest.advanceTimersByTime(999);
    expect(stalled).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(stalled[0]).toMatch(/read nothing for 1000 ms/);
    expect(errors).toEqual([expect.objectContaining({ code: status.RESOURCE_EXHAUSTED })]);
  });

  it('given a client that keeps reading, then the stall timer restarts at each drain', () => {
    jest.useFakeTimers();
    const call = new FakeCall();
    const errors: unknown[] = [];
    call.on('error', (e) => errors.push(e));
    const stalled: string[] = [];
    const out = new Outbound(call as unknown as WritableCall, { onStalled: (err) => stalled.push(err.message) }, { highWater: 4, lowWater: 1, stallMs: 1_000 });
    for (let round = 0; round < 5; round++) {
      out.write(frame(round));
      out.write(frame(round));
      jest.advanceTimersByTime(900);
      call.drain(0);
    }
    expect(stalled).toEqual([]);
    expect(errors).toEqual([]);
    expect(call.ended).toEqual([]);
  });
});
