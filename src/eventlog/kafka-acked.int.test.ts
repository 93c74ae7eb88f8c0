import { existsSync } from 'node:fs';
import pino from 'pino';
import { describeWhen } from '../../test/engines';
import { KAFKA_LIBS, PrivateKafka } from '../../test/private-engines';
import { messageEvent } from './eventlog.contract';
import { readToStableEnd } from '../../test/faults-readback';
import { KafkaEventLog } from './kafka';

/*
 * Issue 10's kafka-kill as CI runs it lost accepted messages: acknowledged,
 * never in the log. Here: appends go on without pause while the broker is
 * killed for longer than kafkajs's retry budget and restarted, twice. Each
 * time appends must be taken again within a minute of the restart (the old
 * code took none: kafkajs's rolled-back sequence numbers no longer matched
 * what the broker had written), and every acknowledged append must be in
 * the log at the position (seq) it was acknowledged with.
 */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const say = (s: string) => process.stderr.write(`[${new Date().toISOString()}] ${s}\n`);

describeWhen(existsSync(KAFKA_LIBS), 'Kafka appends acknowledged across broker kills', `needs Kafka jars in ${KAFKA_LIBS} (npm run stack:install)`, () => {
  jest.setTimeout(400_000);
  let kafka: PrivateKafka;
  let log: KafkaEventLog;

  beforeAll(async () => {
    kafka = await PrivateKafka.create();
    await kafka.start();
    log = await KafkaEventLog.open({ brokers: [kafka.brokers], clientId: 'acked-test', prefix: 'acked.', partitions: 4, logger });
  }, 120_000);
  afterAll(async () => {
    await log?.close();
    await kafka?.remove();
  });

  it('every acknowledged append is in the log at the seq it was acknowledged with', async () => {
    const acked = new Map<string, string>();
    let failed = 0;
    const resumed: number[] = [];
    let writing = true;
    let n = 0;
    // 40 writers, each appending one event at a time: the producer always has a request in flight, of many events.
    const writers = Array.from({ length: 40 }, async (_, w) => {
      while (writing) {
        const text = `w${w}-${n++}`;
        try {
          const e = await Promise.race([log.append(messageEvent(`c${w}`, text)), new Promise<never>((_, no) => setTimeout(() => no(new Error('append hung')), 30_000).unref())]);
          acked.set(`${e.partition}/${e.seq}`, text);
        } catch {
          failed++;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    });
    for (let round = 0; round < 2; round++) {
      await new Promise((r) => setTimeout(r, 2_000));
      await kafka.kill();
      say(`killed; ${acked.size} acked, ${failed} failed`);
      // Longer than kafkajs's retry budget (~21 s): requests in flight fail to the caller.
      await new Promise((r) => setTimeout(r, 22_000));
      await kafka.start();
      say(`restarted; ${acked.size} acked, ${failed} failed`);
      const size = acked.size;
      for (const end = Date.now() + 60_000; acked.size < size + 1_000 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 200));
      say(`appending again; ${acked.size} acked, ${failed} failed`);
      // The old code took no append at all for (at least) a minute after the broker was back.
      resumed.push(acked.size - size);
    }
    writing = false;
    await Promise.all(writers);
    say('writers done; reading back');

    const holds = new Map<string, string>();
    const readUpTo = new Map<number, number>();
    const consumer = await log.consume({
      // Many handlers per partition, as the projector has: with one, each event paused its partition and the
      // resume waited for the consumer's next fetch (long-polling the others up to maxWaitTimeInMs), ~7 events a second.
      group: 'audit', topics: ['conversations'], concurrencyPerPartition: 256, fromBeginning: true,
      handle: async (e) => {
        const p = e.event.payload;
        readUpTo.set(e.partition, Math.max(readUpTo.get(e.partition) ?? 0, e.seq));
        if (p?.$case === 'messageReceived' && p.messageReceived.content?.$case === 'text') holds.set(`${e.partition}/${e.seq}`, p.messageReceived.content.text);
      },
    });
    const end = await readToStableEnd({
      endOffsets: async () => new Map(await Promise.all([0, 1, 2, 3].map(async (p) => [p, await log.endOffset('conversations', p)] as const))),
      readUpTo: () => readUpTo,
      timeoutMs: 20_000,
    });
    await consumer.stop();
    say(`read back: ${JSON.stringify(end.short)} short`);
    expect(end.short).toEqual([]);
    const read = ([at]: [string, string]) => Number(at.split('/')[1]) <= (readUpTo.get(Number(at.split('/')[0])) ?? 0);
    const missing = [...acked].filter(read).filter(([at, text]) => holds.get(at) !== text).map(([at, text]) => `${text} acknowledged at ${at}, the log holds ${holds.get(at) ?? 'nothing'} there`);
    say(`${acked.size} acknowledged (${[...acked].filter(read).length} in what was read), ${failed} failed, ${missing.length} not in the log where acknowledged: ${missing.slice(0, 5).join('; ')}`);
    expect(resumed.every((k) => k >= 1_000)).toBe(true);
    expect([...acked].filter(read).length).toBe(acked.size);
    expect(missing.slice(0, 10)).toEqual([]);
  });
});
