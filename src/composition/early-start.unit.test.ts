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
    r.callOff('m1', 'c1');
    expect(told).toEqual(['callOff m1']);
  });

  it("reads the loop's busy share since the last reading, not since the start", () => {
    const readings = [
      { active: 100, idle: 900 },
      { active: 190, idle: 910 },
      { active: 200, idle: 1000 },
      { active: 200, idle: 1000 },
    ];
    const share = loopBusyShare(() => readings.shift()!);
    expect(share()).toBeCloseTo(0.9);
    expect(share()).toBeCloseTo(0.1);
    expect(share()).toBe(0);
  });

  it("reads this thread's own loop by default", () => {
    const share = loopBusyShare();
    for (const end = Date.now() + 20; Date.now() < end; );
    expect(share()).toBeGreaterThan(0);
  });
});
