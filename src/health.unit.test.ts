import { Health } from './health';

describe('Health', () => {
  it('serves only when no reason is set, and tells listeners on each change', () => {
    const h = new Health({ starting: 'engines connecting' });
    const seen: boolean[] = [];
    h.onChange((s) => seen.push(s));
    expect(h.serving).toBe(false);
    h.clear('starting');
    expect(h.serving).toBe(true);
    h.set('draining', 'shutting down');
    h.set('log', 'the event log cannot append');
    expect(h.unavailable).toEqual({ draining: 'shutting down', log: 'the event log cannot append' });
    h.clear('log');
    expect(h.serving).toBe(false);
    h.clear('draining');
    expect(seen).toEqual([false, true, false, true]);
  });
});
