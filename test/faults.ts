/**
 * Issue 10's fault matrix: one ChatFlow cluster (a projector, two workers, two
 * gateways) on private engines, clients sending at a steady rate, one fault
 * injected at a fixed time and restored, then the log read back and scored.
 * Shared by `npm run faults` (scripts/faults.ts: the table) and
 * test/fault-matrix.chaos.e2e.test.ts (the invariants, in CI).
 */
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { MongoClient } from 'mongodb';
import { TokenAuthority } from '../src/auth/tokens';
import { CONNECTIONS_COLLECTION } from '../src/connections/mongo';
import { leaseTiming } from '../src/domain/lease';
import { ChatServiceClient, type ServerFrame, type UserMessage } from '../src/gen/chatflow/v1/chat';
import { Payloads } from '../loadtest/payloads';
import { retry } from '../src/resilience/retry';
import { partitionFor } from '../src/eventlog/kafka';
import { Cluster, readLog, type RoleProcess } from './cluster';
import { ChatStream } from './harness';
import { PrivateFerretDb, PrivateKafka, PrivateMinio, PrivateNats } from './private-engines';
import type { ReadbackEnd } from './faults-readback';

export const FAULTS = ['kafka-kill', 'kafka-freeze', 'ferretdb-kill', 'nats-kill', 'minio-kill', 'gateway-kill', 'worker-kill', 'projector-kill', 'worker-term'] as const;
export type FaultName = (typeof FAULTS)[number];

/** The four engines, private to one run of the matrix (restarted on the same ports and folders). */
export class PrivateEngines {
  private constructor(readonly kafka: PrivateKafka, readonly ferret: PrivateFerretDb, readonly nats: PrivateNats, readonly minio: PrivateMinio) {}
  static async start(): Promise<PrivateEngines> {
    const e = new PrivateEngines(await PrivateKafka.create(), await PrivateFerretDb.create(), await PrivateNats.create(), await PrivateMinio.create());
    await Promise.all([e.kafka.start(), e.ferret.start(), e.nats.start(), e.minio.start()]);
    return e;
  }
  /** The engine settings of a ChatFlow process on these engines. */
  env(): Record<string, string> {
    return { KAFKA_BROKERS: this.kafka.brokers, MONGODB_URI: this.ferret.uri, NATS_URL: this.nats.url, ...this.minio.env() };
  }
  async remove(): Promise<void> {
    await Promise.all([this.kafka.remove(), this.ferret.remove(), this.nats.remove(), this.minio.remove()]);
  }
}

export interface Load {
  clients: number;
  /** Messages per second per client. */
  rate: number;
  /** Every n-th message of a client is a voice message (0: text only). */
  audioEvery: number;
  warmupMs: number;
  faultMs: number;
  afterMs: number;
  leaseMs: number;
}

/** Partitions of the cluster's topics. */
const PARTITIONS = 10;

export const DEFAULT_LOAD: Load = { clients: 20, rate: 2, audioEvery: 0, warmupMs: 10_000, faultMs: 15_000, afterMs: 20_000, leaseMs: 10_000 };

interface Roles {
  engines: PrivateEngines;
  cluster: Cluster;
  gateways: RoleProcess[];
  workers: RoleProcess[];
  projector: RoleProcess;
}

interface Fault {
  /** What is done, in words for the table. */
  what: string;
  inject(r: Roles): Promise<void>;
  restore(r: Roles): Promise<void>;
  /** Overrides of the load (the MinIO fault sends voice too). */
  load?: Partial<Load>;
  /**
   * When the cluster may heal from: an engine once it is back (`restore`); a
   * killed role at once (`inject`), since the others take over its work
   * without waiting for its replacement.
   */
  healsFrom: 'restore' | 'inject';
}

/** Kills (or stops) one role process and starts a fresh one of the same role once the fault time is over. */
const roleFault = (what: string, pick: (r: Roles) => RoleProcess[], end: 'kill' | 'stop'): Fault => {
  let victim: RoleProcess | undefined;
  let ended: Promise<void> = Promise.resolve();
  return {
    what,
    healsFrom: 'inject',
    inject: async (r) => {
      victim = pick(r)[0]!;
      // A graceful stop drains: the fault clock runs while it does.
      ended = end === 'kill' ? victim.kill() : victim.stop();
      if (end === 'kill') await ended;
    },
    restore: async (r) => {
      await ended;
      const list = pick(r);
      const i = list.indexOf(victim!);
      const fresh = await r.cluster.start(victim!.role, `${victim!.name}-restarted`);
      if (i >= 0) list.splice(i, 1, fresh);
    },
  };
};

export const FAULT_SPECS: Record<FaultName, Fault> = {
  'kafka-kill': { what: 'Kafka SIGKILL, restarted after the fault time', healsFrom: 'restore', inject: (r) => r.engines.kafka.kill(), restore: (r) => r.engines.kafka.start() },
  'kafka-freeze': { what: 'Kafka SIGSTOP, SIGCONT after the fault time', healsFrom: 'restore', inject: async (r) => r.engines.kafka.freeze(), restore: async (r) => r.engines.kafka.thaw() },
  'ferretdb-kill': { what: 'FerretDB SIGKILL, restarted', healsFrom: 'restore', inject: (r) => r.engines.ferret.kill(), restore: (r) => r.engines.ferret.start() },
  'nats-kill': { what: 'NATS SIGKILL, restarted', healsFrom: 'restore', inject: (r) => r.engines.nats.kill(), restore: (r) => r.engines.nats.start() },
  'minio-kill': { what: 'MinIO SIGKILL, restarted (every 4th message a 1–2 s WAV)', healsFrom: 'restore', inject: (r) => r.engines.minio.kill(), restore: (r) => r.engines.minio.start(), load: { audioEvery: 4 } },
  'gateway-kill': roleFault('one of two gateways SIGKILL, a new one started', (r) => r.gateways, 'kill'),
  'worker-kill': roleFault('one of two workers SIGKILL, a new one started', (r) => r.workers, 'kill'),
  'projector-kill': roleFault('the projector SIGKILL, a new one started', (r) => [r.projector], 'kill'),
  'worker-term': roleFault('one of two workers SIGTERM (graceful), a new one started', (r) => r.workers, 'stop'),
};

/** Statuses a client may retry on (the others tell it to give up). */
const RETRYABLE = new Set(['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'ABORTED']);

interface StreamRecord {
  gen: number;
  gateway: string;
  resumeAfter?: number;
  openedAt: number;
  welcomedAt?: number;
  endedAt?: number;
  /** The status it ended with. */
  end?: string;
}

interface Sent {
  cm: string;
  content: UserMessage['content'];
  sentAt: number;
  messageId?: string;
  acceptedSeq?: number;
  /** Its conversation (its partition) when it was accepted. */
  conversationId?: string;
  /** When its first outcome (reply or processing failure) reached the client. */
  outcomeAt?: number;
  /** Refused before the log with a status the client must not retry. */
  refused?: string;
  /** Retryable refusal: resend at this time. */
  resendAt?: number;
  /** Outcomes seen, by stream (a replay on a later stream is not a duplicate delivery). */
  seen: Map<number, number>;
}

/**
 * A client as a careful app would write it: one stream at a time, on its home
 * gateway or the next one; reconnects after `retry-after-ms` with its
 * conversation and `x-resume-after`; resends (same key) what was never
 * acknowledged; retries what was refused as retryable.
 */
class FaultClient {
  readonly sent = new Map<string, Sent>();
  private readonly byId = new Map<string, Sent>();
  /** Every non-OK status seen, as `ChatError CODE` or `stream CODE`, with the first words that came with it. */
  readonly statuses = new Map<string, number>();
  readonly samples = new Map<string, string>();
  stream?: ChatStream;
  sessionId?: string;
  /** Every stream it opened: on which gateway, with which x-resume-after, when welcomed and when it ended. */
  readonly streams: StreamRecord[] = [];
  private gen = 0;
  private conversationId?: string;
  private maxSeq = 0;
  private lastProgress = Date.now();
  maxStallMs = 0;
  reconnects = 0;
  private n = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(readonly id: string, private readonly home: number, private readonly gateways: () => RoleProcess[], private readonly auth: TokenAuthority, private readonly chat: (g: RoleProcess) => ChatServiceClient) {
    this.loop = this.connectLoop();
  }

  get welcomed(): boolean {
    return this.sessionId !== undefined && this.stream !== undefined && !this.stream.isDone();
  }

  private note(where: 'ChatError' | 'stream', code: string, details: string): void {
    if (code === 'OK' || code === 'CANCELLED') return;
    const key = `${where} ${code}`;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
    if (!this.samples.has(key)) this.samples.set(key, details.slice(0, 200));
  }

  private outstanding(): number {
    let n = 0;
    for (const m of this.sent.values()) if (m.outcomeAt === undefined && m.refused === undefined) n++;
    return n;
  }

  /** Called on every tick and frame: the longest time with a message outstanding and nothing received. */
  tick(now = Date.now()): void {
    // Nothing awaited on an open stream is no stall; a client without a stream is stalled whatever it awaits.
    if (this.welcomed && this.outstanding() === 0) {
      this.lastProgress = now;
      return;
    }
    this.maxStallMs = Math.max(this.maxStallMs, now - this.lastProgress);
    if (!this.welcomed) return;
    for (const m of this.sent.values()) {
      if (m.resendAt !== undefined && m.resendAt <= now) {
        m.resendAt = undefined;
        this.stream!.send({ clientMessageId: m.cm, content: m.content });
      }
    }
  }

  send(content: UserMessage['content']): void {
    if (!this.welcomed) return;
    const cm = `${this.id}-${++this.n}`;
    if (this.outstanding() === 0) this.lastProgress = Date.now();
    this.sent.set(cm, { cm, content, sentAt: Date.now(), seen: new Map() });
    this.stream!.send({ clientMessageId: cm, content });
  }

  private onFrame(gen: number, f: ServerFrame): void {
    const now = Date.now();
    this.tick(now);
    this.lastProgress = now;
    const fr = f.frame;
    const outcome = (id: string, seq: number) => {
      const m = this.byId.get(id);
      if (!m) return false;
      m.outcomeAt ??= now;
      m.seen.set(gen, (m.seen.get(gen) ?? 0) + 1);
      this.maxSeq = Math.max(this.maxSeq, seq);
      return true;
    };
    switch (fr?.$case) {
      case 'welcome':
        this.sessionId = fr.welcome.sessionId;
        this.streams.find((s) => s.gen === gen)!.welcomedAt = now;
        this.conversationId = fr.welcome.conversationId;
        // What was sent on a stream that died before its Accepted: the same key again.
        for (const m of this.sent.values()) if (m.messageId === undefined && m.refused === undefined) m.resendAt = now;
        break;
      case 'accepted': {
        const m = this.sent.get(fr.accepted.clientMessageId);
        if (m && m.messageId === undefined) {
          m.messageId = fr.accepted.messageId;
          m.acceptedSeq = Number(fr.accepted.seq);
          m.conversationId = this.conversationId;
          this.byId.set(m.messageId, m);
        }
        this.maxSeq = Math.max(this.maxSeq, Number(fr.accepted.seq));
        break;
      }
      case 'response':
        outcome(fr.response.inReplyTo, Number(fr.response.seq));
        break;
      case 'error': {
        const e = fr.error;
        this.note('ChatError', e.code, e.message);
        if (outcome(e.inReplyTo, Number(e.seq))) break;
        const m = this.sent.get(e.inReplyTo);
        if (!m || m.messageId !== undefined) break;
        if (RETRYABLE.has(e.code)) m.resendAt = now + Math.min(Math.max(Number(e.retryAfterMs) || 500, 100), 3_000);
        else m.refused = e.code;
        break;
      }
      default:
        break;
    }
  }

  /** Resume from just before the oldest accepted message still without its outcome (replays are de-duplicated here). */
  private resumeAfter(): number {
    let oldest = Infinity;
    for (const m of this.sent.values()) if (m.acceptedSeq !== undefined && m.outcomeAt === undefined) oldest = Math.min(oldest, m.acceptedSeq);
    return oldest === Infinity ? this.maxSeq : oldest - 1;
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 0; this.running; attempt++) {
      const list = this.gateways();
      const g = list[(this.home + attempt) % list.length]!;
      const md = new Metadata();
      md.set('authorization', `Bearer ${await this.auth.mint(this.id)}`);
      md.set('x-timezone', 'Europe/Paris');
      if (this.conversationId) {
        md.set('x-conversation-id', this.conversationId);
        md.set('x-resume-after', String(this.resumeAfter()));
      }
      const gen = ++this.gen;
      this.sessionId = undefined;
      const record: StreamRecord = { gen, gateway: g.name, resumeAfter: this.conversationId ? this.resumeAfter() : undefined, openedAt: Date.now() };
      this.streams.push(record);
      const s = new ChatStream(this.chat(g).chat(md));
      this.stream = s;
      s.call.on('data', (f: ServerFrame) => this.onFrame(gen, f));
      const st = await s.status;
      record.endedAt = Date.now();
      record.end = status[st.code] ?? String(st.code);
      this.sessionId = undefined;
      if (!this.running) break;
      this.note('stream', status[st.code] ?? String(st.code), st.details);
      this.reconnects++;
      // Stay on a gateway that welcomed us; move on from one that did not.
      if (s.frames.some((f) => f.frame?.$case === 'welcome')) attempt--;
      const wait = Number(st.metadata?.get('retry-after-ms')[0] ?? 300);
      await new Promise((r) => setTimeout(r, Math.min(Math.max(wait, 100), 3_000)));
    }
  }

  async close(): Promise<void> {
    this.running = false;
    this.stream?.cancel();
    await this.loop;
  }
}

export interface UndeliveredSample {
  messageId: string;
  client: string;
  acceptedSeq?: number;
  outcome: { partition: number; seq: number; appendedAt: string } | null;
  /** The stream open (welcomed, not ended) when the outcome was appended: gateway and since when; null if none. */
  streamAtAppend: { gateway: string; welcomedAt: string; endedAt?: string; end?: string } | null;
  /** Streams opened after the outcome was appended. */
  laterStreams: { gateway: string; resumeAfter?: number; welcomedAt?: string; end?: string }[];
  connectedAtEnd: boolean;
}

export interface FaultResult {
  fault: FaultName;
  what: string;
  load: Load;
  sent: number;
  accepted: number;
  /** Accepted, but the message is not in the log. */
  lost: number;
  /** Message ids with more than one outcome (reply or failure) in the log. */
  duplicated: number;
  /** Accepted, in the log, no outcome in the log by the end. */
  unanswered: number;
  /** Outcome in the log, never seen by its client (still connected at the end). */
  undelivered: number;
  /** A few message ids of each kind of miss, to look up in the roles' logs (test-results/cluster/). */
  examples?: Partial<Record<'lost' | 'unanswered' | 'undelivered', string[]>>;
  /** Outcomes delivered twice on one stream. */
  deliveredTwice: number;
  /** ProcessingFailed in the log for accepted messages. */
  failed: number;
  /** Sent, refused with a status the client must not retry. */
  refused: number;
  /** Sent, never acknowledged nor refused. */
  neverAcked: number;
  /** Non-retryable statuses seen by clients (ChatError and stream ends), by code. */
  nonRetryable: Record<string, number>;
  /** The first details seen with each status (for the record). */
  statusDetails: Record<string, string>;
  /** Retryable statuses seen, by code (for the record). */
  retryable: Record<string, number>;
  /** `disconnected`: clients without a welcomed stream (every client must be back by then). */
  admission: { at: string; slots: number; openStreams: number; disconnected: number; maxClients: number; duplicateClients: number; streamsWithoutSlot: number; slotsWithoutStream: number; connectedMetric: number; ok: boolean; error?: string };
  baselineP99Ms: number;
  longestStallMs: number;
  /** The longest wait of one accepted message for its outcome (send → outcome on the client). */
  longestReplyMs: number | null;
  /** From the restore (an engine) or the kill (a role) until the last slow outcome (latency over max(3 × baseline p99, 2 s)); null if some never came. */
  recoveryMs: number | null;
  reconnects: number;
  /** The invariants of issue 10 that failed (empty: the fault is survived). */
  violations: string[];
  durationMs: number;
  /** Where the time went (not an invariant): see Probe. */
  probe: ProbeSummary;
  /** A few lost messages: what their Accepted said and what the log holds at that position. */
  lostSamples: { messageId: string; client: string; sentAt: string; acceptedSeq?: number; partition: number; logHolds?: string; logEnd: number }[];
  /**
   * Every undelivered outcome, to explain it: the message, its client, where and when the outcome was
   * appended, the stream the client had then (gateway; none if it was between streams) and the
   * streams it opened after (each resume's x-resume-after: a resume after the outcome's seq cannot replay it).
   */
  undeliveredSamples: UndeliveredSample[];
  /** How far the read-back of the log went (see readToStableEnd): a partition it did not reach makes lost and unanswered unknown. */
  readback: ReadbackEnd;
  /** Accepted messages whose Accepted named a position past the log's end as last fetched (the broker lost or hides them). */
  acceptedPastEnd: number;
}

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One fault, one fresh cluster (its own Kafka prefix and database) on the
 * given engines: warm-up load, the fault at a fixed time, the restore, more
 * load, a drain, then the log read back and everything scored.
 */
export async function runFault(engines: PrivateEngines, fault: FaultName, base: Partial<Load> = {}, log: (line: string) => void = () => undefined): Promise<FaultResult> {
  const spec = FAULT_SPECS[fault];
  const load: Load = { ...DEFAULT_LOAD, ...base, ...spec.load };
  const started = Date.now();
  const maxClients = Math.max(50, load.clients);
  const cluster = new Cluster({
    ...engines.env(), KAFKA_PARTITIONS: String(PARTITIONS), CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '600000', CHATFLOW_SIM_DELAY_SCALE: '0.5',
    CHATFLOW_LEASE_MS: String(load.leaseMs), CHATFLOW_MAX_CLIENTS: String(maxClients), CHATFLOW_STT: 'none', CHATFLOW_TTS: 'none',
  });
  const grpc = new Map<string, ChatServiceClient>();
  const chat = (g: RoleProcess) => {
    let c = grpc.get(g.grpc!);
    if (!c) grpc.set(g.grpc!, (c = new ChatServiceClient(g.grpc!, credentials.createInsecure())));
    return c;
  };
  const clients: FaultClient[] = [];
  try {
    const roles: Roles = {
      engines, cluster,
      projector: await cluster.start('projector', 'projector'),
      workers: [await cluster.start('worker', 'worker-1'), await cluster.start('worker', 'worker-2')],
      gateways: [await cluster.start('gateway', 'gateway-1'), await cluster.start('gateway', 'gateway-2')],
    };
    log(`${fault}: cluster ${cluster.run} up in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);
    for (let i = 0; i < load.clients; i++) clients.push(new FaultClient(`${fault}-${i}`, i, () => roles.gateways, auth, chat));
    for (const end = Date.now() + 60_000; clients.some((c) => !c.welcomed) && Date.now() < end; ) await sleep(100);
    if (clients.some((c) => !c.welcomed)) throw new Error(`${clients.filter((c) => !c.welcomed).length} clients were not welcomed within 60 s`);

    const payloads = new Payloads();
    let sending = true;
    let tickN = 0;
    const sender = (async () => {
      for (; sending; tickN++) {
        const t0 = Date.now();
        clients.forEach((c, i) => {
          const audio = load.audioEvery > 0 && (tickN + i) % load.audioEvery === 0;
          c.send(audio ? payloads.content('audio') : payloads.content('text'));
        });
        await sleep(Math.max(0, 1000 / load.rate - (Date.now() - t0)));
      }
    })();
    const ticker = setInterval(() => clients.forEach((c) => c.tick()), 100);
    const probe = new Probe(cluster.env().MONGODB_URI, () => [roles.projector, ...roles.workers, ...roles.gateways]);
    try {
      await sleep(load.warmupMs);
      const faultAt = Date.now();
      log(`${fault}: inject (${spec.what})`);
      await spec.inject(roles);
      const injectedAt = Date.now();
      await sleep(Math.max(0, load.faultMs - (Date.now() - faultAt)));
      await spec.restore(roles);
      const restoredAt = Date.now();
      log(`${fault}: restored after ${((restoredAt - faultAt) / 1000).toFixed(1)} s`);

      // The admission invariants, one lease period (and a sweep) after the fault.
      await sleep(load.leaseMs + leaseTiming(load.leaseMs).sweepEveryMs);
      const admission = await checkAdmission(cluster, roles.gateways, clients, maxClients);
      await sleep(Math.max(0, load.afterMs - (Date.now() - restoredAt)));
      sending = false;
      await sender;

      // Drain: every accepted message's outcome, or a minute.
      const pending = () => clients.flatMap((c) => [...c.sent.values()].filter((m) => m.messageId !== undefined && m.outcomeAt === undefined));
      for (const end = Date.now() + 60_000; pending().length > 0 && Date.now() < end; ) await sleep(500);
      // A late copy (a zombie worker, the bus catching up) comes within seconds.
      await sleep(3_000);
      const readback = await readLog(cluster);
      // A reply that reached the log at the end of the drain still has a few seconds to reach its client
      // (the gateway fetches a reply overdue on the bus from the read model): only then is it undelivered.
      const unseen = () => clients.flatMap((c) => [...c.sent.values()]).filter((m) => m.messageId !== undefined && m.outcomeAt === undefined && (readback.responses.has(m.messageId) || readback.failures.has(m.messageId)));
      for (const end = Date.now() + 15_000; unseen().length > 0 && Date.now() < end; ) await sleep(500);
      const endAt = Date.now();
      clearInterval(ticker);
      return score({ fault, what: spec.what, load, clients, readback, admission, faultAt, healFrom: spec.healsFrom === 'inject' ? injectedAt : restoredAt, endAt, started, probe: await probe.stop(faultAt) });
    } finally {
      sending = false;
      clearInterval(ticker);
      await probe.stop(0);
      await sender;
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    for (const c of grpc.values()) c.close();
    await cluster.stopAll();
    await cluster.dropData().catch(() => undefined);
  }
}

export interface ProbeSummary {
  /** The slowest answer of the database to a one-document read, and when it was sent (ms after the fault). */
  mongoSlowestMs: number;
  mongoSlowestAt: number;
  /** Per role process: its longest event-loop stall seen (ms), from its own `nodejs_eventloop_lag_max_seconds`. */
  eventLoopLagMs: Record<string, number>;
}

/**
 * Where the time goes during a run, to tell a slow database from a busy
 * process: a read of one document from the registry every 500 ms on a
 * connection of its own (timed when it comes back, however late), and every
 * role's longest event-loop stall, read from its metrics every 2 s.
 */
class Probe {
  private readonly mongo: MongoClient;
  private readonly reads: { at: number; ms: number }[] = [];
  private readonly lag = new Map<string, number>();
  private running = true;
  private readonly loops: Promise<void>[];
  private result?: Promise<ProbeSummary>;

  constructor(uri: string, roles: () => RoleProcess[]) {
    const mongo = (this.mongo = new MongoClient(uri, { serverSelectionTimeoutMS: 60_000 }));
    this.loops = [
      (async () => {
        for (; this.running; await sleep(500)) {
          const at = Date.now();
          await mongo.db().collection(CONNECTIONS_COLLECTION).findOne({}).catch(() => undefined);
          this.reads.push({ at, ms: Date.now() - at });
        }
      })(),
      (async () => {
        for (; this.running; await sleep(2_000)) {
          await Promise.all(roles().map(async (r) => {
            const s = await r.metric('chatflow_nodejs_eventloop_lag_max_seconds').catch(() => NaN);
            if (s >= 0) this.lag.set(r.name, Math.max(this.lag.get(r.name) ?? 0, Math.round(s * 1000)));
          }));
        }
      })(),
    ];
  }

  stop(faultAt: number): Promise<ProbeSummary> {
    this.running = false;
    this.result ??= Promise.all(this.loops).then(async () => {
      await this.mongo.close().catch(() => undefined);
      const slowest = this.reads.reduce((a, b) => (b.ms > a.ms ? b : a), { at: faultAt, ms: 0 });
      return { mongoSlowestMs: slowest.ms, mongoSlowestAt: slowest.at - faultAt, eventLoopLagMs: Object.fromEntries(this.lag) };
    });
    return this.result;
  }
}

/**
 * Issue 10's admission invariants, from the registry's documents and the
 * clients' side: ≤ MAX_CLIENTS slots, one per client, every welcomed stream
 * holding one, no slot without a live stream of its client (one still waiting
 * for its Welcome may hold its slot already), and every client back. Snapshots every 500 ms for up to
 * 5 s: the first consistent one is kept, else the last.
 */
async function checkAdmission(cluster: Cluster, gateways: RoleProcess[], clients: FaultClient[], maxClients: number): Promise<FaultResult['admission']> {
  const mongo = new MongoClient(cluster.env().MONGODB_URI, { serverSelectionTimeoutMS: 5_000 });
  let last: FaultResult['admission'] | undefined;
  try {
    for (const end = Date.now() + 5_000; ; await sleep(500)) {
      const at = new Date().toISOString();
      try {
        const slots = (await mongo.db().collection(CONNECTIONS_COLLECTION).find({}).toArray()) as unknown as { _id: string; clientId: string }[];
        const welcomed = clients.filter((c) => c.welcomed);
        const live = new Set(clients.filter((c) => c.stream && !c.stream.isDone()).map((c) => c.id));
        // A failed read of a gateway's /metrics is read again before it counts (one NaN once scored a MinIO kill a miss).
        const connectedMetric = (await Promise.all(gateways.map((g) => retry(() => g.metric('chatflow_clients_connected'), { attempts: 3, baseMs: 200 })))).reduce((a, b) => a + b, 0);
        const ids = new Set(slots.map((x) => String(x._id)));
        const a = {
          at, slots: slots.length, openStreams: welcomed.length, disconnected: clients.length - welcomed.length, maxClients, connectedMetric,
          duplicateClients: slots.length - new Set(slots.map((x) => x.clientId)).size,
          streamsWithoutSlot: welcomed.filter((c) => !ids.has(c.sessionId!)).length,
          slotsWithoutStream: slots.filter((x) => !live.has(x.clientId)).length,
        };
        const ok = a.disconnected === 0 && a.slots <= maxClients && a.duplicateClients === 0 && a.streamsWithoutSlot === 0 && a.slotsWithoutStream === 0 && connectedMetric >= welcomed.length && connectedMetric <= live.size;
        last = { ...a, ok };
      } catch (e) {
        const open = clients.filter((c) => c.welcomed).length;
        last = { at, slots: -1, openStreams: open, disconnected: clients.length - open, maxClients, connectedMetric: NaN, duplicateClients: 0, streamsWithoutSlot: 0, slotsWithoutStream: 0, ok: false, error: (e as Error).message };
      }
      if (last.ok || Date.now() > end) return last;
    }
  } finally {
    await mongo.close().catch(() => undefined);
  }
}

function score(r: {
  fault: FaultName; what: string; load: Load; clients: FaultClient[]; readback: Awaited<ReturnType<typeof readLog>>;
  admission: FaultResult['admission']; faultAt: number; healFrom: number; endAt: number; started: number; probe: ProbeSummary;
}): FaultResult {
  const msgs = r.clients.flatMap((c) => [...c.sent.values()]);
  const accepted = msgs.filter((m) => m.messageId !== undefined);
  const outcomes = (id: string) => (r.readback.responses.get(id) ?? 0) + (r.readback.failures.get(id) ?? 0);
  const ids = new Set([...r.readback.received, ...r.readback.responses.keys(), ...r.readback.failures.keys()]);
  const latency = (m: Sent) => (m.outcomeAt ?? Infinity) - m.sentAt;
  const baseline = accepted.filter((m) => m.sentAt < r.faultAt - 1_000 && m.outcomeAt !== undefined).map(latency);
  const baselineP99Ms = quantile(baseline, 0.99);
  const slow = Math.max(3 * baselineP99Ms, 2_000);
  const lastSlow = accepted.filter((m) => latency(m) > slow && (m.outcomeAt ?? Infinity) > r.healFrom);
  const recoveryMs = lastSlow.some((m) => m.outcomeAt === undefined) ? null : Math.max(0, ...lastSlow.map((m) => m.outcomeAt! - r.healFrom));
  const codes = (keep: (code: string) => boolean) => {
    const out: Record<string, number> = {};
    for (const c of r.clients) for (const [key, n] of c.statuses) if (keep(key.split(' ')[1]!)) out[key] = (out[key] ?? 0) + n;
    return out;
  };
  const lost = accepted.filter((m) => !r.readback.received.has(m.messageId!));
  const unanswered = accepted.filter((m) => r.readback.received.has(m.messageId!) && outcomes(m.messageId!) === 0);
  const undelivered = accepted.filter((m) => outcomes(m.messageId!) > 0 && m.outcomeAt === undefined);
  const some = (ms: typeof accepted) => (ms.length > 0 ? ms.slice(0, 5).map((m) => m.messageId!) : undefined);
  const res: Omit<FaultResult, 'violations'> = {
    fault: r.fault, what: r.what, load: r.load,
    sent: msgs.length,
    accepted: accepted.length,
    lost: lost.length,
    duplicated: [...ids].filter((id) => outcomes(id) > 1).length,
    unanswered: unanswered.length,
    undelivered: undelivered.length,
    examples: { lost: some(lost), unanswered: some(unanswered), undelivered: some(undelivered) },
    deliveredTwice: accepted.filter((m) => [...m.seen.values()].some((n) => n > 1)).length,
    failed: accepted.filter((m) => (r.readback.failures.get(m.messageId!) ?? 0) > 0).length,
    refused: msgs.filter((m) => m.messageId === undefined && m.refused !== undefined).length,
    neverAcked: msgs.filter((m) => m.messageId === undefined && m.refused === undefined).length,
    nonRetryable: codes((c) => !RETRYABLE.has(c)),
    retryable: codes((c) => RETRYABLE.has(c)),
    statusDetails: Object.fromEntries(r.clients.flatMap((c) => [...c.samples])),
    admission: r.admission,
    baselineP99Ms,
    longestStallMs: Math.max(0, ...r.clients.map((c) => c.maxStallMs)),
    longestReplyMs: accepted.some((m) => m.outcomeAt === undefined) ? null : Math.max(0, ...accepted.map(latency)),
    recoveryMs,
    reconnects: r.clients.reduce((n, c) => n + c.reconnects, 0),
    durationMs: r.endAt - r.started,
    probe: r.probe,
    undeliveredSamples: r.clients.flatMap((c) => [...c.sent.values()].filter((m) => m.messageId !== undefined && outcomes(m.messageId) > 0 && m.outcomeAt === undefined).map((m) => undeliveredSample(c, m, r.readback))),
    readback: r.readback.end,
    acceptedPastEnd: accepted.filter((m) => m.acceptedSeq !== undefined && m.acceptedSeq > (r.readback.end.last[partitionFor(m.conversationId ?? '', PARTITIONS)] ?? 0)).length,
    lostSamples: accepted.filter((m) => !r.readback.received.has(m.messageId!)).slice(0, 10).map((m) => {
      const partition = partitionFor(m.conversationId ?? '', PARTITIONS);
      const logEnd = Math.max(0, ...[...r.readback.at.keys()].filter((k) => k.startsWith(`${partition}/`)).map((k) => Number(k.split('/')[1])));
      return { messageId: m.messageId!, client: m.cm, sentAt: new Date(m.sentAt).toISOString(), acceptedSeq: m.acceptedSeq, partition, logHolds: r.readback.at.get(`${partition}/${m.acceptedSeq}`), logEnd };
    }),
  };
  return { ...res, violations: violations(res) };
}

const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());

function undeliveredSample(c: FaultClient, m: Sent, readback: Awaited<ReturnType<typeof readLog>>): UndeliveredSample {
  const o = readback.outcomeAt.get(m.messageId!);
  const at = o?.time ?? 0;
  const open = c.streams.find((s) => s.welcomedAt !== undefined && s.welcomedAt <= at && (s.endedAt === undefined || s.endedAt > at));
  return {
    messageId: m.messageId!, client: m.cm, acceptedSeq: m.acceptedSeq,
    outcome: o ? { partition: o.partition, seq: o.seq, appendedAt: iso(o.time)! } : null,
    streamAtAppend: open ? { gateway: open.gateway, welcomedAt: iso(open.welcomedAt)!, endedAt: iso(open.endedAt), end: open.end } : null,
    laterStreams: c.streams.filter((s) => s.openedAt > at).map((s) => ({ gateway: s.gateway, resumeAfter: s.resumeAfter, welcomedAt: iso(s.welcomedAt), end: s.end })),
    connectedAtEnd: c.welcomed,
  };
}

/** Issue 10's invariants, each in words with its number when it fails. */
export function violations(r: Omit<FaultResult, 'violations'>): string[] {
  const v: string[] = [];
  if (r.accepted === 0) v.push('nothing was accepted');
  const short = r.readback?.short ?? [];
  if (short.length > 0) v.push(`the read-back of the log stopped short (lost and unanswered unknown): ${short.map((x) => `partition ${x.partition} read to ${x.read} of ${x.end}`).join(', ')}`);
  if ((r.acceptedPastEnd ?? 0) > 0) v.push(`${r.acceptedPastEnd} accepted messages at positions past the log's end`);
  const eg = (k: 'lost' | 'unanswered' | 'undelivered') => (r.examples?.[k] ? ` (e.g. ${r.examples[k]!.join(', ')})` : '');
  if (r.lost > 0) v.push(`${r.lost} accepted messages missing from the log${eg('lost')}`);
  if (r.duplicated > 0) v.push(`${r.duplicated} messages with more than one reply or failure in the log`);
  if (r.unanswered > 0) v.push(`${r.unanswered} accepted messages never answered${eg('unanswered')}`);
  if (r.undelivered > 0) v.push(`${r.undelivered} replies in the log never delivered to their connected client${eg('undelivered')}`);
  if (r.failed > 0) v.push(`${r.failed} accepted messages failed for good (a transient fault)`);
  const nr = Object.entries(r.nonRetryable);
  if (nr.length > 0) v.push(`non-retryable statuses for a transient fault: ${nr.map(([c, n]) => `${c} ×${n}`).join(', ')}`);
  const a = r.admission;
  if (!a.ok) v.push(`admission one lease after: ${a.error ?? `${a.slots} slots for ${a.openStreams} open streams (max ${a.maxClients}), ${a.disconnected} clients not back, ${a.duplicateClients} clients twice, ${a.streamsWithoutSlot} streams without a slot, ${a.slotsWithoutStream} slots without a stream, gateways count ${a.connectedMetric}`}`);
  return v;
}

const secs = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s`);

/** The per-fault table (several runs of a fault: one row each). */
export function markdownTable(results: FaultResult[]): string {
  const head = '| fault | accepted | lost | duplicated | unanswered | undelivered | failed | non-retryable statuses | admission 1 lease after | longest stall | longest reply | recovery | verdict |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |';
  const rows = results.map((r) => {
    const nr = Object.entries(r.nonRetryable).map(([c, n]) => `${c} ×${n}`).join(', ') || '0';
    const a = r.admission;
    const adm = a.ok ? `ok (${a.slots} slots, ${a.openStreams} streams)` : a.error ? `error: ${a.error}` : `**${a.slots} slots / ${a.openStreams} streams, ${a.disconnected} not back, ${a.duplicateClients} twice, ${a.streamsWithoutSlot} without slot, ${a.slotsWithoutStream} stale, metric ${a.connectedMetric}**`;
    const bold = (n: number) => (n > 0 ? `**${n}**` : '0');
    return `| ${r.fault} | ${r.accepted} | ${bold(r.lost)} | ${bold(r.duplicated)} | ${bold(r.unanswered)} | ${bold(r.undelivered)} | ${bold(r.failed)} | ${nr === '0' ? nr : `**${nr}**`} | ${adm} | ${secs(r.longestStallMs)} | ${secs(r.longestReplyMs)} | ${secs(r.recoveryMs)} | ${r.violations.length === 0 ? 'hit' : 'miss'} |`;
  });
  return [head, ...rows].join('\n');
}

/** One row per fault over all its runs: sums of what must be 0, ranges of the rest, hits out of runs. */
export function summaryTable(results: FaultResult[]): string {
  const range = (xs: number[], f: (x: number) => string = String) => {
    const lo = f(Math.min(...xs)), hi = f(Math.max(...xs));
    return lo === hi ? lo : `${lo}–${hi}`;
  };
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const head = '| fault | runs | accepted | lost | duplicated | unanswered | undelivered | failed for good | non-retryable statuses | admission 1 lease after | longest stall (s) | recovery (s) | hit |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |';
  const rows = FAULTS.map((f) => results.filter((r) => r.fault === f)).filter((rs) => rs.length > 0).map((rs) => {
    const sum = (k: 'lost' | 'duplicated' | 'unanswered' | 'undelivered' | 'failed') => {
      const n = rs.map((r) => r[k]);
      return n.some((x) => x > 0) ? `**${n.join(', ')}**` : '0';
    };
    const codes: Record<string, number> = {};
    for (const r of rs) for (const [c, n] of Object.entries(r.nonRetryable)) codes[c] = (codes[c] ?? 0) + n;
    const nr = Object.entries(codes).map(([c, n]) => `${c} ×${n}`).join(', ');
    const admOk = rs.filter((r) => r.admission.ok).length;
    const rec = rs.map((r) => r.recoveryMs);
    const recovery = rec.some((x) => x === null) ? `${rec.filter((x) => x === null).length} never; ${rec.some((x) => x !== null) ? range(rec.filter((x): x is number => x !== null), s) : ''}` : range(rec as number[], s);
    const hits = rs.filter((r) => r.violations.length === 0).length;
    return `| ${rs[0]!.fault} | ${rs.length} | ${range(rs.map((r) => r.accepted))} | ${sum('lost')} | ${sum('duplicated')} | ${sum('unanswered')} | ${sum('undelivered')} | ${sum('failed')} | ${nr ? `**${nr}**` : '0'} | ${admOk === rs.length ? `ok ${admOk}/${rs.length}` : `**ok ${admOk}/${rs.length}**`} | ${range(rs.map((r) => r.longestStallMs), s)} | ${recovery} | ${hits === rs.length ? `${hits}/${rs.length}` : `**${hits}/${rs.length}**`} |`;
  });
  return [head, ...rows].join('\n');
}

/** The read-back's reach and every undelivered outcome, in words (for the markdown file). */
export function explain(r: FaultResult): string {
  const rb = r.readback;
  const moved = rb.moved.map((m) => `partition ${m.partition} ${m.first} → ${m.last}`).join(', ');
  const short = rb.short.map((x) => `partition ${x.partition} read to ${x.read} of ${x.end}`).join(', ');
  const lines = [`read-back: the log's end fetched ${rb.fetches} times; ${moved ? `moved after the first fetch: ${moved}` : 'the first fetch was the end'}; ${short ? `**stopped short: ${short}**` : 'read to the end'}; ${r.acceptedPastEnd} accepted past the end`];
  for (const u of r.undeliveredSamples) {
    const o = u.outcome ? `outcome at ${u.outcome.partition}/${u.outcome.seq}, appended ${u.outcome.appendedAt.slice(11, 23)}` : 'outcome not placed';
    const at = u.streamAtAppend ? `on a stream of ${u.streamAtAppend.gateway} then (welcomed ${u.streamAtAppend.welcomedAt.slice(11, 23)}, ended ${u.streamAtAppend.endedAt?.slice(11, 23) ?? 'never'} ${u.streamAtAppend.end ?? ''})` : 'between streams then';
    const later = u.laterStreams.map((s) => `${s.gateway} resume-after ${s.resumeAfter ?? '-'} ${s.welcomedAt ? `welcomed ${s.welcomedAt.slice(11, 23)}` : 'not welcomed'}${s.end ? ` ended ${s.end}` : ''}`).join('; ');
    lines.push(`undelivered ${u.messageId} (${u.client}, accepted at ${u.acceptedSeq}): ${o}; ${at}; later streams: ${later || 'none'}; connected at the end: ${u.connectedAtEnd}`);
  }
  return lines.map((l) => `  - ${l}`).join('\n');
}
