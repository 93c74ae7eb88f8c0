import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { Health } from './health';
import type { Config } from './config/config';
import { TokenAuthority, loadOrCreateSecret } from './auth/tokens';
import type { LlmProvider } from './llm/port';
import { createMetrics, type Metrics } from './metrics';
import { readyLines } from './ready-line';
import type { HttpRoute } from './http/server';
import type { ChatGateway } from './gateway/chat-service';
import type { WorkerControl } from './composition/worker-role';
import { readModelsSettled, type ProjectionRunner } from '../projections/runner';
import { openBus, openEventLog, openMedia, openStorage } from './composition/engines';
import { timedEventLog, timedMediaStore } from './composition/instrument';
import { Lifecycle } from './composition/lifecycle';
import { httpRole } from './composition/http-role';
import { projectorRole, type ProjectorRole } from './composition/projector-role';
import { workerRole, type WorkerRole } from './composition/worker-role';
import { workerThreadRole } from './threads/worker-host';
import { LoopRoom } from './composition/early-start';
import { BusEarlyStart } from './bus/early';
import { gatewayRole, recordLeftoverSessions, type GatewayRole } from './composition/gateway-role';
import { HeapGuard, type HeapSource } from './resilience/heap-guard';
import { messaging, readModels } from './composition/wiring';
import { TlsFiles, type ServerTls } from './tls';
import { openDataDir } from './data-dir';
import { steadyClock } from './clock';
import { ConnectionBudget, connectionCap, openFileLimit, RESERVED_DESCRIPTORS } from './connection-guard';

export { grpcServerOptions } from './composition/gateway-role';

export interface App {
  config: Config;
  grpcPort: number;
  httpPort: number;
  grpcAddress: string;
  httpUrl: string;
  auth: TokenAuthority;
  metrics: Metrics;
  /** Present when this process runs the role. */
  worker?: WorkerControl;
  gateway?: ChatGateway;
  projections?: ProjectionRunner;
  health: Health;
  /**
   * The graceful drain (once, however often called): health NOT_SERVING, no
   * new sessions or messages, replies in processing delivered on their
   * streams (up to the shutdown grace), every stream ended with UNAVAILABLE +
   * retry-after-ms, then the engines closed in reverse order.
   */
  stop(): Promise<void>;
  /** What a stop still waits for: its current step and the work in flight (for the hard-deadline log). */
  stopProgress(): Record<string, unknown>;
}

export interface AppOverrides {
  llm?: LlmProvider;
  /** The wall clock (default Date.now). */
  clock?: () => number;
  /** The steady clock for deadlines, durations and the leases of an in-process registry (default steadyClock()). */
  steady?: () => number;
  /** A worker thread died (main.ts ends the process: its supervisor starts it again, as after a crash). */
  onWorkerDied?: (err: Error) => void;
  /** The heap the gateway's guard reads (default: this process's V8 heap). */
  heap?: HeapSource;
  /**
   * Start-up called off (main.ts: a signal before the process is up): the waits on an engine that is away give up
   * at once, what was opened is closed, and startApp rejects with the signal's reason.
   */
  startup?: AbortSignal;
}

/**
 * The worker gets a thread of its own (CHATFLOW_WORKER_THREAD) where it shares
 * the process with a gateway and a projector (role `all`) on the embedded log,
 * whose partitions never move between members (src/threads/remote-log.ts).
 * An injected model or clock cannot cross into a thread: the worker then
 * stays on the event loop.
 */
function workerInThread(config: Config, overrides: AppOverrides): boolean {
  return config.workerThread && config.role === 'all' && !config.kafka && !overrides.llm && !overrides.clock && !overrides.steady;
}

/**
 * The composition root: opens the engines this process's roles need (the
 * adapters are chosen in composition/engines.ts), then starts the roles, each
 * built by its own builder: http, projector, worker, gateway. Everything is
 * stopped in the reverse order it started.
 */
export async function startApp(config: Config, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
  const runs = (role: 'gateway' | 'worker' | 'projector') => config.role === 'all' || config.role === role;
  const clock = overrides.clock ?? Date.now;
  const steady = overrides.steady ?? steadyClock();
  const newId = () => randomUUID();
  const instance = newId().slice(0, 8);
  const lifecycle = new Lifecycle(logger);
  const health = new Health({ starting: 'connecting to the engines' });

  try {
    await openDataDir(resolve(config.dataDir), !config.kafka || !config.s3 || !config.authSecret);
    const secret = await loadOrCreateSecret(config.dataDir, config.authSecret);
    const auth = new TokenAuthority(secret, config.insecureClientId);
    const metrics = createMetrics();
    const tls = config.tls ? await openTls(config.tls, logger, metrics, clock) : undefined;
    const connections = connectionBudget(config, logger);
    if (tls) lifecycle.onStop('tls files', async () => tls.close());
    const mediaSecret = Buffer.concat([Buffer.from('media:'), Buffer.from(secret)]);
    // Watching before the read models replay the log, so a replay that fills the heap is seen.
    const heap = runs('gateway') ? heapGuard(config, logger, lifecycle, metrics, overrides.heap) : undefined;

    // Started later; HTTP, started first, reads them per request.
    let projector: ProjectorRole | undefined;
    let worker: WorkerRole | undefined;
    let gateway: GatewayRole | undefined;
    let mediaRoute: HttpRoute | undefined;
    const http = await lifecycle.start('http', httpRole({
      config, logger, lifecycle, auth, metrics, gateway: runs('gateway'), tls, connections,
      mediaRoute: () => mediaRoute,
      grpcAddress: () => gateway?.localGrpcAddress ?? '',
      health: () => ({
        ok: health.serving,
        detail: {
          ...(health.serving ? {} : { unavailable: health.unavailable }),
          role: config.role, clients: gateway?.gateway.connected ?? 0, processing: worker?.worker.processing ?? 0, waiting: worker?.worker.stats().waiting ?? 0,
          projectionLag: projector?.runner.lag() ?? 0,
          ...(heap?.refusing ? { heap: 'nearly full: new messages and connections are refused (see the log)' } : {}),
        },
      }),
    }));

    const name = `chatflow-${config.role}-${instance}`;
    const startup = overrides.startup;
    const log = timedEventLog(await openEventLog(config, logger, name, { onWritable: (problem) => health.report('event-log', problem), metrics, signal: startup }), metrics.logAppendSeconds);
    lifecycle.onStop('event log', () => log.close());
    const { store, openRegistry, openReplyClaims } = await openStorage(config, logger, metrics, startup);
    lifecycle.onStop('read store', () => store.close());
    const models = readModels(store);

    if (runs('projector')) projector = await lifecycle.start('projections', projectorRole({ config, logger, log, store, metrics, health, startup }));

    const wired = runs('gateway') || runs('worker') ? await (async () => {
      const bus = await openBus(config, logger, name, startup);
      lifecycle.onStop('bus', () => bus.close());
      // Swept here only: the worker thread opens the same folder.
      const media = await openMedia(config, logger, { baseUrl: http.url, secret: mediaSecret, now: clock, sweep: true }, startup);
      mediaRoute = media.route;
      lifecycle.onStop('media', () => media.store.close());
      return messaging(bus, timedMediaStore(media.store, metrics.mediaPutSeconds), config.mediaUrlTtlMs);
    })() : undefined;

    const registry = runs('gateway') ? await openRegistry() : undefined;
    if (registry) {
      lifecycle.onStop('connection registry', () => registry.close());
      await recordLeftoverSessions({ registry, log, readModels: models, clock, newId });
    }

    const common = { config, logger, lifecycle, log, readModels: models, metrics, health, instance, clock, steady, newId };
    const settled = readModelsSettled(log, projector?.runner);
    if (wired && runs('worker') && workerInThread(config, overrides)) {
      worker = await lifecycle.start('worker', workerThreadRole({
        ...common, bus: wired.bus, messages: models.messages, settled,
        media: { baseUrl: http.url, secret: mediaSecret },
        onDied: overrides.onWorkerDied ?? (() => undefined),
      }));
    } else if (wired && runs('worker')) {
      const claims = await openReplyClaims();
      lifecycle.onStop('reply claims', () => claims.close());
      worker = await lifecycle.start('worker', workerRole({
        ...common, bus: wired.bus, media: wired.media, messages: models.messages, settled, claims, llm: overrides.llm,
      }));
    }
    // On the embedded log every message this gateway appends is handed to this process's worker: it may begin at once,
    // while this loop has room (see LoopRoom). On Kafka the worker holding the message's partition is told over the
    // bus (src/bus/early.ts), wherever it runs.
    const early = !config.kafka ? worker && new LoopRoom(worker.worker) : wired && registry && log.partitionOf ? new LoopRoom(new BusEarlyStart(wired.bus, { partitionOf: log.partitionOf }, config.kafka.prefix, logger.child({ component: 'early' }))) : undefined;
    early?.start();
    if (early) lifecycle.onStop('early start', async () => early.stop());
    // Called off during a step that does not wait on it (the worker starting, leftover sessions recorded): stopped before anything is served.
    startup?.throwIfAborted();
    if (wired && registry) gateway = await lifecycle.start('gateway', gatewayRole({ ...common, messaging: wired, registry, projections: projector?.runner, auth, tls, connections, heapFull: heap && (() => heap.refusal()), early }));

    health.clear('starting');
    const grpcAddress = gateway?.grpcAddress ?? '';
    const next = readyLines(config, { grpcAddress, httpUrl: http.url, selfSigned: tls?.current().selfSigned });
    logger.info({ role: config.role, grpc: grpcAddress || undefined, http: http.url, llm: worker?.llmName, speech: worker?.speechSummary, engines: engineNames(config), dataDir: resolve(config.dataDir), next: next.next }, 'ChatFlow ready');
    if (next.next) logger.info(next.next);
    for (const warning of next.warnings) logger.warn(warning);

    const drainAndStop = async () => {
      lifecycle.progress.step = 'drain';
      health.set('draining', 'shutting down: finishing the replies in processing');
      gateway?.gateway.beginDrain();
      const workerStopped = worker?.worker.stop(config.shutdownGraceMs);
      await Promise.all([
        // Replies of this process's own worker arrive over the bus right after it stops; other workers' within the grace.
        gateway?.gateway.drain({ graceMs: config.shutdownGraceMs, settled: workerStopped, settleMs: 250 }),
        workerStopped,
      ]);
      await lifecycle.stopAll();
      lifecycle.progress.step = 'stopped';
    };
    let stopped: Promise<void> | undefined;
    return {
      config, grpcPort: gateway?.grpcPort ?? 0, httpPort: http.port, grpcAddress, httpUrl: http.url, auth, metrics,
      worker: worker?.worker, gateway: gateway?.gateway, projections: projector?.runner, health,
      stop: () => (stopped ??= drainAndStop()),
      stopProgress: () => ({
        step: lifecycle.progress.step,
        streams: gateway?.gateway.connected ?? 0,
        repliesAwaited: gateway?.gateway.pendingReplies() ?? 0,
        processing: worker?.worker.processing ?? 0,
      }),
    };
  } catch (err) {
    await lifecycle.stopAll();
    throw err;
  }
}

/** The listeners' bound on TCP connections (CHATFLOW_MAX_CONNECTIONS), lowered to what the open-file limit leaves, and the silence allowed (CHATFLOW_SILENT_CONNECTION_MS). */
function connectionBudget(config: Config, logger: Logger): ConnectionBudget {
  const limit = openFileLimit();
  const cap = connectionCap(config.connections.max, config.maxClients, limit);
  if (cap.lowered) {
    logger.warn(
      { maxConnections: cap.max, openFileLimit: limit, reserved: RESERVED_DESCRIPTORS },
      `the listeners take at most ${cap.max} connections together: the open-file limit (${limit}) leaves no more beside the process's own files; raise it (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile) for more clients`,
    );
  }
  return new ConnectionBudget({ max: cap.max, silentMs: config.connections.silentMs });
}

/** The TLS files, checked now (the process refuses to start on a pair that cannot serve) and followed (CHATFLOW_TLS_RELOAD_MS). */
async function openTls(files: NonNullable<Config['tls']>, logger: Logger, metrics: Metrics, clock: () => number): Promise<TlsFiles> {
  const serving = (tls: ServerTls) => {
    metrics.tlsCertificateExpiry.set(Math.floor(tls.notAfter.getTime() / 1000));
    if (tls.notAfter.getTime() < clock()) logger.warn({ notAfter: tls.notAfter.toISOString() }, 'the TLS certificate (CHATFLOW_TLS_CERT_FILE) has expired: clients that check it will refuse to connect');
  };
  const tls = await TlsFiles.open(files, files.reloadMs, {
    renewed: (next, previous) => {
      metrics.tlsRenewals.inc({ outcome: 'renewed' });
      logger.info({ subject: next.subject, notAfter: next.notAfter.toISOString(), previousNotAfter: previous.notAfter.toISOString() }, 'TLS certificate renewed: new connections get it, open ones keep theirs');
      serving(next);
    },
    refused: (err) => {
      metrics.tlsRenewals.inc({ outcome: 'refused' });
      logger.warn({ err: err.message, serving: tls.current().notAfter.toISOString() }, 'the TLS files changed but cannot serve: still serving the certificate loaded before; checked again when they change');
    },
    listenerFailed: (err) => {
      metrics.tlsRenewals.inc({ outcome: 'listener_failed' });
      logger.error({ err: err.message }, 'a listener could not take the renewed TLS certificate: it serves the one before until the next renewal or a restart');
    },
  }, clock);
  const first = tls.current();
  logger.info({ subject: first.subject, notAfter: first.notAfter.toISOString(), reloadMs: files.reloadMs }, 'TLS on: the gRPC and HTTP listeners speak TLS only');
  serving(first);
  return tls;
}

/** The gateway's heap guard, started (see HeapGuard): its changes are logged and exported as `chatflow_heap_refusing`. */
function heapGuard(config: Config, logger: Logger, lifecycle: Lifecycle, metrics: Metrics, source?: HeapSource): HeapGuard {
  const log = logger.child({ component: 'heap' });
  const guard = new HeapGuard(config.heapRefusePercent, (full, { usedBytes, limitBytes }) => {
    metrics.heapRefusing.set(full ? 1 : 0);
    const figures = { usedBytes, limitBytes, refusePercent: config.heapRefusePercent };
    if (full) log.warn(figures, 'heap nearly full after a full collection: new messages and connections are refused (RESOURCE_EXHAUSTED) until it frees; give the process more memory (--max-old-space-size) or keep the read models in MongoDB');
    else log.info(figures, 'heap below the line again: new messages and connections are taken');
  }, source);
  guard.start();
  lifecycle.onStop('heap guard', async () => guard.stop());
  return guard;
}

/** Which engine backs each port, for the start-up log line. */
function engineNames(config: Config): Record<string, string> {
  return {
    log: config.kafka ? 'kafka' : 'embedded',
    readModels: config.mongodbUri ? 'mongodb' : 'memory',
    bus: config.natsUrl ? 'nats' : 'memory',
    media: config.s3 ? 's3' : 'local',
  };
}
