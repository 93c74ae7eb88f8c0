import { decideTimeZone } from './timezone';

describe('time-zone policy', () => {
  it.each(['Europe/Paris', 'America/Argentina/Buenos_Aires', 'UTC', 'Asia/Kolkata', 'Asia/Calcutta', 'Etc/GMT+5'])(
    'given the real zone %s, when connecting, then it is accepted',
    (zone) => expect(decideTimeZone(zone, [])).toEqual({ ok: true, timeZone: zone }),
  );
  it.each([undefined, '', '   '])('given a missing zone (%p), then INVALID_ARGUMENT', (zone) => {
    expect(decideTimeZone(zone, [])).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT', message: expect.stringMatching(/missing x-timezone/) });
  });
  it.each(['Mars/Olympus_Mons', 'Europe/Paris; DROP', '+01:00', 'GMT+1:00', 'x'.repeat(80)])('given the invalid zone %s, then INVALID_ARGUMENT', (zone) => {
    expect(decideTimeZone(zone, [])).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not an IANA time zone/) });
  });
  it('given a zone spelled in another case (Intl accepts it), then it is accepted under its own spelling; an alias stays the alias', () => {
    expect(decideTimeZone('europe/PARIS', [])).toEqual({ ok: true, timeZone: 'Europe/Paris' });
    expect(decideTimeZone('utc', [])).toEqual({ ok: true, timeZone: 'UTC' });
    expect(decideTimeZone('Asia/Kolkata', [])).toEqual({ ok: true, timeZone: 'Asia/Kolkata' });
  });
  it('given an allow-list, when a real zone outside it connects, then PERMISSION_DENIED', () => {
    expect(decideTimeZone('Asia/Tokyo', ['Europe/Paris', 'UTC'])).toMatchObject({ ok: false, code: 'PERMISSION_DENIED' });
  });
  it('given an allow-list, when a listed zone or its alias connects, then accepted', () => {
    expect(decideTimeZone('Europe/Paris', ['Europe/Paris'])).toEqual({ ok: true, timeZone: 'Europe/Paris' });
    expect(decideTimeZone('Asia/Calcutta', ['Asia/Kolkata'])).toEqual({ ok: true, timeZone: 'Asia/Calcutta' });
  });
  it('given an allow-list, when an invalid zone connects, then INVALID_ARGUMENT wins over PERMISSION_DENIED', () => {
    expect(decideTimeZone('Nowhere/Land', ['UTC'])).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
  });
});
