import { credentials, Metadata } from '@grpc/grpc-js';
import { TokenAuthority } from '../src/auth/tokens';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { describeWithEngines, engineEnv } from './engines';
import { Cluster, type RoleProcess } from './cluster';
import { ChatStream } from './harness';
import { idempotencyCases, openRetrying, type IdempotencyTarget } from './idempotency.cases';

/*
 * The idempotency contract on the real stack, as issue 9 saw it break: roles
 * (re)started on an existing stack with the DEFAULT Kafka prefix and read
 * models, and clients that re-use their client ids and keys in new
 * conversations, run after run. The cases run twice, with every role
 * restarted in between; a message id scoped to the client only would make
 * the second round's messages duplicates of the first's and leave them
 * unanswered.
 */
const ALL = ['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'] as const;

describeWithEngines(ALL, 'Idempotency keys on the stack (default KAFKA_PREFIX, roles restarted)', () => {
  jest.setTimeout(180_000);
  const env = engineEnv();
  // The stack's own topics, database and bucket, not a per-run copy.
  const own = Object.fromEntries((['MONGODB_URI', 'S3_BUCKET'] as const).flatMap((k) => (env[k] ? [[k, env[k]]] : [])));
  const cluster = new Cluster({ KAFKA_PREFIX: 'chatflow.', ...own, CHATFLOW_SIM_DELAY_SCALE: '0.2' });
  const auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);
  let gateways: RoleProcess[] = [];
  const clients: ChatServiceClient[] = [];
  const streams: ChatStream[] = [];

  const startRoles = async () => {
    await cluster.start('projector', `projector-${cluster.processes.length}`);
    await cluster.start('worker', `worker-${cluster.processes.length}`);
    gateways = [await cluster.start('gateway', `gateway-a-${cluster.processes.length}`), await cluster.start('gateway', `gateway-b-${cluster.processes.length}`)];
    clients.splice(0).forEach((c) => c.close());
    clients.push(...gateways.map((g) => new ChatServiceClient(g.grpc!, credentials.createInsecure())));
  };

  const target = (): IdempotencyTarget => ({
    // A reconnect (x-conversation-id) goes to the other gateway.
    open: (clientId, extra = {}) =>
      openRetrying(async () => {
        const md = new Metadata();
        md.set('authorization', `Bearer ${await auth.mint(clientId)}`);
        md.set('x-timezone', 'Europe/Paris');
        for (const [k, v] of Object.entries(extra)) md.set(k, v);
        const s = new ChatStream(clients[extra['x-conversation-id'] ? 1 : 0].chat(md));
        streams.push(s);
        await s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 30_000, 'welcome');
        return s;
      }, 20_000),
    // The same ids in every run and after every restart: that is the point.
    fresh: (prefix) => `stack-idem-${prefix}`,
    replyWithinMs: 30_000,
  });

  beforeAll(startRoles, 180_000);
  afterAll(async () => {
    for (const s of streams) if (!s.isDone()) s.cancel();
    clients.forEach((c) => c.close());
    await cluster.stopAll();
  });

  describe('first round', () => idempotencyCases(target));
  describe('after every role restarted, the same client ids and keys', () => {
    beforeAll(async () => {
      for (const s of streams.splice(0)) if (!s.isDone()) s.cancel();
      await cluster.stopAll();
      await startRoles();
    }, 180_000);
    idempotencyCases(target);
  });
});
