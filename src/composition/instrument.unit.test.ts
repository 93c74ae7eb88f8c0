import { HotHistogram } from '../hot-histogram';
import type { Event } from '../gen/chatflow/v1/events';
import type { EventLog, LoggedEvent } from '../eventlog/port';
import { timedEventLog } from './instrument';

const event = (conversationId: string): Event => ({
  eventId: 'e1', time: new Date(), clientId: 'c', conversationId, sessionId: 's',
  payload: { $case: 'messageReceived', messageReceived: { messageId: 'm', clientMessageId: 'k', gatewayId: 'g', timeZone: 'UTC', content: { $case: 'text', text: 'hi' } } },
});

async function counts(h: HotHistogram<'topic'>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await h.get()).values as { metricName?: string; labels: Record<string, unknown>; value: number }[]) if (v.metricName?.endsWith('_count')) out[String(v.labels.topic)] = v.value;
  return out;
}

describe('timedEventLog', () => {
  it('gives the caller the log\'s own answer, and observes each append once it is settled, by topic, failed ones too', async () => {
    const seconds = new HotHistogram<'topic'>({ name: 'append_seconds', help: 'x', labelNames: ['topic'], buckets: [0.001, 1] });
    let release!: () => void;
    const logged = { seq: 1 } as LoggedEvent;
    const log = {
      append: (e: Event) => (e.conversationId === 'bad' ? Promise.reject(new Error('disk full')) : new Promise<LoggedEvent>((r) => (release = () => r(logged)))),
      close: async () => undefined,
    } as unknown as EventLog;
    const timed = timedEventLog(log, seconds);
    const pending = timed.append(event('c1'));
    await new Promise((r) => setImmediate(r));
    expect(await counts(seconds)).toEqual({ conversations: 0 });
    release();
    await expect(pending).resolves.toBe(logged);
    await expect(timed.append(event('bad'))).rejects.toThrow('disk full');
    await new Promise((r) => setImmediate(r));
    expect(await counts(seconds)).toEqual({ conversations: 2 });
    // Every other member passes through to the log itself.
    await expect(timed.close()).resolves.toBeUndefined();
  });
});
