import type { Histogram } from 'prom-client';
import { topicOf, type EventLog } from '../eventlog/port';
import type { MediaStore } from '../media/port';

/**
 * Time spent waiting on the engines, per call, for /metrics: what a CPU
 * profile cannot show (an fsync, a Kafka ack, an S3 PUT). The adapters stay
 * as they are; their one hot method is wrapped on the instance.
 */
export function timeAppends(log: EventLog, seconds: Histogram<'topic'>): void {
  const append = log.append.bind(log);
  log.append = (event) => {
    let topic = 'unknown'; // an event without a topic: append itself rejects it
    try {
      topic = topicOf(event);
    } catch {}
    const end = seconds.startTimer({ topic });
    return append(event).finally(() => end());
  };
}

export function timeMediaPuts(media: MediaStore, seconds: Histogram<'kind'>): void {
  const put = media.put.bind(media);
  media.put = (key, bytes, mimeType) => {
    const end = seconds.startTimer({ kind: key.startsWith('uploads/') ? 'upload' : key.startsWith('replies/') ? 'reply' : 'other' });
    return put(key, bytes, mimeType).finally(() => end());
  };
}
