import type { HotHistogram } from '../hot-histogram';
import { topicOf, type EventLog } from '../eventlog/port';
import type { MediaStore } from '../media/port';

/**
 * `port` with some of its methods replaced; every other member is the port's
 * own (methods bound to it), so a method added to the port later passes
 * through untouched. The port itself is not changed.
 */
export function decorate<T extends object>(port: T, replaced: Partial<T>): T {
  return new Proxy(port, {
    get(target, key) {
      if (Object.hasOwn(replaced, key)) return replaced[key as keyof T];
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Time spent waiting on the engines, per call, for /metrics: what a CPU
 * profile cannot show (an fsync, a Kafka ack, an S3 PUT). Each wraps the one
 * hot method of its port.
 */
export function timedEventLog(log: EventLog, seconds: HotHistogram<'topic'>): EventLog {
  // One series per topic, looked up once; the append's own promise is returned and observed on the side
  // (a timer object, a `finally` and its closures per append were ~1 KB of garbage per message at saturation).
  const series = new Map<string, { observe(value: number): void }>();
  const timed = <T>(topic: string, appended: Promise<T>, t0: number): Promise<T> => {
    let s = series.get(topic);
    if (!s) series.set(topic, (s = seconds.child({ topic })));
    const observer = s;
    const end = () => observer.observe((performance.now() - t0) / 1000);
    appended.then(end, end);
    return appended;
  };
  return decorate(log, {
    append: (event, encoded) => {
      let topic = 'unknown'; // an event without a topic: append itself rejects it
      try {
        topic = topicOf(event);
      } catch {}
      const t0 = performance.now();
      return timed(topic, log.append(event, encoded), t0);
    },
    appendEncoded:
      log.appendEncoded &&
      ((topic, payload) => {
        const t0 = performance.now();
        return timed(topic, log.appendEncoded!(topic, payload), t0);
      }),
  });
}

export function timedMediaStore(media: MediaStore, seconds: HotHistogram<'kind'>): MediaStore {
  return decorate(media, {
    put: (key, bytes, mimeType, sha256) => {
      const end = seconds.startTimer({ kind: key.startsWith('uploads/') ? 'upload' : key.startsWith('replies/') ? 'reply' : 'other' });
      return media.put(key, bytes, mimeType, sha256).finally(() => end());
    },
  });
}
