// Connecting to MongoDB (or FerretDB v1): shared by the read store and the connection registry.
import { MongoClient, MongoServerError, type Db } from 'mongodb';
import type { Logger } from 'pino';

export interface MongoConnectOptions {
  /** `mongodb://host:port/<database>`; the database defaults to `chatflow`. */
  uri: string;
  /** Overrides the database named in the URI (tests use a fresh one per run). */
  dbName?: string;
  logger: Logger;
  /** How long an operation waits for a reachable server before failing. */
  serverSelectionTimeoutMS?: number;
}

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
 * Connects a MongoClient and logs reachability changes (the driver itself keeps
 * retrying server selection; operations fail after serverSelectionTimeoutMS).
 * Works on MongoDB and on FerretDB v1.
 */
export async function connectMongo(opts: MongoConnectOptions): Promise<{ client: MongoClient; db: Db }> {
  const { logger } = opts;
  const where = redactUri(opts.uri);
  const client = new MongoClient(opts.uri, {
    appName: 'chatflow',
    serverSelectionTimeoutMS: opts.serverSelectionTimeoutMS ?? 10_000,
    // `undefined` fields are left out, as the memory store leaves them out.
    ignoreUndefined: true,
  });
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
