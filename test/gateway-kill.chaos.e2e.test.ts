import { credentials, Metadata, status } from '@grpc/grpc-js';
import { TokenAuthority } from '../src/auth/tokens';
import { MongoClient } from 'mongodb';
import { CONNECTIONS_COLLECTION, DEAD_HOLDER_MS, GATEWAY_HEARTBEATS_COLLECTION } from '../src/connections/mongo';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { Cluster, welcomedStreams, type RoleProcess } from './cluster';
import { describeWithEngines } from './engines';
import { ChatStream } from './harness';

/*
 * Issue 10's gateway fault: a gateway killed (SIGKILL) with clients on it.
 * Before, its clients were refused ALREADY_EXISTS by the other gateway for the
 * dead gateway's whole lease (~10.3 s with CHATFLOW_LEASE_MS=10000); then until
 * its heartbeat lapsed — ALREADY_EXISTS tells a careful client not to retry,
 * which was false: the first connection was gone. Now a slot lives as long as
 * its gateway's heartbeat, and a second connection of a client whose first
 * one's gateway does not answer for it (or whose heartbeat is late) is told
 * UNAVAILABLE with `retry-after-ms` = until the heartbeat would lapse.
 * Asserted: every client of the dead gateway, retrying as a careful client
 * does (after `retry-after-ms`), is never told ALREADY_EXISTS and is welcomed
 * on the surviving gateway well before the lease would have let it; the
 * clients of the surviving gateway keep their streams (its slots are never
 * swept), and a second stream of one of them is still ALREADY_EXISTS.
 */
const LEASE_MS = 10_000;
const CLIENTS = 6;

describeWithEngines(['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'], 'Gateway killed: its clients get back in on the other gateway within seconds', () => {
  jest.setTimeout(180_000);
  let cluster: Cluster;
  let doomed: RoleProcess;
  let survivor: RoleProcess;
  const clients: ChatServiceClient[] = [];
  const streams: ChatStream[] = [];

  beforeAll(async () => {
    cluster = new Cluster({ CHATFLOW_LEASE_MS: String(LEASE_MS), CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '600000', KAFKA_PARTITIONS: '4', CHATFLOW_SIM_DELAY_SCALE: '0' });
    await cluster.start('projector', 'projector');
    await cluster.start('worker', 'worker');
    doomed = await cluster.start('gateway', 'gateway-doomed');
    survivor = await cluster.start('gateway', 'gateway-survivor');
  }, 150_000);
  afterAll(async () => {
    for (const s of streams) if (!s.isDone()) s.cancel();
    for (const c of clients) c.close();
    await cluster?.stopAll();
    await cluster?.dropData().catch(() => undefined);
  });

  it('welcomes the dead gateway\'s clients on the other one after its heartbeat lapses, not after the whole lease, and leaves the other\'s clients alone', async () => {
    const onDoomed = new ChatServiceClient(doomed.grpc!, credentials.createInsecure());
    const onSurvivor = new ChatServiceClient(survivor.grpc!, credentials.createInsecure());
    clients.push(onDoomed, onSurvivor);
    streams.push(...(await welcomedStreams(cluster, onDoomed, 'kill', CLIENTS)));
    const stayers = await welcomedStreams(cluster, onSurvivor, 'stay', CLIENTS);
    streams.push(...stayers);
    const auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);

    await doomed.kill();
    const killedAt = Date.now();
    // Each client of the dead gateway retries on the survivor until welcomed: after `retry-after-ms` when told
    // one, else every 200 ms.
    const refusals: string[] = [];
    const open = async (clientId: string): Promise<ChatStream> => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${await auth.mint(clientId)}`);
      md.set('x-timezone', 'Europe/Paris');
      const s = new ChatStream(onSurvivor.chat(md));
      streams.push(s);
      return s;
    };
    const backIn = await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
      for (;;) {
        const s = await open(`kill-${i}`);
        const r = await Promise.race([
          s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 20_000, 'welcome').then(() => null),
          s.status,
        ]);
        if (r === null) return Date.now() - killedAt;
        const retryAfter = Number(r.metadata.get('retry-after-ms')[0] ?? NaN);
        refusals.push(`${status[r.code]}${Number.isFinite(retryAfter) ? ' + retry-after-ms' : ''}`);
        if (Date.now() - killedAt > 60_000) throw new Error(`kill-${i} not welcomed within 60 s (last: ${status[r.code]} ${r.details})`);
        await new Promise((res) => setTimeout(res, Number.isFinite(retryAfter) ? retryAfter : 200));
      }
    }));

    process.stdout.write(`gateway SIGKILL: clients back in after ${backIn.map((ms) => (ms / 1000).toFixed(1)).join(', ')} s\n`);
    // While the dead gateway's slot is not yet freed: UNAVAILABLE with when to come back, never ALREADY_EXISTS.
    const tally = refusals.reduce((m, r) => m.set(r, (m.get(r) ?? 0) + 1), new Map<string, number>());
    process.stdout.write(`gateway SIGKILL: refusals while waiting: ${JSON.stringify(Object.fromEntries(tally))}\n`);
    expect(refusals.filter((r) => r !== 'UNAVAILABLE + retry-after-ms')).toEqual([]);
    // Heartbeat lapse + one sweep + a retry, with room for a loaded machine; the lease alone took 8.3 s here (~10.3 s in the issue).
    expect(Math.max(...backIn)).toBeLessThan(DEAD_HOLDER_MS + 2_500);
    // The survivor's own clients were never touched.
    expect(stayers.every((s) => !s.isDone())).toBe(true);
    // A second stream of a client whose first one is alive is still what DESIGN.md says: ALREADY_EXISTS.
    const second = await (await open('stay-0')).status;
    expect(status[second.code]).toBe('ALREADY_EXISTS');
  });
  it('a gateway stopped (SIGTERM) gives its slots back in one go as it exits, its heartbeat with them: its clients are welcomed elsewhere at once', async () => {
    const beats = async () => {
      const mongo = await MongoClient.connect(cluster.env().MONGODB_URI);
      try {
        const db = mongo.db();
        return {
          holders: (await db.collection(GATEWAY_HEARTBEATS_COLLECTION).find({}).toArray()).map((d) => String(d._id)),
          slots: (await db.collection(CONNECTIONS_COLLECTION).find({ clientId: /^stop-/ }).toArray()).length,
        };
      } finally {
        await mongo.close();
      }
    };
    const before = (await beats()).holders;
    const stopped = await cluster.start('gateway', 'gateway-stopped');
    const onStopped = new ChatServiceClient(stopped.grpc!, credentials.createInsecure());
    clients.push(onStopped);
    streams.push(...(await welcomedStreams(cluster, onStopped, 'stop', CLIENTS)));
    let holder: string | undefined;
    for (const end = Date.now() + 10_000; !holder && Date.now() < end; await new Promise((r) => setTimeout(r, 200))) holder = (await beats()).holders.find((h) => !before.includes(h));
    expect(holder).toBeDefined();
    expect((await beats()).slots).toBe(CLIENTS);

    await stopped.stop();
    // Gone with the process, not after its heartbeat lapses (DEAD_HOLDER_MS): one release of all its slots at the end of its drain.
    const after = await beats();
    expect(after.slots).toBe(0);
    expect(after.holders).not.toContain(holder);
    const onSurvivor = new ChatServiceClient(survivor.grpc!, credentials.createInsecure());
    clients.push(onSurvivor);
    const startedAt = Date.now();
    streams.push(...(await welcomedStreams(cluster, onSurvivor, 'stop', CLIENTS)));
    expect(Date.now() - startedAt).toBeLessThan(DEAD_HOLDER_MS);
  });
});
