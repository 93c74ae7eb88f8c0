import { decideDeadline, recordMessage } from './deadline';

describe('first-message deadline', () => {
  const connected = { connectedAt: 1000, firstMessageAt: null };
  it('given no message yet, when before the deadline, then pending with the time left', () => {
    expect(decideDeadline(connected, 1400, 1000)).toEqual({ type: 'Pending', remainingMs: 600 });
  });
  it('given no message, when the deadline is reached, then expired', () => {
    expect(decideDeadline(connected, 2000, 1000)).toEqual({ type: 'Expired', overdueMs: 0 });
    expect(decideDeadline(connected, 2500, 1000)).toEqual({ type: 'Expired', overdueMs: 500 });
  });
  it('given a message was sent, when any time passes, then satisfied', () => {
    const state = recordMessage(connected, 1500);
    expect(decideDeadline(state, 99_999, 1000)).toEqual({ type: 'Satisfied' });
  });
  it('given a first message, when another is recorded, then the first time is kept', () => {
    expect(recordMessage(recordMessage(connected, 1500), 1700).firstMessageAt).toBe(1500);
  });
});
