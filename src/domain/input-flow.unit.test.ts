import fc from 'fast-check';
import { behind, mayTakeMessage, unansweredMessage, type InputLoad } from './input-flow';

const bounds = { appending: 64, uploadBytes: 32, unanswered: 50 };
const idle: InputLoad = { outboundHigh: false, appending: 0, uploadBytes: 0, unanswered: 0 };

describe('input flow rule', () => {
  it('given a client with nothing pending, then its input is read', () => {
    expect(behind(idle, bounds)).toBeUndefined();
  });

  it('given 49 unanswered messages, then the next is read; given 50, then not', () => {
    expect(behind({ ...idle, unanswered: 49 }, bounds)).toBeUndefined();
    expect(behind({ ...idle, unanswered: 50 }, bounds)).toBe('unanswered');
    expect(mayTakeMessage(49, 50)).toBe(true);
    expect(mayTakeMessage(50, 50)).toBe(false);
  });

  it('given a client that does not read its replies, then that is the reason, whatever else', () => {
    expect(behind({ outboundHigh: true, appending: 64, uploadBytes: 33, unanswered: 50 }, bounds)).toBe('outbound');
  });

  it('given 64 appends in flight or more upload bytes than the bound, then the input is not read', () => {
    expect(behind({ ...idle, appending: 64, unanswered: 64 }, bounds)).toBe('appends');
    expect(behind({ ...idle, uploadBytes: 32 }, bounds)).toBeUndefined();
    expect(behind({ ...idle, uploadBytes: 33 }, bounds)).toBe('uploads');
  });

  it('given any load, then the input is read exactly when no bound is reached', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.nat(200), fc.nat(100), fc.nat(300), (outboundHigh, appending, uploadBytes, unanswered) => {
        const load = { outboundHigh, appending, uploadBytes, unanswered };
        const within = !outboundHigh && appending < bounds.appending && uploadBytes <= bounds.uploadBytes && unanswered < bounds.unanswered;
        expect(behind(load, bounds) === undefined).toBe(within);
      }),
    );
  });

  it('tells a refused client how many wait, that this one was not taken, and when to try again', () => {
    expect(unansweredMessage(50, 2000)).toBe(
      '50 messages of yours wait for their answer, the most one client may have: this one was not taken; send it again (same client_message_id) once an answer came, or in 2000 ms',
    );
  });
});
