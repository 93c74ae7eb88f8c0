// Connecting to MongoDB (or FerretDB v1): shared by the read store and the connection registry.
import { MongoClient, MongoServerError, type Db, type MongoClientOptions } from 'mongodb';
import type { Logger } from 'pino';

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
  /** Told of every command the client completes or fails (name, seconds): the driver's command monitoring, on only when given. */
  onCommand?: (command: string, seconds: number) => void;
}

/** Defaults of CHATFLOW_MONGO_TIMEOUT_MS and CHATFLOW_MONGO_POOL_SIZE. */
export const DEFAULT_MONGO_TIMEOUT_MS = 10_000;
export const DEFAULT_MONGO_POOL_SIZE = 16;

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
  client.on('serverDescriptionChanged', (e) => {
    const up = e.newDescription.type !== 'Unknown';
    if (up === reachable) return;
    reachable = up;
    if (up) logger.warn({ engine: 'mongodb', uri: where }, 'MongoDB reachable again');
    else logger.warn({ engine: 'mongodb', uri: where, err: e.newDescription.error }, 'MongoDB unreachable; the driver keeps retrying');
  });
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => undefined);
    throw new Error(`MongoDB unreachable at ${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const db = client.db(opts.dbName ?? databaseFromUri(opts.uri) ?? DEFAULT_DB_NAME);
  return { client, db };
}

export function isDuplicateKeyError(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

/** FerretDB answers buildInfo with its own version beside the MongoDB one it emulates. */
export async function isFerretDb(db: Db): Promise<boolean> {
  const info = await db.admin().command({ buildInfo: 1 });
  return typeof info.ferretdbVersion === 'string';
}
