// How fast a Kafka consumer keeps a full partition's handlers busy: the
// worker's shape at saturation (every slot of a partition taken, more events
// waiting in the log). N events go into a one-partition topic; one member
// with `--concurrency` slots handles them, each handler taking `--handler-ms`
// on average (uniformly from half to one and a half times it: handlers that
// all finish together would hide a refill's wait). The ideal is
// concurrency / handler time; what is lost is time with free
// slots and events still in the log, waiting for the next fetch.
//
//   npm run stack:up && eval "$(npm run -s stack:env)"
//   npx tsx loadtest/kafka-refill.ts [--events 1000] [--concurrency 50] [--handler-ms 100] [--server-dir .]
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { messageEvent } from '../src/eventlog/eventlog.contract';
import type { KafkaEventLog } from '../src/eventlog/kafka';
import { dropTopics } from './target/stack';

const { values } = parseArgs({
  options: { events: { type: 'string' }, concurrency: { type: 'string' }, 'handler-ms': { type: 'string' }, 'server-dir': { type: 'string' } },
});
const positive = (name: string, value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number, not "${value}"`);
  return n;
};
const EVENTS = positive('events', values.events ?? '1000');
const CONCURRENCY = positive('concurrency', values.concurrency ?? '50');
const HANDLER_MS = positive('handler-ms', values['handler-ms'] ?? '100');
const SERVER_DIR = resolve(values['server-dir'] ?? '.');
const brokers = (process.env.KAFKA_BROKERS ?? '').split(',').filter(Boolean);
if (brokers.length === 0) throw new Error('KAFKA_BROKERS is not set: run `eval "$(npm run -s stack:env)"` first');

async function main(): Promise<void> {
  // The build under test (a worktree of another commit, for a pair): its compiled adapter.
  const { KafkaEventLog: Log } = (await import(`${SERVER_DIR}/dist/src/eventlog/kafka.js`)) as { KafkaEventLog: typeof KafkaEventLog };
  // Topics of this run only, deleted at the end: repeated runs do not pile up on the stack's broker.
  const prefix = `chatflow_lt_refill_${randomUUID().slice(0, 8)}.`;
  const log = await Log.open({ brokers, clientId: 'kafka-refill', prefix, partitions: 1, logger: pino({ level: 'warn' }) });
  try {
    await refill(log);
  } finally {
    await log.close();
    await dropTopics(brokers, prefix);
  }
}

async function refill(log: KafkaEventLog): Promise<void> {
  await Promise.all(Array.from({ length: EVENTS }, (_, i) => log.append(messageEvent('refill', `m${i}`))));
  let handled = 0;
  let first = 0;
  let allDone!: () => void;
  const done = new Promise<void>((r) => (allDone = r));
  const consumer = await log.consume({
    group: 'refill', topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: CONCURRENCY,
    handle: async () => {
      first ||= performance.now();
      await new Promise((r) => setTimeout(r, HANDLER_MS * (0.5 + Math.random())));
      if (++handled === EVENTS) allDone();
    },
  });
  await done;
  const seconds = (performance.now() - first) / 1000;
  await consumer.stop(0);
  const ideal = CONCURRENCY / (HANDLER_MS / 1000);
  console.log(JSON.stringify({ serverDir: SERVER_DIR, events: EVENTS, concurrency: CONCURRENCY, handlerMs: HANDLER_MS, seconds: +seconds.toFixed(3), perSecond: Math.round(EVENTS / seconds), ideal, shareOfIdeal: +((EVENTS / seconds) / ideal).toFixed(3) }));
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
