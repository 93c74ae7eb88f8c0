import { credentials } from '@grpc/grpc-js';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { Cluster, welcomedStreams, type RoleProcess } from './cluster';
import { describeWhen } from './engines';
import type { ChatStream } from './harness';
import { PrivateFerretDb, privateFerretDbReady } from './private-engines';

/*
 * A gateway stopped (SIGTERM) while its connection registry's database does
 * not answer at all — FerretDB frozen (SIGSTOP), not down: every write and
 * read waits, none fails. The drain must not wait for it past its grace: the
 * slots then lapse with the heartbeat, as after a crash, and the process ends
 * on its own (exit 0), before the hard deadline (grace + margin) ends it.
 *
 * The test runs its own FerretDB (the stack's binary, a private SQLite folder,
 * a free port) so it can freeze it without disturbing anyone else's engines.
 */
const GRACE_MS = 1_500;
const MARGIN_MS = 3_000;
const CLIENTS = 4;

const { ready, needs } = privateFerretDbReady(['KAFKA_BROKERS', 'NATS_URL', 'S3_ENDPOINT']);
describeWhen(ready, 'Registry hang: a gateway stopped while FerretDB is frozen', needs, () => {
  jest.setTimeout(180_000);
  let ferret: PrivateFerretDb;
  let cluster: Cluster;
  let gateway: RoleProcess;
  let chat: ChatServiceClient;
  const streams: ChatStream[] = [];

  beforeAll(async () => {
    ferret = await PrivateFerretDb.create();
    await ferret.start();
    cluster = new Cluster({ MONGODB_URI: ferret.uri, CHATFLOW_SHUTDOWN_GRACE_MS: String(GRACE_MS), CHATFLOW_SHUTDOWN_MARGIN_MS: String(MARGIN_MS), CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '600000' });
    await cluster.start('projector', 'projector');
    gateway = await cluster.start('gateway', 'gateway');
    chat = new ChatServiceClient(gateway.grpc!, credentials.createInsecure());
  });
  afterAll(async () => {
    for (const s of streams) if (!s.isDone()) s.cancel();
    chat?.close();
    await cluster?.stopAll();
    await cluster?.removeBucket().catch(() => undefined);
    await ferret?.remove();
  });

  it('ends its drain within the grace and exits 0 on its own, its streams told to come back', async () => {
    streams.push(...(await welcomedStreams(cluster, chat, 'frozen', CLIENTS)));
    ferret.freeze();
    const t = Date.now();
    await gateway.stop();
    const took = Date.now() - t;
    const said = gateway.logs.map((l) => String(l.msg));
    expect({ code: gateway.proc.exitCode, deadline: said.filter((m) => m.includes('did not finish')) }).toEqual({ code: 0, deadline: [] });
    expect(took).toBeLessThan(GRACE_MS + MARGIN_MS);
    // Each stream was ended with UNAVAILABLE and a time to come back after.
    for (const s of streams) expect((await s.status).code).toBe(14);
  });
});
