/*
 * Projection lag under load (issue 9): how long after an event the read
 * models show it, which is what a read-your-writes wait costs.
 *
 *   eval "$(npm run -s stack:env)"; BATCH=1 npx tsx loadtest/projection-lag.ts     # stack, one event at a time
 *   BATCH=256 npx tsx loadtest/projection-lag.ts                                    # stack, batched (default)
 *   MODE=embedded BATCH=256 npx tsx loadtest/projection-lag.ts                      # the embedded default
 *
 * CLIENTS (50) clients each open a stream, send 5 texts with GAP_MS (2000 ms,
 * ±50 %) between them, reconnect, for SECONDS (45); then the projector's
 * chatflow_projection_lag_seconds is read and printed as one JSON line
 * (p50/p99 are histogram bucket upper bounds).
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import { TokenAuthority } from '../src/auth/tokens';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { Cluster, type RoleProcess } from '../test/cluster';
import { ChatStream } from '../test/harness';

const batch = process.env.BATCH ?? '256';
const seconds = Number(process.env.SECONDS ?? 45);
const clientsN = Number(process.env.CLIENTS ?? 50);
const gapMs = Number(process.env.GAP_MS ?? 2000);

function quantile(body: string, name: string, q: number): number {
  const buckets = body.split('\n').filter((l) => l.startsWith(`${name}_bucket`)).map((l) => ({ le: Number(/le="([^"]+)"/.exec(l)![1].replace('+Inf', 'Infinity')), n: Number(l.split(' ').pop()) }));
  const total = buckets[buckets.length - 1].n;
  const want = total * q;
  for (const b of buckets) if (b.n >= want) return b.le;
  return Infinity;
}

(async () => {
  const embedded = process.env.MODE === 'embedded';
  const cluster = new Cluster(embedded ? { KAFKA_BROKERS: '', MONGODB_URI: '', NATS_URL: '', S3_ENDPOINT: '', CHATFLOW_PROJECTION_BATCH: batch, CHATFLOW_MAX_CLIENTS: '200' } : { CHATFLOW_PROJECTION_BATCH: batch, CHATFLOW_MAX_CLIENTS: '200' });
  const auth = new TokenAuthority(new TextEncoder().encode(cluster.secret), false);
  let gw: RoleProcess;
  let projector: RoleProcess;
  if (embedded) {
    gw = projector = await cluster.start('all', 'all', { LOG_LEVEL: 'info' });
  } else {
    projector = await cluster.start('projector', 'projector');
    await cluster.start('worker', 'worker');
    gw = await cluster.start('gateway', 'gateway');
  }
  const client = new ChatServiceClient(gw.grpc!, credentials.createInsecure());
  const end = Date.now() + seconds * 1000;
  let sent = 0;
  let answered = 0;
  await Promise.all(Array.from({ length: clientsN }, async (_, i) => {
    await new Promise((r) => setTimeout(r, i * 100));
    while (Date.now() < end) {
      const md = new Metadata();
      md.set('authorization', `Bearer ${await auth.mint(`lag-${i}`)}`);
      md.set('x-timezone', 'UTC');
      const s = new ChatStream(client.chat(md));
      try {
        await s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 30_000, 'welcome');
        for (let k = 0; k < 5 && Date.now() < end; k++) {
          sent++;
          await s.reply(s.text(`hello ${k}`), 30_000);
          answered++;
          await new Promise((r) => setTimeout(r, gapMs * (0.5 + Math.random())));
        }
        s.end();
        await s.status;
      } catch (err) {
        console.error(String(err).slice(0, 200));
        s.cancel();
        await s.status;
      }
    }
  }));
  const body = await (await fetch(`${projector.http}/metrics`)).text();
  const count = Number(body.split('\n').find((l) => l.startsWith('chatflow_projection_lag_seconds_count'))!.split(' ').pop());
  const sum = Number(body.split('\n').find((l) => l.startsWith('chatflow_projection_lag_seconds_sum'))!.split(' ').pop());
  console.log(JSON.stringify({ mode: embedded ? 'embedded' : 'stack', batch, seconds, sent, answered, events: count, meanMs: (sum / count) * 1000, p50leMs: quantile(body, 'chatflow_projection_lag_seconds', 0.5) * 1000, p99leMs: quantile(body, 'chatflow_projection_lag_seconds', 0.99) * 1000 }));
  client.close();
  await cluster.stopAll();
  await cluster.dropData().catch(() => undefined);
  process.exit(0);
})();
