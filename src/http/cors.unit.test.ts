import { originAllowed, parseOrigins } from './cors';

describe('CHATFLOW_WEB_ORIGINS', () => {
  const loopback = parseOrigins('http://localhost:*, http://127.0.0.1:*, http://[::1]:*, https://localhost:*');

  it.each([
    ['http://localhost:5173', true],
    ['http://localhost', true],
    ['http://127.0.0.1:3000', true],
    ['http://[::1]:8080', true],
    ['https://localhost:8443', true],
    ['https://127.0.0.1:8443', false],
    ['http://localhost.evil.example:5173', false],
    ['http://evil.example', false],
    ['null', false],
    ['http://localhost:5173/path', false],
    ['', false],
  ])('loopback pages: %s → %s', (origin, allowed) => {
    expect(originAllowed(loopback, origin)).toBe(allowed);
  });

  it('matches an exact origin (a rule without a port means the scheme\'s default)', () => {
    const rules = parseOrigins('https://app.example.com');
    expect(originAllowed(rules, 'https://app.example.com')).toBe(true);
    expect(originAllowed(rules, 'https://app.example.com:8443')).toBe(false);
    expect(originAllowed(rules, 'http://app.example.com')).toBe(false);
    expect(originAllowed(rules, 'https://sub.app.example.com')).toBe(false);
  });

  it('allows any origin with *, none with none', () => {
    expect(originAllowed(parseOrigins('*'), 'https://anything.example')).toBe(true);
    expect(originAllowed(parseOrigins('none'), 'http://localhost:5173')).toBe(false);
  });

  it.each(['localhost:5173', 'ftp://x.example', 'https://app.example.com/', 'https://*.example.com', 'http://h:99999x'])('refuses %s, saying what an origin is', (spec) => {
    expect(() => parseOrigins(spec)).toThrow(/is not an origin: write scheme:\/\/host/);
  });
});
