import { existsSync } from 'node:fs';
import pino from 'pino';
import { describeWhen } from '../../test/engines';
import { KAFKA_LIBS, PrivateKafka } from '../../test/private-engines';
import { messageEvent } from './eventlog.contract';
import { KafkaEventLog } from './kafka';

/*
 * Issue 10: Kafka SIGKILLed for longer than kafkajs's own retry budget, then
 * restarted. Before the fix the consumer came back from its first crash but
 * never consumed or committed again, so the projector stayed behind forever
 * and every check of "have the read models caught up?" waited for it.
 * Asserted: the same consumer handles what is appended after the broker is
 * back, commits it (another process sees the group caught up), and its
 * health went bad while it was down and good again afterwards.
 */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const OUTAGE_MS = 45_000;

describeWhen(existsSync(KAFKA_LIBS), 'Kafka consumer across a long broker outage', `needs Kafka jars in ${KAFKA_LIBS} (npm run stack:install)`, () => {
  jest.setTimeout(300_000);
  let kafka: PrivateKafka;
  let log: KafkaEventLog;

  beforeAll(async () => {
    kafka = await PrivateKafka.create();
    await kafka.start();
    log = await KafkaEventLog.open({ brokers: [kafka.brokers], clientId: 'outage-test', prefix: 'outage.', partitions: 4, logger });
  }, 120_000);
  afterAll(async () => {
    await log?.close();
    await kafka?.remove();
  });

  it('consumes and commits again once the broker is back, and says it is unhealthy meanwhile', async () => {
    const seen = new Set<string>();
    const problems: (string | undefined)[] = [];
    const consumer = await log.consume({
      group: 'projector', topics: ['conversations'], concurrencyPerPartition: 2,
      // Slow enough that work is in flight and partitions are paused for lack of slots when the broker dies.
      handle: async (e) => {
        await new Promise((r) => setTimeout(r, 20));
        seen.add(e.event.eventId);
      },
      onProblem: (reason) => problems.push(reason),
    });
    const before = await Promise.all(Array.from({ length: 20 }, (_, i) => log.append(messageEvent(`c${i}`, `before-${i}`))));
    await consumer.caughtUp();
    expect(await log.groupCaughtUp('projector', ['conversations'], 10_000)).toBe(true);

    // A burst right before the kill: handlers in flight, partitions paused, commits pending.
    const burst = await Promise.all(Array.from({ length: 400 }, (_, i) => log.append(messageEvent(`c${i % 20}`, `burst-${i}`))));
    await kafka.kill();
    // Appends in flight when the broker dies, and during the outage: they fail or wait, and must not wedge the producer.
    const during = Array.from({ length: 30 }, (_, i) => log.append(messageEvent(`c${i % 20}`, `during-${i}`)).catch(() => undefined));
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    const downReported = problems.some((p) => p !== undefined);
    await kafka.start();

    const appending = Promise.all(Array.from({ length: 20 }, (_, i) => log.append(messageEvent(`c${i}`, `after-${i}`))));
    const after = await Promise.race([appending, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('appends after the restart still pending after 30 s')), 30_000))]);
    void during;
    const ids = [...before, ...burst, ...after].map((e) => e.event.eventId);
    for (const end = Date.now() + 60_000; Date.now() < end && !ids.every((id) => seen.has(id)); ) await new Promise((r) => setTimeout(r, 200));
    expect(ids.filter((id) => !seen.has(id))).toEqual([]);
    expect(await log.groupCaughtUp('projector', ['conversations'], 30_000)).toBe(true);
    expect({ downReported, last: problems.at(-1) }).toEqual({ downReported: true, last: undefined });
    await consumer.stop();
  });
});
