import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { MongoClient } from 'mongodb';
import pino from 'pino';
import { TokenAuthority } from '../src/auth/tokens';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { KafkaEventLog } from '../src/eventlog/kafka';
import { CONNECTIONS_COLLECTION } from '../src/connections/mongo';
import { describeWithEngines } from './engines';
import { Cluster, responsesPerMessage, type RoleProcess } from './cluster';
import { ChatStream, unary } from './harness';
import { synthesizeVoice } from './voice-signal';

/*
 * The distributed stack for real: separate gateway, worker and projector
 * processes on Kafka, MongoDB (FerretDB here), NATS and S3. Each run has its
 * own topics and database, so runs never see each other's data.
 */

// The default lease: FerretDB under this test's load can delay a renewal by seconds.
const LEASE_MS = 10_000;
const ALL = ['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'] as const;

describeWithEngines(ALL, 'Distributed stack (2 gateways, 2 workers, 1 projector)', () => {
  jest.setTimeout(180_000);
  const cluster = new Cluster({
    CHATFLOW_LEASE_MS: String(LEASE_MS),
    CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '120000',
    KAFKA_PARTITIONS: '10',
    // Texts take 0–2 s: 600 sent at once pile up past the 500 cap.
    CHATFLOW_SIM_DELAY_SCALE: '2',
  });
  const auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);
  let projector: RoleProcess;
  let workers: RoleProcess[];
  let gateways: RoleProcess[];
  const clients = new Map<string, ChatServiceClient>();
  const streams: ChatStream[] = [];

  const client = (g: RoleProcess) => {
    let c = clients.get(g.grpc!);
    if (!c) clients.set(g.grpc!, (c = new ChatServiceClient(g.grpc!, credentials.createInsecure())));
    return c;
  };
  const open = async (g: RoleProcess, clientId: string) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${await auth.mint(clientId)}`);
    md.set('x-timezone', 'Asia/Tokyo');
    const s = new ChatStream(client(g).chat(md));
    streams.push(s);
    return s;
  };
  /** Resolves 'welcome' or the refusal's status name. */
  const outcome = (s: ChatStream) =>
    Promise.race([
      s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 30_000, 'welcome').then(() => 'welcome'),
      s.status.then((st) => status[st.code]),
    ]);
  /** Cancels every stream and waits until the gateways hold none. */
  const closeAll = async () => {
    for (const s of streams.splice(0)) if (!s.isDone()) s.cancel();
    const live = (gateways ?? []).filter((g) => g.proc.exitCode === null && g.proc.signalCode === null);
    const mongo = await MongoClient.connect(cluster.env().MONGODB_URI);
    try {
      // Both the streams and their slots in the shared registry (released just after the stream ends).
      for (const end = Date.now() + 15_000; Date.now() < end; ) {
        const held = await Promise.all(live.map((g) => g.metric('chatflow_clients_connected')));
        if (held.every((n) => n === 0) && (await mongo.db().collection(CONNECTIONS_COLLECTION).countDocuments({})) === 0) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await mongo.close();
    }
    throw new Error('gateways still hold streams or slots the test cancelled');
  };

  beforeAll(async () => {
    projector = await cluster.start('projector', 'projector');
    workers = [await cluster.start('worker', 'worker-1'), await cluster.start('worker', 'worker-2')];
    gateways = [await cluster.start('gateway', 'gateway-a'), await cluster.start('gateway', 'gateway-b')];
  });
  afterAll(async () => {
    await closeAll().catch(() => undefined);
    for (const c of clients.values()) c.close();
    await cluster.stopAll();
    await cluster.dropData();
  });

  let admitted: ChatStream[] = [];
  const gatewayOf = new Map<ChatStream, number>();
  /**
   * An admitted stream, the gateway holding it and the other one. A burst can
   * land every admission on one gateway (its claims won every race), so the
   * holder is whichever holds it.
   */
  const heldOnOne = () => {
    const stream = admitted.find((s) => gatewayOf.get(s) === 0) ?? admitted[0]!;
    const home = gatewayOf.get(stream)!;
    return { stream, home: gateways[home], other: gateways[1 - home] };
  };

  it('admits exactly 50 of 200 clients connecting at once across both gateways', async () => {
    const attempts = await Promise.all(Array.from({ length: 200 }, (_, i) => open(gateways[i % 2], `burst-${i}`)));
    const results = await Promise.all(attempts.map(outcome));
    const count = (r: string) => results.filter((x) => x === r).length;
    expect({ welcome: count('welcome'), refused: count('RESOURCE_EXHAUSTED') }).toEqual({ welcome: 50, refused: 150 });
    admitted = attempts.filter((_, i) => results[i] === 'welcome');
    attempts.forEach((s, i) => gatewayOf.set(s, i % 2));
    // Both gateways hold some: the limit is shared, not per replica.
    expect((await gateways[0].metric('chatflow_clients_connected')) + (await gateways[1].metric('chatflow_clients_connected'))).toBe(50);
  });

  it('refuses on gateway B a client connected on gateway A (ALREADY_EXISTS), the first stream keeps working', async () => {
    const { stream: onA, other } = heldOnOne();
    const id = onA.welcome()!.clientId;
    const second = await open(other, id);
    expect(await outcome(second)).toBe('ALREADY_EXISTS');
    const cm = onA.text('still here?');
    await onA.reply(cm, 30_000);
  });

  it('hands a Send that reached gateway B over the bus to gateway A, which holds the session, under the same rules', async () => {
    const { stream: onA, other } = heldOnOne();
    const { clientId, sessionId } = onA.welcome()!;
    const md = async (id: string) => {
      const m = new Metadata();
      m.set('authorization', `Bearer ${await auth.mint(id)}`);
      return m;
    };
    const viaB = client(other);
    const text = (clientMessageId: string, t: string) => ({ sessionId, message: { clientMessageId, content: { $case: 'text' as const, text: t } } });
    const ack = await unary(viaB.send.bind(viaB), text('routed-1', 'through the other replica'), await md(clientId));
    expect(ack).toMatchObject({ clientMessageId: 'routed-1', duplicate: false });
    // Answered once, on the stream held by gateway A.
    await onA.until((f) => f.some((x) => x.frame?.$case === 'response' && x.frame.response.inReplyTo === ack.messageId), 30_000, 'the routed message\'s reply');
    expect(onA.of('response').filter((r) => r.response.inReplyTo === ack.messageId)).toHaveLength(1);
    // The holder's answers come back as the client's statuses: a resend is a duplicate, bad input INVALID_ARGUMENT,
    // another client's Send PERMISSION_DENIED, a session nobody holds NOT_FOUND.
    expect(await unary(viaB.send.bind(viaB), text('routed-1', 'through the other replica'), await md(clientId))).toMatchObject({ messageId: ack.messageId, duplicate: true });
    await expect(unary(viaB.send.bind(viaB), text('routed-2', ' '), await md(clientId))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(unary(viaB.send.bind(viaB), text('routed-3', 'x'), await md('intruder'))).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    await expect(unary(viaB.send.bind(viaB), { ...text('routed-4', 'x'), sessionId: 'nobody-holds-this' }, await md(clientId))).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('takes over from gateway B the stream gateway A still holds, when its client names it (x-replaces-session); a ping through B is ponged on it first', async () => {
    const { stream: onA, home, other } = heldOnOne();
    const { clientId, sessionId, conversationId } = onA.welcome()!;
    const token = `Bearer ${await auth.mint(clientId)}`;
    const sendMd = new Metadata();
    sendMd.set('authorization', token);
    const viaB = client(other);
    expect(await unary(viaB.send.bind(viaB), { sessionId, ping: { nonce: 42 } }, sendMd)).toMatchObject({ messageId: '', seq: 0 });
    await onA.until((f) => f.some((x) => x.frame?.$case === 'pong' && x.frame.pong.nonce === 42), 10_000, 'the pong of a ping routed through B');
    const md = new Metadata();
    md.set('authorization', token);
    md.set('x-timezone', 'Asia/Tokyo');
    md.set('x-conversation-id', conversationId);
    md.set('x-replaces-session', sessionId);
    const back = new ChatStream(viaB.chat(md));
    streams.push(back);
    expect(await outcome(back)).toBe('welcome');
    const ended = await onA.status;
    expect([status[ended.code], ended.details]).toEqual(['ALREADY_EXISTS', `this stream was replaced by a newer connection of ${clientId} that named it (x-replaces-session)`]);
    expect(await home.metric('chatflow_disconnects_total{reason="replaced"}')).toBe(1);
    await back.reply(back.text('after the take-over'), 30_000);
    // The later tests load every admitted stream: this one stands for the stream it replaced.
    admitted = admitted.map((s) => (s === onA ? back : s));
    gatewayOf.set(back, gateways.indexOf(other));
  });

  it('a worker begins on voice messages while their gateway stores them (early notes over NATS), and answers each once', async () => {
    const adopted = async () => {
      const counts = await Promise.all(workers.map((w) => w.metric('chatflow_early_starts_total{outcome="adopted"}')));
      return counts.reduce((a, n) => a + (Number.isNaN(n) ? 0 : n), 0);
    };
    const before = await adopted();
    const { stream } = heldOnOne();
    const wav = synthesizeVoice('hello there').bytes;
    const sent = Array.from({ length: 3 }, () => stream.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: wav, url: '', sizeBytes: wav.length, durationMs: 0 } } }));
    for (const cm of sent) await stream.reply(cm, 30_000);
    await new Promise((r) => setTimeout(r, 500)); // a second reply would come now
    for (const cm of sent) expect(stream.of('response').filter((r) => r.response.inReplyTo === stream.messageIdOf(cm))).toHaveLength(1);
    // Told while their uploads went to S3, the worker holding their partition had them before Kafka handed them out.
    expect(await adopted()).toBeGreaterThan(before);
  });

  it('kill -9 of a worker mid-load: every accepted message still gets exactly one ResponseProduced', async () => {
    const sent = admitted.map((s) => Array.from({ length: 4 }, (_, i) => s.text(`crash ${i}`)));
    await new Promise((r) => setTimeout(r, 700));
    await workers[0].kill();
    await Promise.all(admitted.map((s, i) => Promise.all(sent[i].map((cm) => s.until(() => s.messageIdOf(cm) !== undefined, 60_000, `Accepted for ${cm}`)))));
    const accepted = new Set(admitted.flatMap((s, i) => sent[i].map((cm) => s.messageIdOf(cm)!)));
    expect(accepted.size).toBe(200);

    // Counted in the log itself: a reply the killed worker appended but never published
    // reaches its client only on resume (x-resume-after), not on this stream.
    let counts = new Map<string, number>();
    for (const end = Date.now() + 150_000; Date.now() < end; await new Promise((r) => setTimeout(r, 2_000))) {
      counts = await responsesPerMessage(cluster);
      if ([...accepted].every((id) => counts.has(id))) break;
    }
    await new Promise((r) => setTimeout(r, 3_000)); // a duplicate would come within the grace of a redelivery
    counts = await responsesPerMessage(cluster);
    const wrong = [...accepted].filter((id) => counts.get(id) !== 1).map((id) => `${id}: ${counts.get(id) ?? 0}`);
    expect(wrong).toEqual([]);

    workers[0] = await cluster.start('worker', 'worker-3');
    // Wait for worker-3 to take its share, so the next test measures both workers.
    await new Promise((r) => setTimeout(r, 3_000));
  }, 300_000);

  it('never has more than 500 messages in processing across both workers, and answers all', async () => {
    const sent = admitted.map((s) => Array.from({ length: 12 }, (_, i) => s.text(`load ${i}`)));
    await Promise.all(admitted.map((s, i) => Promise.all(sent[i].map((cm) => s.reply(cm, 200_000)))));
    const peaks = await Promise.all(workers.map((w) => w.metric('chatflow_messages_processing_peak')));
    const total = peaks[0] + peaks[1];
    expect(total).toBeLessThanOrEqual(500);
    // The cap was actually pressed on (600 messages of up to 2 s each, sent at once).
    expect(total).toBeGreaterThan(150);
    expect(peaks.every((p) => p > 0)).toBe(true);
  }, 240_000);

  it('kill -9 of a gateway: its slots come back within the lease time, recorded as lease-expired', async () => {
    await closeAll();
    const onA = await Promise.all(Array.from({ length: 30 }, (_, i) => open(gateways[0], `lease-a-${i}`)));
    const onB = await Promise.all(Array.from({ length: 20 }, (_, i) => open(gateways[1], `lease-b-${i}`)));
    expect(await Promise.all([...onA, ...onB].map(outcome))).toEqual(Array(50).fill('welcome'));
    expect(await outcome(await open(gateways[0], 'lease-late-0'))).toBe('RESOURCE_EXHAUSTED');

    const killedAt = Date.now();
    await gateways[1].kill();
    let admittedAt = 0;
    for (let i = 1; !admittedAt; i++) {
      const late = await open(gateways[0], `lease-late-${i}`);
      if ((await outcome(late)) === 'welcome') admittedAt = Date.now();
      else await new Promise((r) => setTimeout(r, 200));
      if (Date.now() - killedAt > LEASE_MS * 4) throw new Error('slots of the dead gateway never came back');
    }
    // Within the lease (plus this loop's retry step and the engines' latency on a busy machine).
    expect(admittedAt - killedAt).toBeLessThanOrEqual(LEASE_MS + 1_500);

    const mongo = await MongoClient.connect(cluster.env().MONGODB_URI);
    try {
      const sessions = mongo.db().collection('sessions');
      // Recorded by the surviving gateway's sweep; the projector may lag behind the log on FerretDB.
      const deadline = Date.now() + 90_000;
      let expired = 0;
      while (Date.now() < deadline && (expired = await sessions.countDocuments({ clientId: { $regex: '^lease-b-' }, reason: 'lease-expired' })) < 20) {
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(expired).toBe(20);
    } finally {
      await mongo.close();
    }
    gateways[1] = await cluster.start('gateway', 'gateway-c');
  });

  it('a projector rebuilt from scratch produces the same read models', async () => {
    await closeAll();
    const mongo = await MongoClient.connect(cluster.env().MONGODB_URI);
    try {
      const snapshot = async () => {
        const out: Record<string, unknown[]> = {};
        for (const name of ['conversations', 'messages', 'sessions']) {
          // Without the store's bookkeeping (positions, version, write token): the models themselves.
          out[name] = (await mongo.db().collection(name).find({}).sort({ _id: 1 }).toArray()).map(({ _pos, _ver, _tok, ...doc }) => doc);
        }
        return out;
      };
      // Settled: the projector has nothing left in the log, and two snapshots a second apart agree.
      const lag = async () => ((await (await fetch(`${projector.http}/healthz`)).json()) as { projectionLag: number }).projectionLag;
      let before = await snapshot();
      for (;;) {
        await new Promise((r) => setTimeout(r, 1_000));
        const again = await snapshot();
        if ((await lag()) === 0 && JSON.stringify(again) === JSON.stringify(before)) break;
        before = again;
      }
      expect(before.messages.length).toBeGreaterThan(900);
      await projector.stop();
      const rebuildStart = Date.now();
      projector = await cluster.start('projector', 'projector-rebuilt', { CHATFLOW_REBUILD_READ_MODELS: 'true' }, 240_000);
      console.log(`read models rebuilt from ${before.messages.length + before.sessions.length + before.conversations.length} documents' events in ${Date.now() - rebuildStart} ms`);
      expect(await snapshot()).toEqual(before);
    } finally {
      await mongo.close();
    }
  }, 400_000);
});

describeWithEngines(ALL, 'Engines unavailable at start', () => {
  jest.setTimeout(120_000);

  /** A TCP forwarder that can be started late: the engine looks down until then. */
  const forwarder = (target: string) => {
    const [host, port] = target.split(':');
    let server: Server | undefined;
    const sockets = new Set<Socket>();
    // Below Linux's ephemeral range (32768 up: every outgoing connection of the suite takes one of those) and
    // above the engines' ports (FerretDB's 27017): a port the forwarder only binds later, when it starts.
    const listenPort = 28_000 + Math.floor(Math.random() * 4_000);
    return {
      port: listenPort,
      start: () =>
        new Promise<void>((r, reject) => {
          server = createServer((inbound) => {
            const outbound = tcpConnect(Number(port), host);
            sockets.add(inbound).add(outbound);
            inbound.pipe(outbound).pipe(inbound);
            const end = () => (inbound.destroy(), outbound.destroy());
            inbound.on('error', end).on('close', end);
            outbound.on('error', end).on('close', end);
          })
            .once('error', reject) // taken meanwhile: fails now, with the reason, not at the test's timeout
            .listen(listenPort, '127.0.0.1', () => r());
        }),
      stop: () => {
        for (const s of sockets) s.destroy();
        server?.close();
      },
    };
  };

  it.each([
    ['MongoDB', 'MONGODB_URI'],
    ['NATS', 'NATS_URL'],
    ['Kafka', 'KAFKA_BROKERS'],
  ] as const)('%s down at start: the gateway says which, retries, and serves once it is up', async (engine, variable) => {
    const cluster = new Cluster();
    const env = cluster.env();
    const real = new URL(variable === 'KAFKA_BROKERS' ? `kafka://${env.KAFKA_BROKERS.split(',')[0]}` : env[variable]);
    const fwd = forwarder(`${real.hostname}:${real.port}`);
    const url = new URL(real.toString());
    url.port = String(fwd.port);
    const patched = variable === 'KAFKA_BROKERS' ? `127.0.0.1:${fwd.port}` : url.toString();
    const proc = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
      cwd: resolve(__dirname, '..'),
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env, [variable]: patched, CHATFLOW_ROLE: 'gateway', CHATFLOW_DATA_DIR: `/tmp/chatflow-down-${cluster.run}` },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: Record<string, unknown>[] = [];
    const ready = new Promise<void>((r, reject) => {
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          lines.push(rec);
          if (rec.msg === 'ChatFlow ready') r();
        } catch {
          /* not JSON */
        }
      });
      proc.once('exit', (code, signal) => (signal ? undefined : reject(new Error(`exited with ${code}: ${JSON.stringify(lines.slice(-8))}`))));
    });
    try {
      const said = () => lines.some((l) => new RegExp(engine, 'i').test(String(l.msg)) && /unavailable|unreachable/i.test(String(l.msg)));
      const end = Date.now() + 30_000;
      while (!said() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      if (!said()) throw new Error(`no log line said ${engine} was unavailable; last lines: ${JSON.stringify(lines.slice(-8))}`);
      expect(proc.exitCode).toBeNull();
      await fwd.start();
      await ready;
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r)));
      fwd.stop();
      await cluster.removeBucket().catch(() => undefined);
    }
  });
});

/** ResponseProduced events per answered message id, read from the run's Kafka topics. */
