import { codePointLength } from './code-points';
import { contentHash, decideText, storedContentHash } from './message-content';

describe('text rules', () => {
  it('counts an emoji (a surrogate pair) as one character', () => {
    expect(codePointLength('😀'.repeat(3))).toBe(3);
    expect(codePointLength('abc')).toBe(3);
    // A lone surrogate is still one character.
    expect(codePointLength('\ud83d')).toBe(1);
  });
  it('given 16,000 emoji and a 16,000 limit, then accepted; 16,001, then refused saying how many characters', () => {
    expect(decideText('😀'.repeat(16_000), 16_000)).toEqual({ ok: true });
    expect(decideText('😀'.repeat(16_001), 16_000)).toEqual({ ok: false, message: 'the text is 16001 characters; the limit is 16000' });
  });
  it('refuses an empty or blank text', () => {
    expect(decideText('  \n', 10)).toEqual({ ok: false, message: 'the text is empty' });
  });
});

describe('content hash', () => {
  it('is the same for the same content and differs otherwise', () => {
    expect(contentHash({ text: 'hi' })).toBe(contentHash({ text: 'hi' }));
    expect(contentHash({ text: 'hi' })).not.toBe(contentHash({ text: 'ho' }));
    expect(contentHash({ mediaKind: 'audio', sha256: 'ab' })).not.toBe(contentHash({ mediaKind: 'video', sha256: 'ab' }));
  });

  it('hashes content as every earlier version did (hashes are stored in read models)', () => {
    // Values computed with the original createHash().update() chain.
    expect(contentHash({ text: 'hi' })).toBe('UMPu-KYKnHRaEcXNKV-d3q');
    expect(contentHash({ text: 'Zoë 🙂 \ud800' })).toBe('wkfSylLFoUvq5GAANu7Npx');
    expect(contentHash({ mediaKind: 'audio', sha256: 'ab' })).toBe('2l_CfE5GKUVdJurG2AaFGJ');
  });

  it('is read from a stored message: a text from its text, a media message from its stored hash', () => {
    expect(storedContentHash({ text: 'hi' })).toBe(contentHash({ text: 'hi' }));
    // Projected before texts went unhashed: the stored value counts.
    expect(storedContentHash({ text: 'hi', contentHash: 'stored' })).toBe('stored');
    expect(storedContentHash({ media: { kind: 'audio' }, contentHash: 'm' })).toBe('m');
    // A media message projected before hashes were stored: nothing to compare (taken as the same message).
    expect(storedContentHash({ media: { kind: 'audio' } })).toBeUndefined();
    expect(storedContentHash({ media: { kind: 'audio' }, text: 'a transcript-less caption' })).toBeUndefined();
  });
});
