import { dropAllCollections } from '../../src/readstore/mongo';
// Mode `stack`: the distributed deployment on the real engines (Kafka, MongoDB
// wire protocol, NATS, S3) started by `npm run stack:up`: two gateways, two
// workers and a projector, each its own process (CHATFLOW_ROLE), clients spread
// over both gateways. Needs the engines' settings in the environment:
//   eval "$(npm run -s stack:env)"
// Every run gets its own Kafka topic prefix, MongoDB database and S3 bucket.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineEnv } from '../../test/engines';
import { bucketOf, removeBucket } from '../../test/s3-buckets';
import { freePort, profilesOf, spawnChatFlow, stopChild, waitHealthy, type Child } from './process';
import type { RunningTarget, Target, TargetOptions, TargetProcess } from './target';

export const STACK_ENGINE_VARS = ['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'] as const;

export interface StackLayout {
  gateways: number;
  workers: number;
  projectors: number;
}
export const DEFAULT_LAYOUT: StackLayout = { gateways: 2, workers: 2, projectors: 1 };

/** Which engine variables are missing from `env` (empty = the stack mode can run). */
export function missingEngineVars(env: NodeJS.ProcessEnv = process.env): string[] {
  return STACK_ENGINE_VARS.filter((v) => !env[v]);
}

export function stackTarget(layout: StackLayout = DEFAULT_LAYOUT): Target {
  return {
    mode: 'stack',
    async start(opts: TargetOptions): Promise<RunningTarget> {
      const missing = missingEngineVars();
      if (missing.length > 0) {
        throw new Error(`stack mode needs the real engines: ${missing.join(', ')} not set. Run: npm run stack:up && eval "$(npm run -s stack:env)"`);
      }
      const engines = engineEnv();
      // Each run on its own topics, database and bucket: no slot, lease or history left by an earlier run, and
      // nothing left after it (a reference run stores ~200 MB of uploads and replies).
      const run = randomBytes(4).toString('hex');
      const mongo = new URL(engines.MONGODB_URI!);
      mongo.pathname = `/chatflow_lt_${run}`;
      engines.MONGODB_URI = mongo.toString();
      engines.KAFKA_PREFIX = `lt-${run}.`;
      engines.S3_BUCKET = `chatflow-lt-${run}`;
      const dataRoot = await mkdtemp(join(tmpdir(), 'chatflow-loadtest-stack-'));
      // One secret for every process: tokens and signed URLs must verify on any of them.
      const secret = process.env.CHATFLOW_AUTH_SECRET ?? randomBytes(32).toString('hex');
      const children: { child: Child; proc: TargetProcess; logFile: string }[] = [];
      const plan: { role: TargetProcess['role']; n: number }[] = [
        { role: 'projector', n: layout.projectors },
        { role: 'worker', n: layout.workers },
        { role: 'gateway', n: layout.gateways },
      ];
      try {
        for (const { role, n } of plan) {
          for (let i = 1; i <= n; i++) {
            const name = `${role}-${i}`;
            const grpcPort = role === 'gateway' ? await freePort() : undefined;
            const httpPort = await freePort();
            const logFile = join(opts.logDir, `stack-${name}.log`);
            const child = await spawnChatFlow({
              name,
              logFile,
              cwd: opts.serverDir,
              // Every role is profiled: gateways take the clients, workers render the replies.
              profileDir: opts.profileDir,
              env: {
                ...engines,
                CHATFLOW_ROLE: role,
                ...(role === 'gateway' ? { CHATFLOW_GATEWAY_ID: `lt-${name}` } : {}),
                CHATFLOW_GRPC_ADDR: `127.0.0.1:${grpcPort ?? (await freePort())}`,
                CHATFLOW_HTTP_ADDR: `127.0.0.1:${httpPort}`,
                CHATFLOW_DATA_DIR: join(dataRoot, name),
                CHATFLOW_AUTH_SECRET: secret,
                CHATFLOW_INSECURE_CLIENT_ID: 'true',
                LOG_LEVEL: 'warn',
                ...opts.env,
              },
            });
            const proc: TargetProcess = {
              name, role, pid: child.proc.pid!, http: `http://127.0.0.1:${httpPort}`, grpc: grpcPort ? `127.0.0.1:${grpcPort}` : undefined,
            };
            children.push({ child, proc, logFile });
          }
          // One role at a time (projector, workers, gateways): the first creates the topics the next ones use.
          await Promise.all(children.filter((c) => c.proc.role === role).map((c) => waitHealthy(c.child, c.proc.http, c.logFile, 90_000)));
        }
      } catch (err) {
        await Promise.all(children.map((c) => stopChild(c.child, 2000)));
        await rm(dataRoot, { recursive: true, force: true });
        throw err;
      }
      return {
        mode: 'stack',
        grpc: children.filter((c) => c.proc.grpc).map((c) => c.proc.grpc!),
        processes: children.map((c) => c.proc),
        async stop() {
          // Gateways first (end the streams), then workers, then the projector.
          const order: TargetProcess['role'][] = ['gateway', 'worker', 'projector'];
          for (const role of order) await Promise.all(children.filter((c) => c.proc.role === role).map((c) => stopChild(c.child)));
          await rm(dataRoot, { recursive: true, force: true });
          if (!process.env.LOADTEST_KEEP_STACK_DATA) await dropRunData(engines);
          return { profiles: (await Promise.all(children.map((c) => profilesOf(c.child)))).flat() };
        },
      };
    },
  };
}

/** Best effort: deletes the Kafka topics whose names start with `prefix` (a run's own). */
export async function dropTopics(brokers: readonly string[], prefix: string): Promise<void> {
  try {
    const { Kafka, logLevel } = await import('kafkajs');
    const admin = new Kafka({ clientId: 'chatflow-loadtest', brokers: [...brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
      if (topics.length) await admin.deleteTopics({ topics, timeout: 10_000 });
    } finally {
      await admin.disconnect();
    }
  } catch (err) {
    process.stderr.write(`[stack] could not delete topics ${prefix}*: ${String(err)}\n`);
  }
}

/** Best effort: delete this run's topics, database and bucket so repeated runs do not pile up data (LOADTEST_KEEP_STACK_DATA=1 keeps them). */
async function dropRunData(engines: Record<string, string>): Promise<void> {
  const { KAFKA_BROKERS: brokers, KAFKA_PREFIX: prefix, MONGODB_URI: mongoUri } = engines;
  await dropTopics(brokers.split(','), prefix);
  try {
    const { MongoClient } = await import('mongodb');
    const client = new MongoClient(mongoUri, { serverSelectionTimeoutMS: 5000 });
    try {
      // Collection by collection: dropDatabase crashes FerretDB v1 while connections still map the file.
      await dropAllCollections(client.db());
    } finally {
      await client.close();
    }
  } catch (err) {
    process.stderr.write(`[stack] could not drop the run's database: ${String(err)}\n`);
  }
  await removeBucket(bucketOf(engines)).catch((err: unknown) => process.stderr.write(`[stack] could not remove the run's bucket ${engines.S3_BUCKET}: ${String(err)}\n`));
}
