import { messageIdFor, responseIdFor } from './ids';

describe('message ids', () => {
  it('given the same client and key, then the same id (a resend is the same message)', () => {
    expect(messageIdFor('alice', 'k1')).toBe(messageIdFor('alice', 'k1'));
  });
  it('given another client or key, then another id', () => {
    expect(messageIdFor('alice', 'k1')).not.toBe(messageIdFor('bob', 'k1'));
    expect(messageIdFor('alice', 'k1')).not.toBe(messageIdFor('alice', 'k2'));
    // The separator keeps ("ab","c") and ("a","bc") apart.
    expect(messageIdFor('ab', 'c')).not.toBe(messageIdFor('a', 'bc'));
  });
  it('derives the response id from the message id', () => {
    const m = messageIdFor('alice', 'k1');
    expect(responseIdFor(m)).toBe(`r_${m.slice(2)}`);
  });
});
