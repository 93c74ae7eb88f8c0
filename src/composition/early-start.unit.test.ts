import type { Event } from '../gen/chatflow/v1/events';
import { EARLY_BUSY_ABOVE, LoopRoom, loopBusyShare } from './early-start';

describe('LoopRoom: the worker begins on messages early only while the event loop has room (issue 15)', () => {
  const event = { eventId: 'e1' } as Event;
  function room(shares: number[]) {
    const told: string[] = [];
    const r = new LoopRoom({ begin: (e) => told.push(`begin ${e.eventId}`), callOff: (id) => told.push(`callOff ${id}`) }, () => shares.shift() ?? 0);
    return { r, told };
  }

  it('begins at once, before any reading; stops beginning once a reading finds the loop busier than the bound, and begins again below it', () => {
    const { r, told } = room([EARLY_BUSY_ABOVE + 0.01, EARLY_BUSY_ABOVE]);
    r.begin(event);
    r.sample();
    r.begin(event);
    r.sample();
    r.begin(event);
    expect(told).toEqual(['begin e1', 'begin e1']);
  });

  it('calls off whatever the loop', () => {
    const { r, told } = room([1]);
    r.sample();
    r.callOff('m1');
    expect(told).toEqual(['callOff m1']);
  });

  it("reads this loop's busy share since the last reading: a loop spinning for the whole span is busy, one waiting on a timer is not", async () => {
    const share = loopBusyShare();
    for (const end = Date.now() + 60; Date.now() < end; );
    expect(share()).toBeGreaterThan(0.8);
    await new Promise((r) => setTimeout(r, 60));
    expect(share()).toBeLessThan(0.5);
  });
});
