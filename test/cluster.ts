import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Metadata } from '@grpc/grpc-js';
import { MongoClient } from 'mongodb';
import pino from 'pino';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaEventLog, topicName } from '../src/eventlog/kafka';
import { readToStableEnd, type ReadbackEnd } from './faults-readback';
import { TokenAuthority } from '../src/auth/tokens';
import type { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { ChatStream } from './harness';
import { dropAllCollections } from '../src/readstore/mongo';
import { engineEnv } from './engines';
import { bucketOf, removeBucket } from './s3-buckets';

const ROOT = resolve(__dirname, '..');
/** Where the processes' logs go (git-ignored). */
export const LOG_DIR = join(ROOT, 'test-results', 'cluster');

export type Role = 'gateway' | 'worker' | 'projector' | 'all';

/**
 * Waits for a ChatFlow process's `ChatFlow ready` line (JSON logs on stdout) and returns it;
 * every JSON line read goes into `logs`. Rejects when the process exits first or the time is up.
 */
export function waitReady(
  proc: ChildProcess,
  opts: { name: string; timeoutMs: number; logs: Record<string, unknown>[]; stderr: () => string },
): Promise<Record<string, unknown>> {
  const { name, timeoutMs, logs, stderr } = opts;
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${name} was not ready within ${timeoutMs / 1000} s; last logs: ${JSON.stringify(logs.slice(-5))} ${stderr()}`)), timeoutMs);
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(rec);
      if (rec.msg === 'ChatFlow ready') {
        clearTimeout(timer);
        res(rec);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${name} exited with ${code} before it was ready: ${JSON.stringify(logs.slice(-5))} ${stderr()}`));
    });
  });
}

/** One ChatFlow process of a test cluster. */
export interface RoleProcess {
  readonly role: Role;
  readonly name: string;
  readonly proc: ChildProcess;
  /** host:port of its gRPC server (gateways and `all`). */
  readonly grpc?: string;
  readonly http: string;
  /** Its log records (JSON lines), for assertions on what it said. */
  readonly logs: Record<string, unknown>[];
  /** Reads one metric from its /metrics (sum over label sets). */
  metric(name: string): Promise<number>;
  /** Graceful stop (SIGTERM) and wait for exit. */
  stop(): Promise<void>;
  /** kill -9 and wait for exit. */
  kill(): Promise<void>;
}

/**
 * Starts ChatFlow processes on the real engines of the running stack, isolated
 * from other runs by their own Kafka topic prefix, MongoDB database and S3 bucket.
 */
export class Cluster {
  readonly run = randomUUID().slice(0, 8);
  readonly secret = randomBytes(32).toString('hex');
  readonly processes: RoleProcess[] = [];
  private dataDir?: string;

  constructor(private readonly extraEnv: Record<string, string> = {}) {}

  env(): Record<string, string> {
    // A private engine given in extraEnv (test/private-engines.ts) replaces the stack's.
    const engines = { ...engineEnv(), ...this.extraEnv };
    const mongo = new URL(engines.MONGODB_URI!);
    mongo.pathname = `/chatflow_e2e_${this.run}`;
    return {
      ...engines,
      MONGODB_URI: mongo.toString(),
      KAFKA_PREFIX: `e2e-${this.run}.`,
      S3_BUCKET: `chatflow-e2e-${this.run}`,
      CHATFLOW_AUTH_SECRET: this.secret,
      CHATFLOW_GRPC_ADDR: '127.0.0.1:0',
      CHATFLOW_HTTP_ADDR: '127.0.0.1:0',
      LOG_LEVEL: 'info',
      ...this.extraEnv,
    };
  }

  async start(role: Role, name = `${role}-${this.processes.length + 1}`, env: Record<string, string> = {}, readyMs = 90_000): Promise<RoleProcess> {
    this.dataDir ??= await mkdtemp(join(tmpdir(), `chatflow-cluster-${this.run}-`));
    const proc = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, CHATFLOW_DATA_DIR: join(this.dataDir, name), ...this.env(), CHATFLOW_ROLE: role, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: Record<string, unknown>[] = [];
    let stderr = '';
    // Every process's log is kept on disk too, for whoever reads a failed run.
    await mkdir(LOG_DIR, { recursive: true });
    const file = createWriteStream(join(LOG_DIR, `${this.run}-${name}.log`));
    proc.stdout!.pipe(file);
    proc.stderr!.pipe(file);
    proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    // A projector is ready once its read models caught up with the log: a rebuild takes a while on FerretDB.
    const ready = await waitReady(proc, { name, timeoutMs: readyMs, logs, stderr: () => stderr });
    const exited = new Promise<void>((r) => (proc.exitCode !== null ? r() : proc.once('exit', () => r())));
    const http = String(ready.http);
    const p: RoleProcess = {
      role, name, proc, logs, http,
      grpc: typeof ready.grpc === 'string' ? ready.grpc : undefined,
      metric: async (metric) => {
        const body = await (await fetch(`${http}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
        return body
          .split('\n')
          .filter((l) => l.startsWith(`${metric} `) || l.startsWith(`${metric}{`))
          .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
      },
      stop: async () => {
        proc.kill('SIGTERM');
        await exited;
      },
      kill: async () => {
        proc.kill('SIGKILL');
        await exited;
      },
    };
    this.processes.push(p);
    return p;
  }

  /** Empties the run's MongoDB database and removes its bucket (its Kafka topics are left: they are small and prefixed). */
  async dropData(): Promise<void> {
    const client = await MongoClient.connect(this.env().MONGODB_URI);
    try {
      await dropAllCollections(client.db());
    } finally {
      await client.close();
    }
    await this.removeBucket();
  }

  /** Removes the run's S3 bucket and the media in it (when the run is on S3). */
  async removeBucket(): Promise<void> {
    const env = this.env();
    if (env.S3_ENDPOINT) await removeBucket(bucketOf(env));
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.processes.splice(0).map((p) => (p.proc.exitCode === null && p.proc.signalCode === null ? p.stop() : undefined)));
  }
}

/** What the run's log holds about messages: the ones received, and the outcomes recorded per message id. */
export interface LogReadback {
  /** message_id of every MessageReceived. */
  received: Set<string>;
  /** ResponseProduced per message answered (by in_reply_to). */
  responses: Map<string, number>;
  /** ProcessingFailed per message (by in_reply_to). */
  failures: Map<string, number>;
  /** What each position holds, `<partition>/<seq>` → `<payload case> <message id>` (seq = offset + 1, as Accepted says it). */
  at: Map<string, string>;
  /** Where and when each message's first outcome was appended (by in_reply_to). */
  outcomeAt: Map<string, { partition: number; seq: number; time: number }>;
  /** How far the read went: the log's end fetched first and last, and any partition it did not reach (see readToStableEnd). */
  end: ReadbackEnd;
}

/** Reads the run's conversations topic back from its beginning (a fresh consumer group). */
export async function readLog(cluster: Cluster): Promise<LogReadback> {
  const env = cluster.env();
  const log = await KafkaEventLog.open({ brokers: env.KAFKA_BROKERS.split(','), clientId: 'e2e-audit', prefix: env.KAFKA_PREFIX, partitions: Number(env.KAFKA_PARTITIONS ?? 10), logger: pino({ level: 'silent' }) });
  const out: Omit<LogReadback, 'end'> = { received: new Set(), responses: new Map(), failures: new Map(), at: new Map(), outcomeAt: new Map() };
  const readUpTo = new Map<number, number>();
  const kafka = new Kafka({ clientId: 'e2e-audit-ends', brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const topic = topicName(env.KAFKA_PREFIX ?? '', 'conversations');
  const bump = (m: Map<string, number>, id: string) => m.set(id, (m.get(id) ?? 0) + 1);
  const seen = new Set<string>();
  try {
    const consumer = await log.consume({
      // Many handlers per partition (this one never awaits, so events still count in log order): with one, each event
      // paused its partition until the consumer's next fetch, ~7 events a second per partition, and a read-back of a
      // long run stopped short at its 60 s.
      group: `audit-${Date.now()}-${Math.random().toString(36).slice(2)}`, topics: ['conversations'], fromBeginning: true, concurrencyPerPartition: 256,
      handle: async (e) => {
        // A rebalance of this reader (a slow join on a loaded machine) hands it events again: each counts once.
        const at = `${e.topic}/${e.partition}/${e.offset}`;
        if (seen.has(at)) return;
        seen.add(at);
        const p = e.event.payload;
        if (p?.$case === 'messageReceived') out.received.add(p.messageReceived.messageId);
        const id = p?.$case === 'messageReceived' ? p.messageReceived.messageId : p?.$case === 'responseProduced' ? p.responseProduced.inReplyTo : p?.$case === 'processingFailed' ? p.processingFailed.inReplyTo : '';
        out.at.set(`${e.partition}/${e.offset + 1}`, `${p?.$case} ${id}`);
        readUpTo.set(e.partition, Math.max(readUpTo.get(e.partition) ?? 0, e.offset + 1));
        if ((p?.$case === 'responseProduced' || p?.$case === 'processingFailed') && !out.outcomeAt.has(id)) out.outcomeAt.set(id, { partition: e.partition, seq: e.offset + 1, time: e.event.time?.getTime() ?? 0 });
        if (p?.$case === 'responseProduced') bump(out.responses, p.responseProduced.inReplyTo);
        if (p?.$case === 'processingFailed') bump(out.failures, p.processingFailed.inReplyTo);
      },
    });
    // Not consumer.caughtUp(): its one fetch of the end offsets, made before reading, once came back short after a
    // broker restart (README, the fault matrix's ¹).
    await admin.connect();
    const end = await readToStableEnd({
      endOffsets: async () => new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)] as const)),
      readUpTo: () => readUpTo,
      timeoutMs: 60_000,
    });
    await consumer.stop();
    return { ...out, end };
  } finally {
    await admin.disconnect().catch(() => undefined);
    await log.close();
  }
}

/**
 * Reads the run's log back and counts the outcomes recorded per message:
 * ResponseProduced and ProcessingFailed by the message they answer.
 */
export async function responsesPerMessage(cluster: Cluster, kinds: readonly ('responseProduced' | 'processingFailed')[] = ['responseProduced']): Promise<Map<string, number>> {
  const { responses, failures, end } = await readLog(cluster);
  if (end.short.length > 0) throw new Error(`the log's read-back stopped short: ${JSON.stringify(end.short)}`);
  const counts = new Map<string, number>();
  for (const [kind, m] of [['responseProduced', responses], ['processingFailed', failures]] as const) {
    if (!kinds.includes(kind)) continue;
    for (const [id, n] of m) counts.set(id, (counts.get(id) ?? 0) + n);
  }
  return counts;
}

/** Opens `n` Chat streams for clients `<prefix>-0…` with tokens of the cluster's secret, each past its Welcome. */
export async function welcomedStreams(cluster: Cluster, chat: ChatServiceClient, prefix: string, n: number): Promise<ChatStream[]> {
  const auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);
  return Promise.all(Array.from({ length: n }, async (_, i) => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${await auth.mint(`${prefix}-${i}`)}`);
    md.set('x-timezone', 'Europe/Paris');
    const s = new ChatStream(chat.chat(md));
    await s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 30_000, 'welcome');
    return s;
  }));
}
