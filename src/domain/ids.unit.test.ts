import { echoId, messageIdFor, responseIdFor } from './ids';

describe('message ids', () => {
  it('given the same client, conversation and key, then the same id (a resend is the same message)', () => {
    expect(messageIdFor('alice', 'c1', 'k1')).toBe(messageIdFor('alice', 'c1', 'k1'));
  });
  it('given another client, conversation or key, then another id', () => {
    expect(messageIdFor('alice', 'c1', 'k1')).not.toBe(messageIdFor('bob', 'c1', 'k1'));
    expect(messageIdFor('alice', 'c1', 'k1')).not.toBe(messageIdFor('alice', 'c2', 'k1'));
    expect(messageIdFor('alice', 'c1', 'k1')).not.toBe(messageIdFor('alice', 'c1', 'k2'));
    // The separators keep ("ab","c") and ("a","bc") apart.
    expect(messageIdFor('ab', 'c', 'k')).not.toBe(messageIdFor('a', 'bc', 'k'));
    expect(messageIdFor('a', 'bc', 'k')).not.toBe(messageIdFor('a', 'b', 'ck'));
  });
  it('derives the response id from the message id', () => {
    const m = messageIdFor('alice', 'c1', 'k1');
    expect(responseIdFor(m)).toBe(`r_${m.slice(2)}`);
  });
  it('echoes a valid id whole and caps a longer one', () => {
    expect(echoId('k1')).toBe('k1');
    expect(echoId('x'.repeat(1 << 20))).toBe(`${'x'.repeat(128)}…`);
  });

  it('derives the same message ids as every earlier version (they are stored in logs and read models)', () => {
    // Values computed with the original createHash().update() chain.
    expect(messageIdFor('alice', 'c_1', 'k1')).toBe('m_WxQ0NNb44wEHY-IDB_MtOw');
    expect(messageIdFor('Zoë 🙂', 'c_2', '\ud800x')).toBe('m_cg4UZ-XHP25GXH3O9d1z7A');
  });
});
