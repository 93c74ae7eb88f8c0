import { credentials } from '@grpc/grpc-js';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { Cluster, responsesPerMessage, welcomedStreams, type RoleProcess } from './cluster';
import { describeWithEngines } from './engines';
import type { ChatStream } from './harness';

/*
 * Issue 10's worker fault: one of two workers stopped gracefully (SIGTERM)
 * under 20 clients × 2 msg/s. Asserted, reading the log back: every accepted
 * message has exactly one reply or failure. Printed for the README: how long
 * replies took around the stop (the issue saw every client stall 4.4–11.8 s).
 */
const CLIENTS = 20;

describeWithEngines(['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'], 'A worker stopped (SIGTERM) under load', () => {
  jest.setTimeout(300_000);
  let cluster: Cluster;
  let workers: RoleProcess[] = [];
  let chat: ChatServiceClient;

  beforeAll(async () => {
    cluster = new Cluster({ KAFKA_PARTITIONS: '10', CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '600000', CHATFLOW_SIM_DELAY_SCALE: '0.2' });
    await cluster.start('projector', 'projector');
    workers = [await cluster.start('worker', 'worker-1'), await cluster.start('worker', 'worker-2')];
    const gateway = await cluster.start('gateway', 'gateway');
    chat = new ChatServiceClient(gateway.grpc!, credentials.createInsecure());
  }, 200_000);
  afterAll(async () => {
    chat?.close();
    await cluster?.stopAll();
    await cluster?.dropData().catch(() => undefined);
  });

  it('answers every accepted message exactly once while a worker hands its partitions over', async () => {
    const streams = await welcomedStreams(cluster, chat, 'wstop', CLIENTS);
    const sentAt = new Map<string, number>();
    const repliedAt = new Map<string, number>();
    for (const s of streams) {
      s.call.on('data', (f) => {
        const inReplyTo = f.frame?.$case === 'response' ? f.frame.response.inReplyTo : f.frame?.$case === 'error' ? f.frame.error.inReplyTo : undefined;
        if (inReplyTo && !repliedAt.has(inReplyTo)) repliedAt.set(inReplyTo, Date.now());
      });
    }
    const sent: { s: ChatStream; cm: string; at: number }[] = [];
    let sending = true;
    const load = (async () => {
      for (let tick = 0; sending; tick++) {
        for (const s of streams) if (!s.isDone()) sent.push({ s, cm: s.text(`tick ${tick}`), at: Date.now() });
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    await new Promise((r) => setTimeout(r, 8_000));
    const stoppedAt = Date.now();
    await workers[0].stop();
    await new Promise((r) => setTimeout(r, 15_000));
    sending = false;
    await load;

    const accepted = () => sent.flatMap(({ s, cm, at }) => {
      const id = s.messageIdOf(cm);
      if (id) sentAt.set(id, at);
      return id ? [id] : [];
    });
    let counts = new Map<string, number>();
    for (const end = Date.now() + 120_000; Date.now() < end; await new Promise((r) => setTimeout(r, 3_000))) {
      counts = await responsesPerMessage(cluster, ['responseProduced', 'processingFailed']);
      if (accepted().every((id) => counts.has(id))) break;
    }
    const ids = accepted();
    const missing = ids.filter((id) => !counts.has(id));
    const twice = ids.filter((id) => (counts.get(id) ?? 0) > 1);
    for (const s of streams) if (!s.isDone()) s.cancel();
    const latency = (from: number, to: number) => ids.filter((id) => sentAt.get(id)! >= from && sentAt.get(id)! < to && repliedAt.has(id)).map((id) => repliedAt.get(id)! - sentAt.get(id)!).sort((a, b) => a - b);
    const summary = (l: number[]) => (l.length ? `p50 ${l[Math.floor(l.length / 2)]} ms, p99 ${l[Math.floor(l.length * 0.99)]} ms, max ${l[l.length - 1]} ms (${l.length})` : 'none');
    process.stdout.write(`worker SIGTERM: ${ids.length} accepted, ${missing.length} missing, ${twice.length} twice; reply time of messages sent before the stop ${summary(latency(0, stoppedAt - 2_000))}; sent from 2 s before it to 10 s after ${summary(latency(stoppedAt - 2_000, stoppedAt + 10_000))}\n`);
    expect(ids.length).toBeGreaterThan(100); // a loaded machine closes streams early (renewals answered late): fewer, but still a handover under load
    expect({ missing: missing.length, twice: twice.length }).toEqual({ missing: 0, twice: 0 });
  });
});
