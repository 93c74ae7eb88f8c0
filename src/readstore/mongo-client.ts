// Connecting to MongoDB (or FerretDB v1): shared by the read store and the connection registry.
import { MongoClient, MongoInvalidArgumentError, MongoServerError, type AnyBulkWriteOperation, type Db, type MongoClientOptions } from 'mongodb';
import type { Logger } from 'pino';
import { ChatFlowError } from '../domain/errors';
import { LATE, orLate } from '../resilience/late';
import { Semaphore, SemaphoreTimeout } from '../resilience/semaphore';

export interface MongoConnectOptions {
  /** `mongodb://host:port/<database>`; the database defaults to `chatflow`. */
  uri: string;
  /** Overrides the database named in the URI (tests use a fresh one per run). */
  dbName?: string;
  logger: Logger;
  /** How long an operation waits for a reachable server before failing (default: `timeoutMs`). */
  serverSelectionTimeoutMS?: number;
  /**
   * The bound of each stage of an operation (CHATFLOW_MONGO_TIMEOUT_MS): a
   * reachable server, a pooled connection (opening one included), the
   * server's answer. A stage past it fails the operation with a transient
   * error (MongoServerSelectionError, MongoWaitQueueTimeoutError,
   * MongoNetworkTimeoutError) and the connection waited on is closed, so a
   * stalled or frozen server can no longer hang a caller: it retries inside
   * its own deadline. The server may still carry out a write whose answer
   * timed out; every writer here is written for a lost answer.
   *
   * Per stage because the driver's one overall bound (`timeoutMS`, CSOT) is a
   * no-op since mongodb 7.8 (it could desynchronise the pool). `0`: no bound.
   */
  timeoutMs?: number;
  /**
   * Most connections (operations at once) this client opens
   * (CHATFLOW_MONGO_POOL_SIZE); the rest wait their turn in the process, up
   * to `timeoutMs`. A burst then waits here instead of piling up in the
   * server, which on FerretDB (SQLite) answered every caller slowly — and an
   * operation that times out on the server's side is still carried out, work
   * the caller then asks for again.
   */
  poolSize?: number;
  /**
   * How long this client may see the server unreachable before a fresh
   * connection checks whether it really is (see watchStuckView); default
   * STUCK_VIEW_MS, 0: never.
   */
  stuckViewMs?: number;
  /**
   * Most update-shaped statements (update, replace, findAndModify) this
   * process has in flight to one server, over all its clients
   * (CHATFLOW_MONGO_UPDATE_CONCURRENCY, see `UpdateGate`); the rest wait in
   * the process, at most `timeoutMs`. `0`: no bound.
   */
  updateConcurrency?: number;
  /** Told of every command the client completes or fails (name, seconds): the driver's command monitoring, on only when given. */
  onCommand?: (command: string, seconds: number) => void;
  /** Told how long each update-shaped statement waited for a place in the process's UpdateGate (method name, seconds; 0 when it waited not at all). */
  onUpdateWait?: (method: string, seconds: number) => void;
}

/** Defaults of CHATFLOW_MONGO_TIMEOUT_MS and CHATFLOW_MONGO_POOL_SIZE. */
export const DEFAULT_MONGO_TIMEOUT_MS = 10_000;
export const DEFAULT_MONGO_POOL_SIZE = 16;
/** Default of CHATFLOW_MONGO_UPDATE_CONCURRENCY. */
export const DEFAULT_MONGO_UPDATE_CONCURRENCY = 8;

export const DEFAULT_DB_NAME = 'chatflow';

/** The database path of a MongoDB URI, or undefined when it names none. */
export function databaseFromUri(uri: string): string | undefined {
  const m = /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]*)/.exec(uri);
  const name = m ? decodeURIComponent(m[1]) : '';
  return name === '' ? undefined : name;
}

/** The URI without its credentials, for logs. */
export function redactUri(uri: string): string {
  return uri.replace(/\/\/[^@/]*@/, '//***@');
}

/**
 * The driver's options for a bound of `ms` on each stage of an operation. The
 * connect timeout is also how long the driver's monitor waits for a
 * heartbeat: a frozen server is marked unreachable (and its pool cleared,
 * failing what waits on it) within a heartbeat period plus `ms`.
 */
export function stageTimeouts(ms: number): Pick<MongoClientOptions, 'serverSelectionTimeoutMS' | 'waitQueueTimeoutMS' | 'socketTimeoutMS' | 'connectTimeoutMS'> {
  // 0 means "none" for the last three; server selection has no "none" (the driver's default is 30 s).
  return { serverSelectionTimeoutMS: ms > 0 ? ms : 30_000, waitQueueTimeoutMS: ms, socketTimeoutMS: ms, connectTimeoutMS: ms };
}

/**
 * Connects a MongoClient and logs reachability changes (the driver itself keeps
 * retrying server selection). Every stage of an operation is bounded (see
 * `timeoutMs`). Works on MongoDB and on FerretDB v1.
 */
export async function connectMongo(opts: MongoConnectOptions): Promise<{ client: MongoClient; db: Db }> {
  const { logger } = opts;
  const where = redactUri(opts.uri);
  const client = new MongoClient(opts.uri, {
    appName: 'chatflow',
    ...stageTimeouts(opts.timeoutMs ?? DEFAULT_MONGO_TIMEOUT_MS),
    maxPoolSize: opts.poolSize ?? DEFAULT_MONGO_POOL_SIZE,
    ...(opts.serverSelectionTimeoutMS !== undefined && { serverSelectionTimeoutMS: opts.serverSelectionTimeoutMS }),
    // `undefined` fields are left out, as the memory store leaves them out.
    ignoreUndefined: true,
    monitorCommands: opts.onCommand !== undefined,
  });
  const onCommand = opts.onCommand;
  if (onCommand) {
    const told = (e: { commandName: string; duration: number }) => onCommand(e.commandName, e.duration / 1000);
    client.on('commandSucceeded', told);
    client.on('commandFailed', told);
  }
  let reachable = true;
  let unreachableSince: number | null = null;
  client.on('serverDescriptionChanged', (e) => {
    const up = e.newDescription.type !== 'Unknown';
    if (up === reachable) return;
    reachable = up;
    unreachableSince = up ? null : Date.now();
    if (up) logger.warn({ engine: 'mongodb', uri: where }, 'MongoDB reachable again');
    else logger.warn({ engine: 'mongodb', uri: where, err: e.newDescription.error }, 'MongoDB unreachable; the driver keeps retrying');
  });
  const stuckMs = opts.stuckViewMs ?? STUCK_VIEW_MS;
  if (stuckMs > 0) watchStuckView(client, opts.uri, () => unreachableSince, stuckMs, logger.child({ engine: 'mongodb', uri: where }));
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => undefined);
    throw new Error(`MongoDB unreachable at ${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const db = client.db(opts.dbName ?? databaseFromUri(opts.uri) ?? DEFAULT_DB_NAME);
  const limit = opts.updateConcurrency ?? DEFAULT_MONGO_UPDATE_CONCURRENCY;
  const waitMs = opts.timeoutMs ?? DEFAULT_MONGO_TIMEOUT_MS;
  return { client, db: limit > 0 ? gatedDb(db, UpdateGate.of(serverOf(opts.uri), limit), waitMs, opts.onUpdateWait) : db };
}

/**
 * How long a shutdown waits for a MongoDB client to close. The driver's close
 * ends the server's sessions first (`endSessions`), and a frozen server
 * answers that only once the operation's bound (CHATFLOW_MONGO_TIMEOUT_MS,
 * 10 s) runs out: past the process's hard deadline. The process is exiting:
 * what is left of the client goes with it.
 */
export const MONGO_CLOSE_WAIT_MS = 1_000;

/** Closes `client`, or gives up after MONGO_CLOSE_WAIT_MS (a warning), whichever comes first. */
export async function closeMongo(client: MongoClient, logger: Logger): Promise<void> {
  if ((await orLate(client.close(), MONGO_CLOSE_WAIT_MS)) === LATE) logger.warn({ engine: 'mongodb', waitedMs: MONGO_CLOSE_WAIT_MS }, 'MongoDB did not let its client close in time; leaving the connections to the exit');
}

/** See MongoConnectOptions.stuckViewMs. */
export const STUCK_VIEW_MS = 20_000;

/**
 * The driver's view of the server can stay "unreachable" after the server came
 * back: seen in the fault matrix (ferretdb-kill), where the projector's client
 * alone never saw FerretDB again while every other process's did within a
 * second, and failed each operation with the old connection's error for
 * minutes (the read models never caught up). One way to that, found since and
 * patched (patches/mongodb+7.9.0.patch, src/readstore/mongo-socket-closed.int.test.ts):
 * a monitor heartbeat written to a socket that had just closed waited forever,
 * so the monitor never checked again. Whether that was the only way is not
 * known, so this stays as the net: once this client has seen the server unreachable for `stuckMs`,
 * a fresh short-lived client asks the server; if it answers, this client is
 * closed and connected again (its databases and collections stay usable;
 * operations in between fail and are retried by their callers). A real outage
 * is left to the driver.
 */
function watchStuckView(client: MongoClient, uri: string, unreachableSince: () => number | null, stuckMs: number, logger: Logger): void {
  let healing = false;
  let closed = false;
  const check = async () => {
    const since = unreachableSince();
    if (closed || healing || since === null || Date.now() - since < stuckMs) return;
    healing = true;
    try {
      const probe = new MongoClient(uri, { serverSelectionTimeoutMS: 2_000, connectTimeoutMS: 2_000, socketTimeoutMS: 2_000, maxPoolSize: 1 });
      const answers = await probe.db('admin').command({ ping: 1 }).then(() => true, () => false).finally(() => probe.close().catch(() => undefined));
      if (!answers || closed || unreachableSince() === null) return;
      logger.error({ unreachableForMs: Date.now() - since }, 'MongoDB answers a fresh connection, but this client has seen it unreachable since; connecting the client again');
      await client.close();
      await client.connect();
    } catch (err) {
      logger.warn({ err }, 'connecting the MongoDB client again failed; trying again later');
    } finally {
      healing = false;
    }
  };
  const timer = setInterval(() => void check(), Math.max(250, Math.floor(stuckMs / 4)));
  timer.unref();
  // Closed by its owner (not by the check above): nothing more to watch.
  client.on('topologyClosed', () => {
    if (healing) return;
    closed = true;
    clearInterval(timer);
  });
}

export function isDuplicateKeyError(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

/** FerretDB answers buildInfo with its own version beside the MongoDB one it emulates. */
export async function isFerretDb(db: Db): Promise<boolean> {
  const info = await db.admin().command({ buildInfo: 1 });
  return typeof info.ferretdbVersion === 'string';
}

/**
 * FerretDB v1 (1.24) runs an update, a replace and a findAndModify as a query
 * on one pooled backend connection, then a write transaction on a SECOND one,
 * and lets go of the first only when the command returns (msg_update.go,
 * msg_findandmodify.go; its deletes close the read first). Its pool is fixed
 * (SQLite: 100 connections per database; PostgreSQL: `pool_max_conns`,
 * default 50): once the pool is all held by statements waiting for their
 * second, FerretDB answers nobody on that database again (one bulkWrite of 100
 * updateOne on SQLite; 70–200 concurrent updateOne on PostgreSQL's default
 * pool, 800 on SQLite: loadtest/ferretdb-deadlock.ts).
 *
 * The gate bounds this process's update-shaped statements in flight to one
 * server, over all its clients (read store, connection registry), so a
 * deployment stays safe while Σ over its processes of the bound is below
 * FerretDB's pool. A statement past the bound waits in the process, FIFO, at
 * most the operation's stage timeout, then fails as a pool wait would: a
 * transient error (UNAVAILABLE), retried by the caller.
 */
export class UpdateGate {
  private static readonly gates = new Map<string, UpdateGate>();
  /** The process's gate for `server`; the first caller's limit holds. */
  static of(server: string, limit: number): UpdateGate {
    let g = UpdateGate.gates.get(server);
    if (!g) UpdateGate.gates.set(server, (g = new UpdateGate(limit)));
    return g;
  }

  private readonly places: Semaphore;
  constructor(readonly limit: number) {
    this.places = new Semaphore(limit);
  }

  /** Runs `op` holding `n` (≤ limit) of the gate's places; waits at most `waitMs` (0: no bound) for them. */
  run<T>(n: number, waitMs: number, op: () => Promise<T>): Promise<T> {
    return this.places.use(op, { places: n, waitMs }).catch((err: unknown) => {
      if (!(err instanceof SemaphoreTimeout)) throw err;
      throw new ChatFlowError('UNAVAILABLE', `MongoDB: waited ${waitMs} ms for one of this process's ${this.limit} update places (CHATFLOW_MONGO_UPDATE_CONCURRENCY)`);
    });
  }
}

/** host:port list of a MongoDB URI: the server a gate is for. */
function serverOf(uri: string): string {
  return /^mongodb(?:\+srv)?:\/\/(?:[^@/]*@)?([^/?]*)/.exec(uri)?.[1] ?? uri;
}

const ONE_UPDATE = new Set(['updateOne', 'updateMany', 'replaceOne', 'findOneAndUpdate', 'findOneAndReplace', 'findOneAndDelete']);

/** Update-shaped statements of a bulkWrite (its deletes and inserts do not hold a read). */
function bulkUpdates(ops: readonly AnyBulkWriteOperation[]): number {
  return ops.filter((o) => 'updateOne' in o || 'updateMany' in o || 'replaceOne' in o).length;
}

/**
 * Forwards everything to `target` (methods bound to it, so the driver sees its
 * own object). A method is wrapped once, on first use, not on every call: the
 * read store and the claims call them per message.
 */
function forward<T extends object>(target: T, pick: (prop: string | symbol, value: unknown) => unknown): T {
  const methods = new Map<string | symbol, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      const v: unknown = Reflect.get(t, prop, t);
      if (typeof v !== 'function') return pick(prop, v) ?? v;
      let m = methods.get(prop);
      if (m === undefined) methods.set(prop, (m = pick(prop, v) ?? (v as (...a: unknown[]) => unknown).bind(t)));
      return m;
    },
  });
}

type OnWait = MongoConnectOptions['onUpdateWait'];

/** `db` whose collections pass their update-shaped statements through `gate`. */
function gatedDb(db: Db, gate: UpdateGate, waitMs: number, onWait: OnWait): Db {
  return forward(db, (prop) =>
    prop === 'collection' ? (...args: Parameters<Db['collection']>) => gatedCollection(db.collection(...args), gate, waitMs, onWait) : undefined,
  );
}

/** `op` once the gate gives it `n` places, telling `onWait` how long that took. */
function through<T>(gate: UpdateGate, n: number, waitMs: number, method: string, onWait: OnWait, op: () => Promise<T>): Promise<T> {
  if (!onWait) return gate.run(n, waitMs, op);
  const asked = performance.now();
  return gate.run(n, waitMs, () => {
    onWait(method, (performance.now() - asked) / 1000);
    return op();
  });
}

function gatedCollection<C extends object>(coll: C, gate: UpdateGate, waitMs: number, onWait: OnWait): C {
  return forward(coll, (prop, v) => {
    if (typeof v !== 'function') return undefined;
    const method = v as (...a: unknown[]) => Promise<unknown>;
    if (typeof prop === 'string' && ONE_UPDATE.has(prop)) return (...a: unknown[]) => through(gate, 1, waitMs, prop, onWait, () => method.apply(coll, a));
    if (prop !== 'bulkWrite') return undefined;
    return (ops: AnyBulkWriteOperation[], ...rest: unknown[]) => {
      const n = bulkUpdates(ops);
      if (n === 0) return method.call(coll, ops, ...rest);
      if (n > gate.limit) {
        return Promise.reject(
          new MongoInvalidArgumentError(
            `a bulkWrite of ${n} update statements exceeds CHATFLOW_MONGO_UPDATE_CONCURRENCY (${gate.limit}): FerretDB v1 holds a connection per update statement until the command returns and hangs once its pool is taken; send at most ${gate.limit} per command`,
          ),
        );
      }
      return through(gate, n, waitMs, 'bulkWrite', onWait, () => method.call(coll, ops, ...rest));
    };
  });
}
