import { decideSilence, notPinged, recordSend } from './silence';

describe('silence rule of a client that pings over Send', () => {
  it('given no ping yet, when any time passes or messages come, then it is not held to the rule', () => {
    expect(decideSilence(notPinged, 1e9, 1000)).toEqual({ type: 'NotHeld' });
    expect(decideSilence(recordSend(notPinged, 500, false), 1e9, 1000)).toEqual({ type: 'NotHeld' });
  });
  it('given a ping, when less than the limit passes, then heard, with the time left', () => {
    expect(decideSilence(recordSend(notPinged, 1000, true), 1400, 1000)).toEqual({ type: 'Heard', remainingMs: 600 });
  });
  it('given a ping, when the limit passes with no Send, then silent', () => {
    const pinged = recordSend(notPinged, 1000, true);
    expect(decideSilence(pinged, 2000, 1000)).toEqual({ type: 'Silent', silentMs: 1000 });
    expect(decideSilence(pinged, 2500, 1000)).toEqual({ type: 'Silent', silentMs: 1500 });
  });
  it('given a client held to the rule, when a message (not a ping) comes, then it counts as heard', () => {
    const later = recordSend(recordSend(notPinged, 1000, true), 1900, false);
    expect(decideSilence(later, 2500, 1000)).toEqual({ type: 'Heard', remainingMs: 400 });
  });
  it('given a limit of 0 (the rule off), when a client pinged long ago, then it is not held', () => {
    expect(decideSilence(recordSend(notPinged, 0, true), 1e9, 0)).toEqual({ type: 'NotHeld' });
  });
});
