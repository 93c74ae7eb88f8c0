import { credentials, Metadata, status } from '@grpc/grpc-js';
import { MongoClient } from 'mongodb';
import { TokenAuthority } from '../src/auth/tokens';
import { CONNECTIONS_COLLECTION } from '../src/connections/mongo';
import { leaseTiming } from '../src/domain/lease';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { Cluster, type RoleProcess } from './cluster';
import { describeWhen } from './engines';
import { ChatStream } from './harness';
import { PrivateFerretDb, privateFerretDbReady } from './private-engines';

/*
 * Issue 10's FerretDB fault, reproduced: the connection registry's database
 * is killed (SIGKILL) for longer than a lease while two gateways serve
 * clients, then restarted. Before the fix, each gateway's first sweep freed
 * the other's live leases and clients were admitted twice. Asserted here:
 * no second stream is ever admitted for a connected client, and one lease
 * period after the database is back every open stream holds exactly one slot.
 *
 * The test runs its own FerretDB (the stack's binary, a private SQLite folder,
 * a free port) so it can kill it without disturbing anyone else's engines.
 */
const LEASE_MS = 4_000;
const OUTAGE_MS = 3 * LEASE_MS;
const CLIENTS = 12;

const { ready, needs } = privateFerretDbReady(['KAFKA_BROKERS', 'NATS_URL', 'S3_ENDPOINT']);
describeWhen(ready, 'Registry outage: FerretDB killed for three leases under two gateways', needs, () => {
  jest.setTimeout(240_000);
  let ferret: PrivateFerretDb;
  let cluster: Cluster;
  let auth: TokenAuthority;
  let gateways: RoleProcess[] = [];
  const grpcClients = new Map<string, ChatServiceClient>();
  const streams: ChatStream[] = [];

  const open = async (g: RoleProcess, clientId: string) => {
    let c = grpcClients.get(g.grpc!);
    if (!c) grpcClients.set(g.grpc!, (c = new ChatServiceClient(g.grpc!, credentials.createInsecure())));
    const md = new Metadata();
    md.set('authorization', `Bearer ${await auth.mint(clientId)}`);
    md.set('x-timezone', 'Asia/Tokyo');
    const s = new ChatStream(c.chat(md));
    streams.push(s);
    return s;
  };
  const outcome = (s: ChatStream, ms = 20_000) =>
    Promise.race([
      s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), ms, 'welcome').then(() => 'welcome'),
      s.status.then((st) => status[st.code]),
    ]).catch(() => 'no answer');

  beforeAll(async () => {
    ferret = await PrivateFerretDb.create();
    await ferret.start();
    cluster = new Cluster({ MONGODB_URI: ferret.uri, CHATFLOW_LEASE_MS: String(LEASE_MS), CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '600000', KAFKA_PARTITIONS: '4', CHATFLOW_SIM_DELAY_SCALE: '0' });
    auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);
    await cluster.start('projector', 'projector');
    await cluster.start('worker', 'worker');
    gateways = [await cluster.start('gateway', 'gateway-a'), await cluster.start('gateway', 'gateway-b')];
  });
  afterAll(async () => {
    for (const s of streams) if (!s.isDone()) s.cancel();
    for (const c of grpcClients.values()) c.close();
    await cluster?.stopAll();
    await cluster?.removeBucket().catch(() => undefined);
    await ferret?.remove();
  });

  it('never admits a second stream for a connected client, and every open stream holds exactly one slot one lease after', async () => {
    // Each client keeps one stream open on its home gateway, reconnecting after retry-after-ms when it is ended.
    const current = new Map<string, ChatStream>();
    const doubleAdmissions: string[] = [];
    const ids = Array.from({ length: CLIENTS }, (_, i) => `outage-${i}`);
    let running = true;
    const keepConnected = async (id: string, home: RoleProcess) => {
      while (running) {
        const s = await open(home, id);
        if ((await outcome(s)) === 'welcome') {
          current.set(id, s);
          s.text('hello');
          const st = await s.status;
          if (current.get(id) === s) current.delete(id);
          const wait = Number(st.metadata?.get('retry-after-ms')[0] ?? 500);
          await new Promise((r) => setTimeout(r, Math.min(wait, 2_000)));
        } else {
          await new Promise((r) => setTimeout(r, 300));
        }
      }
    };
    const loops = ids.map((id, i) => keepConnected(id, gateways[i % 2]));
    // Meanwhile each connected client is tried on the OTHER gateway: it must never be welcomed there.
    const probe = async () => {
      while (running) {
        await Promise.all(ids.map(async (id, i) => {
          const first = current.get(id);
          if (!first || first.isDone()) return;
          const second = await open(gateways[(i + 1) % 2], id);
          const r = await outcome(second, 5_000);
          if (r === 'welcome' && !first.isDone()) doubleAdmissions.push(`${id} at ${new Date().toISOString()}`);
          if (!second.isDone()) second.cancel();
        }));
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    const prober = probe();

    for (const end = Date.now() + 30_000; current.size < CLIENTS && Date.now() < end; ) await new Promise((r) => setTimeout(r, 100));
    expect(current.size).toBe(CLIENTS);

    await ferret.kill();
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    await ferret.start();
    // One lease period for things to settle, then the admission invariants must hold.
    await new Promise((r) => setTimeout(r, LEASE_MS + leaseTiming(LEASE_MS).sweepEveryMs));
    running = false;
    await prober;

    const mongo = await MongoClient.connect(ferret.uri);
    let slots: { clientId: string; sessionId: string }[];
    let open_: string[];
    try {
      // Streams open now, from the clients' side, against the slots in the registry.
      for (const end = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 200))) {
        slots = (await mongo.db().collection(CONNECTIONS_COLLECTION).find({}).toArray()) as unknown as typeof slots;
        open_ = [...current.entries()].filter(([, s]) => !s.isDone()).map(([id]) => id).sort();
        if (slots.map((s) => s.clientId).sort().join() === open_.join() || Date.now() > end) break;
      }
    } finally {
      await mongo.close();
    }
    const connected = (await Promise.all(gateways.map((g) => g.metric('chatflow_clients_connected')))).reduce((a, b) => a + b, 0);
    const late = (await Promise.all(gateways.map((g) => g.metric('chatflow_admissions_refused_total{reason="registry_late"}')))).reduce((a, b) => a + b, 0);
    console.log(`registry outage: ${doubleAdmissions.length} second admissions; ${late} claims given back that came back too late to be safe`);
    for (const s of current.values()) if (!s.isDone()) s.cancel();
    await Promise.all(loops);

    expect(doubleAdmissions).toEqual([]);
    expect(slots.map((s) => s.clientId).sort()).toEqual(open_);
    expect(new Set(slots.map((s) => s.clientId)).size).toBe(slots.length);
    expect(connected).toBe(open_.length);
    // The clients came back after the outage.
    expect(open_.length).toBe(CLIENTS);
  });
});
