/*
 * What the gateway's read-your-writes check costs on the stack: how long
 * `groupCaughtUp` (the projector group's committed offsets vs the log's end,
 * what `readModelsSettled` does when the projector runs in another process)
 * takes and how many Kafka admin requests it makes, while events are appended
 * at RATE/s and a stand-in projector group handles each in DELAY_MS.
 *
 *   eval "$(npm run -s stack:env)"; npx tsx loadtest/settled-cost.ts
 *   RATE=40 DELAY_MS=5 CALLS=12 EVERY_MS=2500 npx tsx loadtest/settled-cost.ts
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { KafkaEventLog } from '../src/eventlog/kafka';
import { TOPICS } from '../src/eventlog/port';

const RATE = Number(process.env.RATE ?? 40);
const DELAY_MS = Number(process.env.DELAY_MS ?? 5);
const CALLS = Number(process.env.CALLS ?? 12);
const EVERY_MS = Number(process.env.EVERY_MS ?? 2_500);

async function main(): Promise<void> {
  const prefix = `settled-cost-${randomUUID().slice(0, 8)}.`;
  const logger = pino({ level: 'warn' });
  const log = await KafkaEventLog.open({ brokers: process.env.KAFKA_BROKERS!.split(','), clientId: 'settled-cost', prefix, partitions: 10, logger });
  const admin = (log as unknown as { admin: Record<string, (...a: unknown[]) => Promise<unknown>> }).admin;
  let requests = 0;
  for (const m of ['fetchOffsets', 'fetchTopicOffsets']) {
    const f = admin[m].bind(admin);
    admin[m] = (...a: unknown[]) => (requests++, f(...a));
  }
  const consumer = await log.consume({
    group: 'projector', topics: TOPICS, concurrencyPerPartition: 1,
    handle: () => new Promise((r) => setTimeout(r, DELAY_MS)),
  });
  let appending = true;
  const appender = (async () => {
    for (let i = 0; appending; i++) {
      void log.append({ eventId: randomUUID(), time: new Date(), clientId: `c${i % 20}`, conversationId: `conv${i % 20}`, sessionId: 's', payload: { $case: 'clientConnected', clientConnected: { gatewayId: 'g', timeZone: 'UTC', newConversation: false } } });
      await new Promise((r) => setTimeout(r, 1000 / RATE));
    }
  })();
  await new Promise((r) => setTimeout(r, 3_000));
  const took: number[] = [];
  const perCall: number[] = [];
  let late = 0;
  for (let i = 0; i < CALLS; i++) {
    const before = requests;
    const t = Date.now();
    if (!(await log.groupCaughtUp('projector', TOPICS, 5_000))) late++;
    took.push(Date.now() - t);
    perCall.push(requests - before);
    await new Promise((r) => setTimeout(r, EVERY_MS));
  }
  appending = false;
  await appender;
  await consumer.stop();
  await log.close();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sorted = [...took].sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ rate: RATE, delayMs: DELAY_MS, calls: CALLS, late, msMean: Math.round(mean(took)), msMax: sorted[sorted.length - 1], adminRequestsMean: Number(mean(perCall).toFixed(1)), adminRequestsMax: Math.max(...perCall) })}\n`);
}

void main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
