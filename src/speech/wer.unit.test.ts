import { wordErrorRate } from './wer';

describe('wordErrorRate', () => {
  it('is 0 for the same words whatever the case and punctuation', () => {
    expect(wordErrorRate('What time is it in Tokyo?', 'what time is it in tokyo')).toBe(0);
  });
  it('counts substitutions, deletions and insertions against the reference length', () => {
    expect(wordErrorRate('a b c d', 'a x c d')).toBe(0.25);
    expect(wordErrorRate('a b c d', 'a c d')).toBe(0.25);
    expect(wordErrorRate('a b c d', 'a b c d e f')).toBe(0.5);
    expect(wordErrorRate('a b', '')).toBe(1);
  });
});
