import type { LeaseState } from './admission';
import { secondConnection, type HolderProbe } from './second-connection';

const holder: LeaseState = { clientId: 'a', sessionId: 's1', gatewayId: 'g1', conversationId: 'c', acquiredAt: 0, expiresAt: 7_000, renewedAt: 1_000 };
const told = (reason: 'duplicate' | 'holder-late', probe: HolderProbe, now = 2_000) => {
  const e = secondConnection({ clientId: 'a', reason, holder, now, probe, retrySoonMs: 1_200 });
  return { code: e.kind, retryAfterMs: e.trailers['retry-after-ms'], message: e.message };
};

describe('secondConnection', () => {
  it('says ALREADY_EXISTS only when the first connection is known to live: its gateway answered for it, or nothing was learnt and its heartbeat is recent', () => {
    expect(told('duplicate', 'answered')).toMatchObject({ code: 'ALREADY_EXISTS', retryAfterMs: undefined });
    expect(told('holder-late', 'answered')).toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(told('duplicate', 'unknown')).toMatchObject({ code: 'ALREADY_EXISTS' });
  });

  it('given a late heartbeat and no answer for the session, says UNAVAILABLE with retry-after-ms until the slot lapses', () => {
    for (const probe of ['no-responder', 'unknown'] as const) {
      const t = told('holder-late', probe, 4_500);
      expect(t).toMatchObject({ code: 'UNAVAILABLE', retryAfterMs: '2500' });
      expect(t.message).toContain('not been heard from for 3500 ms');
    }
  });

  it('given a recent heartbeat but nobody serving the session (it is closing), says UNAVAILABLE with a retry within one renewal period', () => {
    expect(told('duplicate', 'no-responder')).toMatchObject({ code: 'UNAVAILABLE', retryAfterMs: '1200' });
    expect(told('duplicate', 'no-responder', 6_500)).toMatchObject({ code: 'UNAVAILABLE', retryAfterMs: '500' });
  });
});
