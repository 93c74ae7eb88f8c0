import fc from 'fast-check';
import { connectRateMessage, decideConnect, type ConnectBucket } from './connect-rate';

/** Attempts at the given times (ms), through the rule; which were let in. */
function attempts(times: number[], burst: number, perMinute: number): boolean[] {
  let bucket: ConnectBucket | undefined;
  return times.map((t) => {
    const v = decideConnect(bucket, t, burst, perMinute);
    bucket = v.bucket;
    return v.ok;
  });
}

describe('connect rate rule', () => {
  it('given a new client, then a burst of `burst` attempts at once is let in and the next one refused', () => {
    const ok = attempts(Array.from({ length: 21 }, () => 1_000), 20, 120);
    expect(ok.slice(0, 20).every(Boolean)).toBe(true);
    expect(ok[20]).toBe(false);
  });

  it('given an empty bucket, then it says how long until the next token, and lets the client in then', () => {
    let bucket: ConnectBucket | undefined;
    for (let i = 0; i < 2; i++) bucket = decideConnect(bucket, 0, 2, 120).bucket;
    const refused = decideConnect(bucket, 100, 2, 120);
    expect(refused).toMatchObject({ ok: false, retryAfterMs: 400 }); // 2 a second: a token every 500 ms
    expect(decideConnect(refused.bucket, 100 + 399, 2, 120).ok).toBe(false);
    expect(decideConnect(refused.bucket, 100 + 400, 2, 120).ok).toBe(true);
  });

  it('given 0 a minute, then there is no limit', () => {
    expect(attempts(Array.from({ length: 1_000 }, () => 5), 1, 0).every(Boolean)).toBe(true);
  });

  it('over any span, lets in at most burst + rate × span attempts, and every attempt once the client waits as told', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 600 }), fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 200 }), (burst, perMinute, gaps) => {
        let t = 0;
        const times = gaps.map((g) => (t += g));
        const ok = attempts(times, burst, perMinute).filter(Boolean).length;
        return ok <= burst + ((times[times.length - 1]! - times[0]!) * perMinute) / 60_000 + 1e-9;
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 100 }), (burst, perMinute, n) => {
        let bucket: ConnectBucket | undefined;
        let now = 0;
        for (let i = 0; i < n; i++) {
          let v = decideConnect(bucket, now, burst, perMinute);
          if (!v.ok) {
            now += v.retryAfterMs;
            v = decideConnect(v.bucket, now, burst, perMinute);
            if (!v.ok) return false;
          }
          bucket = v.bucket;
        }
        return true;
      }),
    );
  });

  it('given 2 in a row and 225 a minute, when a client waits as told each time, then each attempt after the wait is let in (a property run found the fifth refused: 0.9999999999999999 tokens)', () => {
    let bucket: ConnectBucket | undefined;
    let now = 0;
    const waited: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      let v = decideConnect(bucket, now, 2, 225);
      if (!v.ok) {
        now += v.retryAfterMs;
        v = decideConnect(v.bucket, now, 2, 225);
        waited.push(v.ok);
      }
      bucket = v.bucket;
    }
    expect(waited).toEqual([true, true, true]);
  });

  it('tells the client the limit and when to come back', () => {
    expect(connectRateMessage('alice', 20, 120, 400)).toBe('too many connections from client "alice": at most 120 a minute (20 in a row); retry in 400 ms');
  });
});
